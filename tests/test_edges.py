"""The edges of issue 10, one test per finding: every way to name a person is validated, capped,
charged and recorded exactly once.

Each test once reproduced a finding against ``make serve``; each now holds the corrected
behaviour: the code and status, no data, what the registries were asked, and what the trail
records (and what it does not).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.cli.main import app as cli_app
from gateway.identifiers import is_identifier, is_vnummer
from gateway.proportionality.counting import SEARCH_LIMIT
from mocks import Registries
from tests.support import Caller, caller

BAD_VNUMMERS = {
    "trailing-newline": "0123456789\n",
    "fullwidth-digits": "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19",
    "arabic-indic-digit": "012345678\u0663",
    "leading-space": " 0123456789",
    "nine-digits": "012345678",
    "eleven-digits": "01234567890",
    "empty": "",
    "nul": "01234\x0056789",
    "letters": "0123456789a"[:10].replace("9", "a"),
}
LIST = "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { naam { geslachtsnaam } } }"
ONE = "query($v: ID!) { vreemdeling(vnummer: $v) { naam { geslachtsnaam } } }"


def who(running: Running, tmp_path: Path, purpose: str, role: str = "analist", **kw: Any) -> Caller:
    return caller(running, tmp_path / "state", org="NVIK", roles=[role], purpose=purpose, **kw)


async def ask(
    person: Caller, query: str, variables: dict[str, Any] | None = None, **headers: str
) -> tuple[Any, list[AuditRecord]]:
    """The answer and the records of exactly this request (by its trace id)."""
    trace_id = secrets.token_hex(16)
    headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    answer = await person.query(query, variables, **headers)
    found = await person.running.gateway.audit_store.search(
        AuditQuery(trace_id=trace_id, limit=100_000)
    )
    return answer, found


def code(answer: Any) -> str:
    return str(answer.body["errors"][0]["extensions"]["code"])


def served(mocks: Registries) -> list[Any]:
    return [call for registry in mocks.all for call in registry.served]


def assert_refused_once(records: list[AuditRecord], reason: str, identifiers: int) -> None:
    """One request-level record, no data subject, with the count of identifiers named."""
    assert len(records) >= 1, "the refusal was not recorded"
    assert all(r.data_subject_id is None for r in records), "a refusal invented a data subject"
    assert not [r for r in records if r.decision is Decision.GIVEN]
    (query,) = [r for r in records if r.coordinate == "Query"]
    assert query.reason == reason and query.decision is Decision.REFUSED
    assert query.path == (f"identifiers:{identifiers}" if identifiers else "")


# ---- 1. V-nummer validation ------------------------------------------------------------------


def test_identifier_checks_are_ascii_length_first_and_whole_string() -> None:
    assert is_vnummer("0123456789")
    for bad in BAD_VNUMMERS.values():
        assert not is_vnummer(bad), repr(bad)
    assert not is_vnummer(12345678901) and not is_vnummer("0" * 10_000_000)
    assert is_identifier("00000099000000000101", "oin")
    assert not is_identifier("00000099000000000101\n", "oin")
    assert not is_identifier("TOEZICHT_VW\n", "policy_id")
    assert not is_identifier("TOEZICHT_V\u0130", "policy_id")
    assert not is_identifier("a b", "officer") and is_identifier("jan.jansen@nvik", "officer")


@pytest.mark.parametrize("name", sorted(BAD_VNUMMERS))
async def test_a_malformed_vnummer_refuses_the_request_before_any_fetch(
    gateway: Running, mock_registries: Registries, tmp_path: Path, name: str
) -> None:
    bad = BAD_VNUMMERS[name]
    good = mock_registries.population.vnummer(2)
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    for query, variables, named in ((LIST, {"v": [good, bad]}, 2), (ONE, {"v": bad}, 1)):
        answer, records = await ask(person, query, variables)
        assert answer.status == 400 and answer.body["data"] is None, answer.body
        assert code(answer) == "BAD_USER_INPUT"
        assert "Traceback" not in answer.encode().decode()
        assert served(mock_registries) == [], "a malformed V-nummer reached a registry"
        assert_refused_once(records, "BAD_USER_INPUT", named)


# ---- 2. refused roots create no data subjects -------------------------------------------------


@pytest.mark.parametrize("wellformed", [True, False], ids=["ten-digits", "made-up"])
async def test_a_refused_root_with_15000_ids_is_one_record(
    gateway: Running, mock_registries: Registries, tmp_path: Path, wellformed: bool
) -> None:
    ids = [f"{i:010d}" if wellformed else f"x{i}" for i in range(15_000)]
    person = who(gateway, tmp_path, "ANALYSE")
    began = time.perf_counter()
    answer, records = await ask(
        person, "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer } }", {"v": ids}
    )
    elapsed = time.perf_counter() - began
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert code(answer) == "TOO_MANY_SUBJECTS"
    assert served(mock_registries) == []
    assert len(records) == 1, f"{len(records)} records for one refused request"
    assert_refused_once(records, "TOO_MANY_SUBJECTS", 15_000)
    assert elapsed < 10, elapsed


async def test_a_refused_nullable_root_names_nobody(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """VERANTWOORDING may not look persons up: the refused root is answered null and recorded
    for the request, never as an access to the person it names; it still passes the same
    validation (a malformed V-nummer is BAD_USER_INPUT) and cap (one person) as an allowed one."""
    v, w = mock_registries.population.vnummer(4), mock_registries.population.vnummer(5)
    security = who(gateway, tmp_path, "VERANTWOORDING", role="beveiliging")
    answer, records = await ask(
        security, f'{{ p: vreemdeling(vnummer: "{v}") {{ vnummer }} __typename }}'
    )
    assert answer.status == 200, answer.body
    assert answer.body["data"] == {"p": None, "__typename": "Query"}
    assert [(e["path"], e["extensions"]["code"]) for e in answer.body["errors"]] == [
        (["p"], "FIELD_NOT_PERMITTED")
    ]
    assert served(mock_registries) == []
    assert records and all(r.data_subject_id is None for r in records)
    assert [(r.coordinate, r.path, r.decision) for r in records] == [
        ("Query.vreemdeling", "p", Decision.REFUSED)
    ]
    answer, records = await ask(security, ONE, {"v": "0123456789\n"})
    assert code(answer) == "BAD_USER_INPUT" and answer.status == 400
    assert_refused_once(records, "BAD_USER_INPUT", 1)
    answer, records = await ask(
        security,
        f'{{ a: vreemdeling(vnummer: "{v}") {{ vnummer }} '
        f'b: vreemdeling(vnummer: "{w}") {{ vnummer }} }}',
    )
    assert code(answer) == "TOO_MANY_SUBJECTS" and answer.status == 400
    assert_refused_once(records, "TOO_MANY_SUBJECTS", 2)


# ---- 3. auditZoeken capped and charged ---------------------------------------------------------


async def test_trail_searches_are_capped_and_charged(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    security = who(gateway, tmp_path, "VERANTWOORDING", role="beveiliging", sub="beveiliging-9")
    vs = [mock_registries.population.vnummer(i) for i in range(30)]
    aliased = " ".join(
        f'a{i}: auditZoeken(vnummer: "{v}") {{ volgnummer }}' for i, v in enumerate(vs)
    )
    answer, records = await ask(security, f"{{ {aliased} }}")
    assert answer.status == 400 and code(answer) == "TOO_MANY_SUBJECTS", answer.body
    assert_refused_once(records, "TOO_MANY_SUBJECTS", 30)

    answer, records = await ask(security, '{ auditZoeken(medewerker: "regie-3") { volgnummer } }')
    assert answer.status == 400 and code(answer) == "TOO_MANY_SUBJECTS", answer.body
    assert_refused_once(records, "TOO_MANY_SUBJECTS", 0)

    # The daily quota (200 for VERANTWOORDING) is charged per person searched for.
    quota = gateway.gateway.quota_store
    await quota.reserve("beveiliging-9", "VERANTWOORDING", 199, 200)
    search = '{ auditZoeken(vnummer: "%s") { volgnummer } }'
    answer, _ = await ask(security, search % vs[0])
    assert answer.status == 200, answer.body
    answer, records = await ask(security, search % vs[1])
    assert answer.status == 429 and code(answer) == "QUOTA_EXCEEDED", answer.body
    assert answer.headers.get("retry-after")
    assert_refused_once(records, "QUOTA_EXCEEDED", 1)


# ---- 4. searches charged for what they may return --------------------------------------------


async def test_searches_are_charged_for_what_they_may_return(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    record = mock_registries.population.record(11)
    name, birth = record["naam"]["geslachtsnaam"], record["geboorte"]["datum"]
    search = f'zoekVreemdelingen(geslachtsnaam: "{name}", geboortedatum: "{birth}") {{ vnummer }}'
    person = who(gateway, tmp_path, "TOEZICHT_VW", sub="zoeker-1")
    aliased = " ".join(f"s{i}: {search}" for i in range(25))
    answer, records = await ask(person, f"{{ {aliased} }}")
    assert answer.status == 400 and code(answer) == "TOO_MANY_SUBJECTS", answer.body
    assert served(mock_registries) == [], "the searches ran although over the cap"
    assert_refused_once(records, "TOO_MANY_SUBJECTS", 0)

    answer, _ = await ask(person, f"{{ {search} }}")
    assert answer.status == 200, answer.body
    found = answer.body["data"]["zoekVreemdelingen"]
    assert {"vnummer": record["vnummer"]} in found
    used = (await gateway.gateway.quota_store.reserve("zoeker-1", "TOEZICHT_VW", 0, 200)).used
    assert used == SEARCH_LIMIT >= len(found), "a search is charged for what it may return"


# ---- 5. validation against the caller's own schema -------------------------------------------


async def test_validation_messages_name_nothing_hidden(gateway: Running, tmp_path: Path) -> None:
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    answer, records = await ask(person, '{ vreemdeling(vnummer: "0123456789") { religi } }')
    assert answer.status == 400 and code(answer) == "BAD_USER_INPUT"
    text = answer.encode().decode()
    assert "religie" not in text and "Did you mean" not in text, text
    assert_refused_once(records, "BAD_USER_INPUT", 0)
    hidden, _ = await ask(person, "{ ... on Gezondheid { zorgbehoefte } }")
    absent, _ = await ask(person, "{ ... on Bestaatniet { zorgbehoefte } }")
    assert hidden.status == absent.status == 400
    messages = [a.body["errors"][0]["message"] for a in (hidden, absent)]
    assert messages[0].replace("Gezondheid", "X") == messages[1].replace("Bestaatniet", "X")


# ---- 6. officers -------------------------------------------------------------------------------


async def test_x_gebruiker_needs_an_application_token(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    v = mock_registries.population.vnummer(6)
    personal = who(gateway, tmp_path, "TOEZICHT_VW", sub="agent-1")
    answer, records = await ask(personal, ONE, {"v": v}, **{"X-Gebruiker": "verzonnen-naam"})
    assert answer.status == 400 and code(answer) == "BAD_USER_INPUT", answer.body
    assert served(mock_registries) == []
    assert [(r.officer, r.authenticated_as) for r in records] == [("agent-1", "agent-1")]
    answer, _ = await ask(personal, ONE, {"v": v}, **{"X-Gebruiker": "agent-1"})
    assert answer.status == 200, answer.body

    app = who(gateway, tmp_path, "TOEZICHT_VW", sub="app-1", act_for_officers=True)
    for bad in ("twee woorden", "\u00e9\u00e9n", "x" * 129, "tab\there"):
        answer, _ = await ask(app, ONE, {"v": v}, **{"X-Gebruiker": bad})
        assert answer.status == 400 and code(answer) == "BAD_USER_INPUT", bad
    answer, records = await ask(app, ONE, {"v": v}, **{"X-Gebruiker": "officier-a"})
    assert answer.status == 200, answer.body
    assert {(r.officer, r.authenticated_as) for r in records} == {("officier-a", "app-1")}

    # Quotas per (application, officer), under an application-wide ceiling.
    quota = gateway.gateway.quota_store
    await quota.reserve("app-1 officier-a", "TOEZICHT_VW", 200 - 1, 200)
    answer, _ = await ask(app, ONE, {"v": v}, **{"X-Gebruiker": "officier-a"})
    assert answer.status == 429, answer.body
    answer, _ = await ask(app, ONE, {"v": v}, **{"X-Gebruiker": "officier-b"})
    assert answer.status == 200, answer.body
    await quota.reserve("app-1 (application)", "TOEZICHT_VW", 10_000, 1_000_000)
    answer, _ = await ask(app, ONE, {"v": v}, **{"X-Gebruiker": "officier-c"})
    assert answer.status == 429 and code(answer) == "QUOTA_EXCEEDED", answer.body


def test_token_command_mints_application_tokens(tmp_path: Path) -> None:
    env = {"KETENPOORT_STATE": str(tmp_path)}
    args = ["token", "--org", "NVIK", "--role", "analist", "--doelbinding", "TOEZICHT_VW"]
    for extra, expected in (([], False), (["--act-for-officers"], True)):
        result = CliRunner().invoke(cli_app, [*args, *extra], env=env)
        assert result.exit_code == 0, result.output
        token = result.stdout.strip().splitlines()[-1]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims.get("ketenpoort:act_for_officers", False) is expected


# ---- 7. the trail says exactly what the answer carried ---------------------------------------


async def test_an_answer_nulled_by_a_refused_root_fetches_and_gives_nothing(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    v = mock_registries.population.vnummer(8)
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    answer, records = await ask(
        person,
        f'{{ p: vreemdeling(vnummer: "{v}") {{ naam {{ geslachtsnaam }} }} '
        's: opvangstatistiek(peildatum: "2024-01-01", groepering: LOCATIE) { aantal } }',
    )
    assert answer.body["data"] is None and answer.status == 200, answer.body
    assert [(e["path"], e["extensions"]["code"]) for e in answer.body["errors"]] == [
        (["s"], "FIELD_NOT_PERMITTED")
    ]
    assert served(mock_registries) == [], "persons fetched for an answer that carries none"
    assert_refused_once(records, "FIELD_NOT_PERMITTED", 1)
    assert "Query.opvangstatistiek" in {r.coordinate for r in records}


async def test_an_answer_nulled_during_execution_records_nothing_as_given(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    record = mock_registries.population.record(12)
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    mock_registries.bvv.faults.status = 500
    answer, records = await ask(
        person,
        f'{{ p: vreemdeling(vnummer: "{record["vnummer"]}") {{ naam {{ geslachtsnaam }} }} '
        f's: zoekVreemdelingen(geslachtsnaam: "{record["naam"]["geslachtsnaam"]}", '
        f'geboortedatum: "{record["geboorte"]["datum"]}") {{ vnummer }} }}',
    )
    assert answer.body["data"] is None, answer.body
    assert records, "the request was not recorded"
    assert [r.coordinate for r in records if r.decision is Decision.GIVEN] == []


# ---- 8. searches carry the row scope ---------------------------------------------------------


async def test_searches_carry_the_row_scope_to_the_registry(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    population = mock_registries.population
    outside = next(
        population.record(i)
        for i in range(2000)
        if not any(s["soort"] == "OVERLAST" for s in population.record(i)["signaleringen"])
    )
    person = who(gateway, tmp_path, "OVERLAST")
    answer, records = await ask(
        person,
        f'{{ zoekVreemdelingen(geslachtsnaam: "{outside["naam"]["geslachtsnaam"]}", '
        f'geboortedatum: "{outside["geboorte"]["datum"]}") {{ vnummer }} }}',
    )
    assert answer.status == 200, answer.body
    assert {"vnummer": outside["vnummer"]} not in answer.body["data"]["zoekVreemdelingen"]
    (search, *rest) = mock_registries.bvv.served
    assert "signaleringen.soort" in search.fields, "the search was run without the row scope"
    assert all(outside["vnummer"] not in call.vnummers for call in rest), "looked up anyway"
    pseudonym = gateway.gateway.pseudonym(outside["vnummer"])
    assert pseudonym not in {r.data_subject_id for r in records}
    assert json.dumps(answer.body).count(outside["vnummer"]) == 0
