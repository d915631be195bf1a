"""Searching the trail: the GraphQL admin field ``auditZoeken`` and ``ketenpoort audit report``.

Security officers (``beveiliging``) and the FG of the NVIK search with purpose VERANTWOORDING;
a search names the person by V-nummer (the gateway turns it into the pseudonym) and is itself
recorded, about that person, so the person's report shows who looked at their trail too. An
analist gets nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.cli.main import app as cli_app
from mocks import Registries
from tests.conftest import StartGateway
from tests.support import Caller, caller

ZOEKEN = """
query($v: ID, $m: String, $o: String, $d: String, $s: String, $t: String) {
  auditZoeken(vnummer: $v, medewerker: $m, organisatie: $o, doelbinding: $d, sinds: $s, tot: $t) {
    volgnummer tijdstip traceId organisatie oin medewerker rollen doelbinding grondslag
    verwerking betrokkene coordinaat pad besluit reden register beleidsversie
  }
}
"""
TOEZICHT = """
query($v: ID!) { persoon: vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } religie } }
"""
TERUGKEER = """
query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer procedures { zaaknummer } } }
"""


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def records(running: Running, **query: Any) -> list[AuditRecord]:
    return await running.gateway.audit_store.search(AuditQuery(limit=100_000, **query))


class World:
    """A gateway with some traffic about two persons, V and W."""

    def __init__(self, running: Running, state: Path, mocks: Registries) -> None:
        self.running = running
        self.state = state
        self.v = mocks.population.vnummer(7000)
        self.w = mocks.population.vnummer(7001)
        self.traces: dict[str, str] = {}
        self.between: dt.datetime | None = None

    def who(self, org: str, role: str, purpose: str, sub: str) -> Caller:
        return caller(self.running, self.state, org=org, roles=[role], purpose=purpose, sub=sub)

    async def traffic(self) -> None:
        nvik = self.who("NVIK", "analist", "TOEZICHT_VW", "analist-17")
        dtv = self.who("DTV", "regievoerder", "TERUGKEER", "regie-3")
        ind = self.who("IND", "beslismedewerker", "ASIEL_BEHANDELING", "ind-9")
        for name, who, query, variables in (
            ("nvik", nvik, TOEZICHT, {"v": self.v}),
            ("dtv", dtv, TERUGKEER, {"v": [self.v, self.w]}),
            ("ind", ind, TERUGKEER, {"v": [self.w]}),
        ):
            trace_id, header = traceparent()
            answer = await who.query(query, variables, traceparent=header)
            assert answer.status == 200, answer.body
            self.traces[name] = trace_id
            if name == "nvik":
                await asyncio.sleep(0.01)
                self.between = dt.datetime.now(dt.UTC)
                await asyncio.sleep(0.01)

    async def search(self, who: Caller, **variables: Any) -> tuple[str, Any]:
        trace_id, header = traceparent()
        return trace_id, await who.query(ZOEKEN, variables, traceparent=header)


@pytest.fixture
async def world(start: StartGateway, mock_registries: Registries, tmp_path: Path) -> World:
    world = World(await start(), tmp_path / "state", mock_registries)
    await world.traffic()
    return world


@pytest.mark.parametrize("role", ["beveiliging", "fg"])
async def test_audit_search_by_vnummer_finds_the_persons_records_and_is_recorded(
    world: World, role: str
) -> None:
    running = world.running
    pseudonym = running.gateway.pseudonym
    officer = f"{role}-1"
    security = world.who("NVIK", role, "VERANTWOORDING", officer)
    expected = await records(running, subject=pseudonym(world.v))

    trace_id, answer = await world.search(security, v=world.v)
    assert answer.status == 200, answer.body
    assert "errors" not in answer.body, answer.body["errors"]
    rows = answer.body["data"]["auditZoeken"]
    assert [r["volgnummer"] for r in rows] == [r.seq for r in expected]
    assert {r["betrokkene"] for r in rows} == {pseudonym(world.v)}
    assert {r["traceId"] for r in rows} == {world.traces["nvik"], world.traces["dtv"]}
    assert {(r["organisatie"], r["doelbinding"]) for r in rows} == {
        ("NVIK", "TOEZICHT_VW"),
        ("DTV", "TERUGKEER"),
    }
    policy = running.gateway.policy
    for row in rows:
        assert row["grondslag"] == policy.purposes[row["doelbinding"]].grondslag
        assert row["oin"] == policy.organisations[row["organisatie"]].oin
        assert row["beleidsversie"] == policy.version
    refused = [r for r in rows if r["besluit"] == "refused"]
    assert [r["coordinaat"] for r in refused] == ["Vreemdeling.religie"]
    assert refused[0]["reden"].startswith("FIELD_NOT_PERMITTED")
    assert {"Naam.geslachtsnaam", "Procedure.zaaknummer"} <= {r["coordinaat"] for r in rows}
    assert world.v not in answer.encode().decode(), "the trail shows pseudonyms only"

    # The search itself is in the trail: who searched, why, and about whom.
    own = await records(running, trace_id=trace_id)
    assert own, "the search was not recorded"
    by_coordinate = {r.coordinate: r for r in own}
    search = by_coordinate["Query.auditZoeken"]
    assert search.decision is Decision.GIVEN
    assert (search.organisation, search.officer, search.roles) == ("NVIK", officer, (role,))
    assert search.purpose == "VERANTWOORDING"
    assert search.legal_basis == policy.purposes["VERANTWOORDING"].grondslag
    assert {r.decision for r in own} == {Decision.GIVEN}
    assert "AuditRegel.betrokkene" in by_coordinate
    # A search by V-nummer is about that person: the person's own report must show it.
    assert {r.data_subject_id for r in own} == {pseudonym(world.v)}, (
        "auditZoeken(vnummer:) is recorded without its data subject: a later search or "
        "report for this person does not show that the trail was searched"
    )
    assert world.v not in {r.officer for r in own}
    _, again = await world.search(security, v=world.v)
    seen = {
        (r["traceId"], r["coordinaat"], r["medewerker"]) for r in again.body["data"]["auditZoeken"]
    }
    assert (trace_id, "Query.auditZoeken", officer) in seen, "the first search shows in the second"


async def test_audit_search_filters_combine(world: World) -> None:
    running = world.running
    security = world.who("NVIK", "beveiliging", "VERANTWOORDING", "beveiliging-2")
    oin = running.gateway.policy.organisations["DTV"].oin

    async def traces(**variables: Any) -> set[str]:
        _, answer = await world.search(security, **variables)
        assert answer.status == 200 and "errors" not in answer.body, answer.body
        return {r["traceId"] for r in answer.body["data"]["auditZoeken"]}

    v, w = world.v, world.w
    assert await traces(v=v, m="regie-3") == {world.traces["dtv"]}
    assert await traces(v=v, o="DTV") == {world.traces["dtv"]}
    assert await traces(v=v, o=oin) == {world.traces["dtv"]}
    assert await traces(v=v, d="TOEZICHT_VW") == {world.traces["nvik"]}
    assert await traces(v=w) == {world.traces["dtv"], world.traces["ind"]}
    assert await traces(v=w, m="ind-9") == {world.traces["ind"]}
    assert await traces(v=v, o="IND") == set()
    assert world.between is not None
    assert await traces(v=v, m="analist-17", t=world.between.isoformat()) == {world.traces["nvik"]}
    assert await traces(v=v, m="analist-17", s=world.between.isoformat()) == set()
    assert await traces(v=v, m="regie-3", s=world.between.isoformat()) == {world.traces["dtv"]}


async def test_audit_search_without_a_vnummer_is_over_the_cap(world: World) -> None:
    """VERANTWOORDING may name one data subject per search; a search without a V-nummer may
    return records on hundreds: refused before it runs, recorded once, without a subject
    (searches by officer alone are for ``ketenpoort audit search``, which is recorded too)."""
    security = world.who("NVIK", "beveiliging", "VERANTWOORDING", "beveiliging-4")
    trace_id, answer = await world.search(security, m="regie-3")
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert answer.body["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBJECTS"
    (record,) = await records(world.running, trace_id=trace_id)
    assert (record.coordinate, record.reason, record.data_subject_id) == (
        "Query",
        "TOO_MANY_SUBJECTS",
        None,
    )


async def test_analist_cannot_search_the_trail(world: World) -> None:
    running = world.running
    # With VERANTWOORDING in the token: the policy does not grant it to an analist.
    claimed = world.who("NVIK", "analist", "VERANTWOORDING", "analist-17")
    trace_id, answer = await world.search(claimed, v=world.v)
    assert answer.status == 403
    assert answer.body["data"] is None
    assert answer.body["errors"][0]["extensions"]["code"] == "PURPOSE_NOT_GRANTED"
    (record,) = await records(running, trace_id=trace_id)
    assert (record.coordinate, record.decision, record.reason) == (
        "Query",
        Decision.REFUSED,
        "PURPOSE_NOT_GRANTED",
    )

    # With a purpose the analist has: the field is not in that purpose's set.
    analist = world.who("NVIK", "analist", "TOEZICHT_VW", "analist-17")
    trace_id, answer = await world.search(analist, v=world.v)
    assert answer.body["data"] is None
    (error,) = answer.body["errors"]
    assert error["extensions"]["code"] == "FIELD_NOT_PERMITTED"
    assert error["path"] == ["auditZoeken"]
    own = await records(running, trace_id=trace_id)
    assert own and all(r.decision is Decision.REFUSED for r in own)
    assert "Query.auditZoeken" in {r.coordinate for r in own}
    assert "volgnummer" not in answer.encode().decode()


async def test_bad_search_input_is_refused_and_recorded_as_refused(world: World) -> None:
    security = world.who("NVIK", "beveiliging", "VERANTWOORDING", "beveiliging-3")
    for variables in ({"v": "123"}, {"s": "gisteren"}):
        trace_id, answer = await world.search(security, **variables)
        assert answer.status == 400, answer.body
        assert answer.body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        own = await records(world.running, trace_id=trace_id)
        assert own, "a refused search is recorded"
        given = [r.coordinate for r in own if r.decision is Decision.GIVEN]
        assert not given, f"{variables}: nothing was given, yet recorded as given: {given}"


def cli(state: Path, url: str, *args: str) -> Any:
    env = {"KETENPOORT_STATE": str(state), "KETENPOORT_AUDIT_STORE": url}
    return CliRunner().invoke(cli_app, list(args), env=env)


async def test_cli_report_lists_organisation_purpose_legal_basis_and_fields(world: World) -> None:
    running = world.running
    url = f"sqlite:///{world.state / 'audit.db'}"
    result = await asyncio.to_thread(
        cli, world.state, url, "audit", "report", "--vnummer", world.v, "--as", "fg-cli"
    )
    assert result.exit_code == 0, result.output
    report = result.output
    policy = running.gateway.policy
    assert "Accesses: 2" in report, report
    for organisation, purpose in (("NVIK", "TOEZICHT_VW"), ("DTV", "TERUGKEER")):
        oin = policy.organisations[organisation].oin
        assert f"Organisation: {organisation} (OIN {oin})" in report
        assert f"Purpose: {purpose}" in report
        assert f"Legal basis: {policy.purposes[purpose].grondslag}" in report
    assert "Officer: analist-17" in report and "Officer: regie-3" in report
    given = [line for line in report.splitlines() if line.startswith("- Given:")]
    assert len(given) == 2
    assert any("persoon.naam.geslachtsnaam" in line for line in given), given
    assert any("vreemdelingen.procedures.zaaknummer" in line for line in given), given
    assert any(
        line.startswith("- Refused:") and "persoon.religie (FIELD_NOT_PERMITTED" in line
        for line in report.splitlines()
    ), report
    assert "ASIEL_BEHANDELING" not in report, "W's IND access is not V's"
    assert world.v not in report, "the report never prints the V-nummer"
    # The report itself is recorded, about the person.
    (use,) = await records(running, officer="fg-cli")
    assert use.coordinate == "Audit.report"
    assert use.data_subject_id == running.gateway.pseudonym(world.v)
