"""Regression tests for the findings of an independent fail-closed review.

Each test once demonstrated a defect (a hang, a gap in the trail, an internal error for bad
input, a plain-text 500); each now holds the fixed behaviour.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery
from gateway.http.app import create_app
from mocks import Registries
from tests.support import Caller, caller, settings_for


def analist(running: Running, tmp_path: Path, **kw: Any) -> Caller:
    return caller(
        running, tmp_path / "state", org="NVIK", roles=["analist"], purpose="TOEZICHT_VW", **kw
    )


def doubling_fragments(n: int, vnummer: str) -> str:
    """A ~1 KB document whose fragments expand to 2**n fields when flattened naively."""
    fragments = ["fragment F0 on Vreemdeling { vnummer }"]
    fragments += [
        f"fragment F{i} on Vreemdeling {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n + 1)
    ]
    return f'query {{ vreemdeling(vnummer: "{vnummer}") {{ ...F{n} }} }} ' + " ".join(fragments)


async def test_fragment_doubling_does_not_block_the_gateway(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Was a hang: the planner flattened fragments (builder.PlanBuilder.collect) before counting
    fields, so a 1 KB document cost 2**n work on the event loop (n=22: ~10 s)."""
    who = analist(gateway, tmp_path)
    query = doubling_fragments(22, mock_registries.population.vnummer(1))
    assert len(query) < 1200
    began = time.perf_counter()
    answer = await who.query(query)
    elapsed = time.perf_counter() - began
    refused = answer.body.get("errors", [{}])[0].get("extensions", {}).get("code")
    assert answer.status == 200 or refused == "QUERY_TOO_COMPLEX", answer.body
    assert elapsed < 3.0, f"a 1 KB document blocked the event loop for {elapsed:.1f} s"


async def test_x_gebruiker_does_not_erase_the_token_subject_from_the_trail(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Was a gap in the trail: with X-Gebruiker set, the token's ``sub`` (who authenticated)
    was recorded nowhere; a caller could attribute its look-ups to another officer."""
    # An application token that may act for officers (the only kind that may name another).
    who = analist(gateway, tmp_path, sub="medewerker-echt", act_for_officers=True)
    vnummer = mock_registries.population.vnummer(3)
    answer = await who.query(
        "query($v: ID!) { vreemdeling(vnummer: $v) { naam { geslachtsnaam } } }",
        {"v": vnummer},
        **{"X-Gebruiker": "medewerker-ander"},
    )
    assert answer.status == 200 and answer.body["data"]["vreemdeling"] is not None
    records = await gateway.gateway.audit_store.search(
        AuditQuery(subject=gateway.gateway.pseudonym(vnummer), limit=1000)
    )
    assert records
    assert any("medewerker-echt" in repr(record) for record in records), (
        "the authenticated subject of the token is missing from the audit records"
    )


async def test_a_search_that_finds_nobody_is_recorded(gateway: Running, tmp_path: Path) -> None:
    """Was a gap in the trail: zoekVreemdelingen resolving to [] commits no audit batch at all (the
    batch is empty and Gateway.execute skips the commit), although the answer discloses that
    nobody with that name and birth date exists — a V-nummer that is not found is recorded."""
    who = analist(gateway, tmp_path)
    before = len(await gateway.gateway.audit_store.search(AuditQuery(limit=100_000)))
    answer = await who.query(
        '{ zoekVreemdelingen(geslachtsnaam: "Niemandxyz", geboortedatum: "1990-01-01") '
        "{ vnummer } }"
    )
    assert answer.status == 200 and answer.body["data"] == {"zoekVreemdelingen": []}
    after = await gateway.gateway.audit_store.search(AuditQuery(limit=100_000))
    assert len(after) > before, "the search was answered but left no record"


async def test_wrongly_typed_variable_is_bad_user_input(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Was: a variable of the wrong type is answered 200 INTERNAL_ERROR (and logged as an
    internal error with a traceback) instead of 400 BAD_USER_INPUT."""
    who = analist(gateway, tmp_path)
    answer = await who.query(
        "query($v: ID!, $b: Boolean!) { vreemdeling(vnummer: $v) "
        "{ naam @include(if: $b) { voornamen } } }",
        {"v": mock_registries.population.vnummer(1), "b": "yes"},
    )
    assert answer.body["data"] is None
    assert answer.body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", answer.body
    assert answer.status == 400


async def test_invalid_date_literal_is_bad_user_input(gateway: Running, tmp_path: Path) -> None:
    """Was: an invalid Date literal is reported as INTERNAL_ERROR (masked) with status 400."""
    who = analist(gateway, tmp_path)
    answer = await who.query(
        '{ zoekVreemdelingen(geslachtsnaam: "x", geboortedatum: "not-a-date") { vnummer } }'
    )
    assert answer.status == 400
    assert answer.body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", answer.body


def test_deeply_nested_json_body_is_bad_user_input(
    tmp_path: Path, mock_registries: Registries
) -> None:
    """Was a crash: a 5 KB body of nested brackets makes json.loads raise RecursionError, which
    graphql_post does not catch: a plain-text 500 from Starlette, not the stable JSON error."""
    mock_registries.reset()
    app = create_app(settings_for(tmp_path / "state"), mocks=mock_registries)
    with TestClient(app, raise_server_exceptions=False) as http:
        answer = http.post(
            "/graphql", content=b"[" * 5000, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, (answer.status_code, answer.text[:100])
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
