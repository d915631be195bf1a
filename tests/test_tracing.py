"""Traces: one trace per request, continued from ``traceparent``, shared by records and registries.

The gateway exports to a JSON-lines file here (``traces="file:PATH"``). The incoming trace id is
on the request's audit records, on the request span, on one ``betrokkene`` span per data subject
(with the LDV attributes) and on the registry client spans, and every registry receives a
``traceparent`` of that trace. No raw V-nummer is exported or logged, also not on error paths.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from mocks import Faults, Registries
from tests.conftest import StartGateway
from tests.support import caller

VNUMMER_TEXT = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])")
LOGGERS = ("ketenpoort", "strawberry", "httpx")

ALL_REGISTRIES = """
query($v: [ID!]!) {
  vreemdelingen(vnummers: $v) {
    vnummer naam { geslachtsnaam } religie
    opvang { locatie { code } }
    procedures { zaaknummer fase }
  }
}
"""


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def read_spans(running: Running, path: Path) -> list[dict[str, Any]]:
    assert running.gateway.tracer_provider.force_flush(10_000), "spans were not flushed"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def hex_id(value: str | None) -> str | None:
    """The exporter writes ids as ``0x...``; records keep bare hex."""
    return None if value is None else value.removeprefix("0x")


def of_trace(spans: Iterable[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    return [s for s in spans if hex_id(s["context"]["trace_id"]) == trace_id]


async def records(running: Running, **query: Any) -> list[AuditRecord]:
    return await running.gateway.audit_store.search(AuditQuery(limit=100_000, **query))


def persons(mocks: Registries, start: int, n: int) -> list[str]:
    return [mocks.population.vnummer(i) for i in range(start, start + n)]


async def test_one_trace_from_traceparent_to_records_spans_and_registries(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    export = tmp_path / "traces" / "spans.jsonl"
    running = await start(traces=f"file:{export}")
    who = caller(
        running, tmp_path / "state", org="DTV", roles=["regievoerder"], purpose="TERUGKEER"
    )
    subjects = persons(mock_registries, 6000, 3)
    trace_id, incoming, header = traceparent()

    answer = await who.query(ALL_REGISTRIES, {"v": subjects}, traceparent=header)
    assert answer.status == 200, answer.body
    assert {e["extensions"]["code"] for e in answer.body["errors"]} == {"FIELD_NOT_PERMITTED"}

    spans = read_spans(running, export)
    mine = of_trace(spans, trace_id)
    (request,) = [s for s in mine if s["name"] == "POST /graphql"]
    assert hex_id(request["parent_id"]) == incoming, "the incoming span is the request's parent"
    assert request["kind"] == "SpanKind.SERVER"
    request_span = hex_id(request["context"]["span_id"])

    # Records: the same trace, the request span, the incoming parent.
    trail = await records(running, trace_id=trace_id)
    assert trail and {r.data_subject_id for r in trail} == {
        running.gateway.pseudonym(v) for v in subjects
    }
    assert {(r.trace_id, r.span_id, r.parent_span_id) for r in trail} == {
        (trace_id, request_span, incoming)
    }

    # One "betrokkene" span per data subject, under the request span, with the LDV attributes
    # and exactly the decisions recorded for that subject.
    betrokkenen = [s for s in mine if s["name"] == "betrokkene"]
    assert len(betrokkenen) == len(subjects)
    activity = trail[0].processing_activity_id
    assert activity == "https://register.ketenpoort.example/verwerkingen/dtv-terugkeer"
    by_subject = {s["attributes"]["dpl.core.data_subject_id"]: s for s in betrokkenen}
    assert set(by_subject) == {running.gateway.pseudonym(v) for v in subjects}
    for subject, span in by_subject.items():
        attributes = span["attributes"]
        assert hex_id(span["parent_id"]) == request_span
        assert attributes["dpl.core.processing_activity_id"] == activity
        assert attributes["dpl.core.data_subject_id_type"] == "vnummer"
        own = [r for r in trail if r.data_subject_id == subject]
        given = {r.coordinate for r in own if r.decision is Decision.GIVEN}
        refused = {f"{r.coordinate}:{r.reason}" for r in own if r.decision is not Decision.GIVEN}
        assert set(attributes["ketenpoort.given"].split(",")) == given
        assert set(attributes["ketenpoort.refused"].split(",")) == refused
        assert {"Naam.geslachtsnaam", "Locatie.code", "Procedure.zaaknummer"} <= given
        assert any(r.startswith("Procedure.fase:FIELD_NOT_PERMITTED") for r in refused)
        assert any(r.startswith("Vreemdeling.religie:FIELD_NOT_PERMITTED") for r in refused)

    # Registry client spans in the same trace, and a traceparent of it at every registry.
    client_spans = {s["name"]: s for s in mine if s["name"].startswith("registry ")}
    assert set(client_spans) == {"registry BVV", "registry COA", "registry IND"}
    span_ids = {hex_id(s["context"]["span_id"]) for s in mine}
    for span in client_spans.values():
        assert span["kind"] == "SpanKind.CLIENT"
        assert hex_id(span["parent_id"]) in span_ids, "registry spans hang in the request's tree"
    for mock in mock_registries.all:
        assert mock.served, f"{mock.name} was not asked"
        for call in mock.served:
            version, seen_trace, seen_parent, _flags = call.headers["traceparent"].split("-")
            assert (version, seen_trace) == ("00", trace_id), mock.name
            client = client_spans[f"registry {mock.name}"]
            assert seen_parent == hex_id(client["context"]["span_id"]), "the client span's child"


async def test_no_raw_vnummer_in_exported_spans_or_logs(
    start: StartGateway,
    mock_registries: Registries,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything that reaches the root logger, too
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    export = tmp_path / "spans.jsonl"
    running = await start(traces=f"file:{export}", registry_timeout=0.5)
    state = tmp_path / "state"
    dtv = caller(running, state, org="DTV", roles=["regievoerder"], purpose="TERUGKEER")
    overlast = caller(running, state, org="NVIK", roles=["analist"], purpose="OVERLAST")
    toezicht = caller(running, state, org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
    forbidden = caller(running, state, org="NVIK", roles=["analist"], purpose="BEZETTING")
    used = persons(mock_registries, 6100, 20)
    sent: list[str] = []

    async def ask(who: Any, query: str, variables: dict[str, Any] | None = None) -> Any:
        trace_id, _, header = traceparent()
        sent.append(trace_id)
        return await who.query(query, variables, traceparent=header)

    ok = await ask(dtv, ALL_REGISTRIES, {"v": used[0:3]})
    assert ok.status == 200 and ok.body["data"]["vreemdelingen"][0]["naam"] is not None
    # Failing registries: a subgraph with a 5xx, the BVV with a malformed body, a timeout.
    for registry, fault, chunk in (
        ("ind", Faults(status=500), used[3:5]),
        ("bvv", Faults(malformed=True), used[5:7]),
        ("coa", Faults(timeout=True), used[7:9]),
    ):
        getattr(mock_registries, registry).faults = fault
        failed = await ask(dtv, ALL_REGISTRIES, {"v": chunk})
        getattr(mock_registries, registry).faults = Faults()
        codes = {e["extensions"]["code"] for e in failed.body["errors"]}
        assert "REGISTRY_UNAVAILABLE" in codes, (registry, failed.body)
    # Out of scope, and the scope check failing.
    scoped = await ask(overlast, ALL_REGISTRIES.replace("religie", ""), {"v": used[9:11]})
    assert {e["extensions"]["code"] for e in scoped.body["errors"]} >= {"SUBJECT_OUT_OF_SCOPE"}
    mock_registries.bvv.faults = Faults(status=503)
    scope_failed = await ask(overlast, ALL_REGISTRIES.replace("religie", ""), {"v": used[11:12]})
    mock_registries.bvv.faults = Faults()
    assert scope_failed.body["errors"][0]["extensions"]["code"] == "REGISTRY_UNAVAILABLE"
    # Bad queries: validation error, wrong variable shape, too many subjects, refused purpose.
    invalid = f'{{ vreemdeling(vnummer: "{used[12]}") {{ naam {{ bestaatNiet }} }} }}'
    bad = await ask(toezicht, invalid)
    assert bad.status == 400 and bad.body["data"] is None
    shape = await ask(toezicht, ALL_REGISTRIES, {"v": {"vnummer": used[13]}})
    assert shape.body["data"] is None and shape.body["errors"]
    many = [mock_registries.population.vnummer(i) for i in range(6200, 6226)]
    too_many = await ask(toezicht, ALL_REGISTRIES, {"v": many})
    assert too_many.body["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBJECTS"
    refused = await ask(forbidden, ALL_REGISTRIES, {"v": used[14:15]})
    assert refused.status == 403
    # The audit store failing (an error logged by the writer), then recovering.
    db = state / "audit.db"
    _sqlite(db, "ALTER TABLE audit_entry RENAME TO audit_entry_weg")
    down = await ask(dtv, ALL_REGISTRIES, {"v": used[15:17]})
    _sqlite(db, "ALTER TABLE audit_entry_weg RENAME TO audit_entry")
    assert down.status == 503
    # And a request without traceparent.
    plain = await dtv.query(ALL_REGISTRIES, {"v": used[17:20]})
    assert plain.status == 200

    spans = read_spans(running, export)
    exported = export.read_text(encoding="utf-8")
    assert len(spans) > 30
    for trace_id in sent:  # every request was traced, error paths included
        assert of_trace(spans, trace_id), trace_id
    logged = caplog.text + "".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    assert "registry BVV: POST /personen" in logged, "the registry calls' log was captured"
    assert "audit transaction" in logged, "the failing audit store was logged"
    vnummers = set(used) | set(many)
    assert not sorted(v for v in vnummers if v in exported), "raw V-nummer in exported spans"
    assert not sorted(v for v in vnummers if v in logged), "raw V-nummer in the logs"
    # (and nothing else that looks like one: ids are hex, OINs are 20 digits)
    assert not [v for v in VNUMMER_TEXT.findall(exported) if v in vnummers]


def _sqlite(db: Path, sql: str) -> None:
    connection = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        connection.execute(sql)
    finally:
        connection.close()


async def test_request_without_traceparent_starts_a_new_trace_and_records_it(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    export = tmp_path / "spans.jsonl"
    running = await start(traces=f"file:{export}")
    state = tmp_path / "state"
    who = caller(
        running, state, org="NVIK", roles=["analist"], purpose="TOEZICHT_VW", sub="zonder-trace"
    )
    query = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
    first = await who.query(query, {"v": mock_registries.population.vnummer(6300)})
    second = await who.query(query, {"v": mock_registries.population.vnummer(6301)})
    assert first.status == second.status == 200

    trail = await records(running, officer="zonder-trace")
    traces = sorted({r.trace_id for r in trail})
    assert len(traces) == 2, "each request starts its own trace"
    spans = read_spans(running, export)
    for trace_id in traces:
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id != "0" * 32
        own = [r for r in trail if r.trace_id == trace_id]
        assert all(r.parent_span_id is None for r in own), "no incoming parent"
        (request,) = [s for s in of_trace(spans, trace_id) if s["name"] == "POST /graphql"]
        assert request["parent_id"] is None, "a root span"
        assert {r.span_id for r in own} == {hex_id(request["context"]["span_id"])}
        (subject_span,) = [s for s in of_trace(spans, trace_id) if s["name"] == "betrokkene"]
        assert subject_span["attributes"]["dpl.core.data_subject_id"] == own[0].data_subject_id
        assert hex_id(subject_span["parent_id"]) == hex_id(request["context"]["span_id"])
