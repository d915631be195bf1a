"""Proportionality (issue "Proportionality"): targeted look-ups only, never bulk.

Against an in-process gateway over the mock registries: per-request subject caps (also through
aliases and lists), the per-officer daily quota (memory store; a dead Redis fails closed), exact
search without wildcards, query limits and trusted documents, and the disclosure control of the
ANALYSE aggregates, checked against the raw counts of the COA mock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from gateway.assembly.runtime import Running, start_gateway
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.cli.main import app as cli_app
from gateway.config import Limits
from mocks import Registries, create_registries
from mocks.coa import opvangstatistiek as raw_statistics
from tests.conftest import StartGateway
from tests.support import Caller, caller, rational_rank, settings_for

PERSON = "{ vnummer naam { geslachtsnaam } }"
LIST_QUERY = "query($v: [ID!]!) { vreemdelingen(vnummers: $v) " + PERSON + " }"
ONE_QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) " + PERSON + " }"
SEARCH_QUERY = (
    "query($n: String!, $d: Date!) { zoekVreemdelingen(geslachtsnaam: $n, geboortedatum: $d) "
    + PERSON
    + " }"
)
GROUPINGS = ("LOCATIE", "GEMEENTE", "NATIONALITEIT", "VERBLIJFSSTATUS")
PEILDATUM = "2024-06-01"
STATISTICS = (
    'query($g: StatistiekGroepering!) { opvangstatistiek(peildatum: "' + PEILDATUM + '", '
    "groepering: $g) { sleutel aantal onderdrukt } }"
)


# ---- helpers ----------------------------------------------------------------------------------


def officer(label: str) -> str:
    """A fresh officer id, so the trail of one request can be found by officer."""
    return f"{label}-{secrets.token_hex(4)}"


def nvik(running: Running, tmp_path: Path, purpose: str, sub: str | None = None) -> Caller:
    return caller(
        running,
        tmp_path / "state",
        org="NVIK",
        roles=["analist"],
        purpose=purpose,
        sub=sub or officer(purpose.lower()),
    )


def sub_of(who: Caller) -> str:
    return str(jwt.decode(who.token, options={"verify_signature": False})["sub"])


def vnummers(mocks: Registries, n: int, start: int = 0) -> list[str]:
    return [mocks.population.vnummer(i) for i in range(start, start + n)]


def aliased(numbers: list[str]) -> str:
    """One operation with one aliased ``vreemdeling`` look-up per V-nummer."""
    lookups = " ".join(f'a{i}: vreemdeling(vnummer: "{v}") {PERSON}' for i, v in enumerate(numbers))
    return "{ " + lookups + " }"


def served_nothing(mocks: Registries) -> bool:
    return all(m.served == [] for m in mocks.all)


def code_of(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


async def trail(running: Running, sub: str) -> list[AuditRecord]:
    return await running.gateway.audit_store.search(AuditQuery(officer=sub, limit=100_000))


async def assert_one_request_record(running: Running, sub: str, reason: str) -> None:
    """The refused request left exactly one record, without a data subject."""
    records = await trail(running, sub)
    assert len(records) == 1, [(r.coordinate, r.reason, r.data_subject_id) for r in records]
    (record,) = records
    assert record.data_subject_id is None and record.data_subject_id_type is None
    assert record.decision is Decision.REFUSED and record.reason == reason
    # The path says how many identifiers the request named (never one subject per string).
    assert record.coordinate == "Query"
    assert record.path == "" or record.path.startswith("identifiers:"), record.path


def persons_in(body: dict[str, Any]) -> int:
    """Persons returned in a ``vreemdelingen`` answer."""
    return sum(1 for p in (body.get("data") or {}).get("vreemdelingen") or [] if p is not None)


# ---- subject caps -------------------------------------------------------------------------------


async def test_150_aliased_lookups_are_refused_before_any_fetch(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")
    answer = await who.query(aliased(vnummers(mock_registries, 150)))
    # 150 look-ups × 4 fields = 600 fields > max_fields (400): the complexity limit refuses it
    # before the subject cap is even counted.
    assert answer.status == 400, answer.body
    assert answer.body["data"] is None
    assert code_of(answer.body) == "QUERY_TOO_COMPLEX", answer.body
    assert served_nothing(mock_registries)
    await assert_one_request_record(gateway, sub_of(who), "QUERY_TOO_COMPLEX")


async def test_150_aliases_of_the_same_person_are_refused(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")
    answer = await who.query(aliased(vnummers(mock_registries, 1) * 150))
    assert answer.status == 400, answer.body
    assert answer.body["data"] is None
    assert code_of(answer.body) == "QUERY_TOO_COMPLEX", answer.body
    assert served_nothing(mock_registries)
    await assert_one_request_record(gateway, sub_of(who), "QUERY_TOO_COMPLEX")


async def test_aliases_within_the_complexity_limits_hit_the_subject_cap(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Aliases count one subject each, also for the same person: no way around the cap."""
    cap = gateway.gateway.policy.purposes["TOEZICHT_VW"].max_subjects
    for numbers in (vnummers(mock_registries, cap + 1), vnummers(mock_registries, 1) * (cap + 1)):
        who = nvik(gateway, tmp_path, "TOEZICHT_VW")
        answer = await who.query(aliased(numbers))
        assert answer.status == 400 and answer.body["data"] is None, answer.body
        assert code_of(answer.body) == "TOO_MANY_SUBJECTS", answer.body
        assert answer.body["errors"][0]["extensions"]["maximum"] == cap
        assert served_nothing(mock_registries)
        await assert_one_request_record(gateway, sub_of(who), "TOO_MANY_SUBJECTS")


@pytest.mark.parametrize("as_variable", [True, False], ids=["variable", "literal"])
async def test_list_of_500_is_refused_before_any_fetch(
    gateway: Running, mock_registries: Registries, tmp_path: Path, as_variable: bool
) -> None:
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")
    numbers = vnummers(mock_registries, 500)
    if as_variable:
        answer = await who.query(LIST_QUERY, {"v": numbers})
    else:
        answer = await who.query(
            "{ vreemdelingen(vnummers: " + json.dumps(numbers) + ") " + PERSON + " }"
        )
    assert answer.status == 400, answer.body
    assert answer.body["data"] is None
    assert code_of(answer.body) == "TOO_MANY_SUBJECTS", answer.body
    assert served_nothing(mock_registries)
    await assert_one_request_record(gateway, sub_of(who), "TOO_MANY_SUBJECTS")


@pytest.mark.parametrize("purpose", ["TOEZICHT_VW", "STRAFVORDERING"])
async def test_exactly_the_cap_is_accepted_and_one_more_refused(
    gateway: Running, mock_registries: Registries, tmp_path: Path, purpose: str
) -> None:
    cap = gateway.gateway.policy.purposes[purpose].max_subjects
    assert cap > 0
    numbers = vnummers(mock_registries, cap + 1, start=1000)

    # At the cap, as a list and as aliases: every person comes back.
    who = nvik(gateway, tmp_path, purpose)
    answer = await who.query(LIST_QUERY, {"v": numbers[:cap]})
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert [p["vnummer"] for p in answer.body["data"]["vreemdelingen"]] == numbers[:cap]
    answer = await who.query(aliased(numbers[:cap]))
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert len(answer.body["data"]) == cap and all(
        p is not None for p in answer.body["data"].values()
    )

    # One more: refused whole, nothing fetched, one record without a subject.
    for query, variables in ((LIST_QUERY, {"v": numbers}), (aliased(numbers), None)):
        mock_registries.reset()
        refused = nvik(gateway, tmp_path, purpose)
        answer = await refused.query(query, variables)
        assert answer.status == 400 and answer.body["data"] is None, answer.body
        assert code_of(answer.body) == "TOO_MANY_SUBJECTS"
        assert served_nothing(mock_registries)
        await assert_one_request_record(gateway, sub_of(refused), "TOO_MANY_SUBJECTS")


# ---- daily quota ---------------------------------------------------------------------------------


async def test_daily_quota_is_exact_per_officer(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    policy = gateway.gateway.policy
    purpose = policy.purposes["STRAFVORDERING"]
    assert purpose.rijbereik is None, "every person must be in scope for exact counting"
    quota, cap = purpose.quota_per_day, purpose.max_subjects
    assert 0 < cap < quota <= 100, "a small quota keeps this test fast"
    who = nvik(gateway, tmp_path, "STRAFVORDERING")

    # Use all but one unit in cap-sized requests.
    used, start = 0, 0
    while used < quota - 1:
        size = min(cap, quota - 1 - used)
        answer = await who.query(LIST_QUERY, {"v": vnummers(mock_registries, size, start)})
        assert answer.status == 200 and persons_in(answer.body) == size, answer.body
        used += size
        start += size

    # Two persons do not fit in the last unit: refused whole, nothing fetched, no unit taken.
    mock_registries.reset()
    answer = await who.query(LIST_QUERY, {"v": vnummers(mock_registries, 2, start)})
    assert answer.status == 429 and answer.body["data"] is None, answer.body
    assert code_of(answer.body) == "QUOTA_EXCEEDED"
    assert served_nothing(mock_registries)

    # The last unit is still there.
    answer = await who.query(ONE_QUERY, {"v": mock_registries.population.vnummer(start)})
    assert answer.status == 200 and answer.body["data"]["vreemdeling"] is not None, answer.body

    # Quota exactly used: the next look-up (even of a person seen before) is 429 + Retry-After.
    mock_registries.reset()
    answer = await who.query(ONE_QUERY, {"v": mock_registries.population.vnummer(0)})
    assert answer.status == 429 and answer.body["data"] is None, answer.body
    assert code_of(answer.body) == "QUOTA_EXCEEDED"
    retry_after = answer.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit(), answer.headers
    assert 1 <= int(retry_after) <= 86_400
    assert answer.body["errors"][0]["extensions"]["retryAfter"] == int(retry_after)
    assert served_nothing(mock_registries)

    # Refusals are on the trail as request-level records.
    records = await trail(gateway, sub_of(who))
    refusals = [r for r in records if r.data_subject_id is None]
    assert [r.reason for r in refusals] == ["QUOTA_EXCEEDED", "QUOTA_EXCEEDED"]
    assert len({r.data_subject_id for r in records if r.data_subject_id}) == quota

    # Another officer, and the same officer for another purpose, are unaffected.
    other = nvik(gateway, tmp_path, "STRAFVORDERING")
    answer = await other.query(ONE_QUERY, {"v": mock_registries.population.vnummer(0)})
    assert answer.status == 200 and answer.body["data"]["vreemdeling"] is not None, answer.body
    same_officer = nvik(gateway, tmp_path, "TOEZICHT_VW", sub=sub_of(who))
    answer = await same_officer.query(ONE_QUERY, {"v": mock_registries.population.vnummer(0)})
    assert answer.status == 200 and answer.body["data"]["vreemdeling"] is not None, answer.body


async def test_quota_store_down_fails_closed_quickly(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    running = await start(quota_store="redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert await running.gateway.quota_store.ready() is False
    who = nvik(running, tmp_path, "TOEZICHT_VW")
    for query, variables in (
        (ONE_QUERY, {"v": mock_registries.population.vnummer(3)}),
        (LIST_QUERY, {"v": vnummers(mock_registries, 3)}),
    ):
        began = time.monotonic()
        answer = await who.query(query, variables)
        elapsed = time.monotonic() - began
        assert elapsed < 3.0, f"took {elapsed:.2f} s"
        assert answer.status == 503, answer.body
        assert answer.body["data"] is None
        assert code_of(answer.body) == "QUOTA_UNAVAILABLE"
        assert "127.0.0.1" not in json.dumps(answer.body), "the store's address must not leak"
    assert served_nothing(mock_registries)
    records = await trail(running, sub_of(who))
    assert [(r.data_subject_id, r.reason) for r in records] == [(None, "QUOTA_UNAVAILABLE")] * 2


async def test_statistics_quota_of_the_analysis_purpose_is_enforced(tmp_path: Path) -> None:
    """ANALYSE has ``quotum_per_medewerker_per_dag: 100  # statistic queries per day``.

    Each statistic query must count one unit: otherwise the policy's quota is a dead letter and
    an analyst can repeat aggregate queries without limit.
    """
    mocks = create_registries(size=300)  # small population: a statistic query costs ~10 ms
    running = await start_gateway(settings_for(tmp_path / "state"), mocks=mocks)
    try:
        quota = running.gateway.policy.purposes["ANALYSE"].quota_per_day
        assert 0 < quota <= 200
        who = nvik(running, tmp_path, "ANALYSE")
        statuses = [
            (await who.query(STATISTICS, {"g": GROUPINGS[i % 4]})).status for i in range(quota)
        ]
        assert statuses == [200] * quota
        answer = await who.query(STATISTICS, {"g": "GEMEENTE"})
        assert answer.status == 429, (
            f"statistic query {quota + 1} of the day was answered {answer.status}: the ANALYSE "
            "quota (statistic queries per day) is not enforced"
        )
        assert code_of(answer.body) == "QUOTA_EXCEEDED" and answer.body["data"] is None
    finally:
        await running.close()


# ---- exact search, no wildcards ------------------------------------------------------------------


def accented(text: str) -> str:
    """The same name with a diacritic on every vowel (NFC)."""
    marks = {
        "a": "á",
        "e": "ë",
        "i": "ï",
        "o": "ö",
        "u": "ü",
        "A": "Á",
        "E": "É",
        "I": "Í",
        "O": "Ó",
        "U": "Ú",
    }
    return "".join(marks.get(c, c) for c in text)


async def test_wildcards_find_nobody_and_exact_name_finds_the_person(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    purpose = gateway.gateway.policy.purposes["TOEZICHT_VW"]
    assert purpose.rijbereik is None, "the person must be in the purpose's row scope"
    record = mock_registries.population.record(42)
    surname, born = record["naam"]["geslachtsnaam"], record["geboorte"]["datum"]
    assert len(surname) >= 4
    expected = mock_registries.population.zoek(surname, born)
    assert 42 in expected and len(expected) <= purpose.max_subjects
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")

    wildcards = [
        "*",
        "%",
        "_",
        "?",
        ".*",
        "%%",
        surname[:3] + "%",
        surname[:3] + "*",
        "%" + surname[2:],
        surname[:-1] + "_",
        surname[:-1] + "?",
        surname[:-1],
        surname + "%",
        f"{surname[:2]}[a-z]*",
    ]
    for pattern in wildcards:
        mock_registries.reset()
        answer = await who.query(SEARCH_QUERY, {"n": pattern, "d": born})
        assert answer.status == 200 and "errors" not in answer.body, (pattern, answer.body)
        assert answer.body["data"]["zoekVreemdelingen"] == [], pattern
        assert all(not call.vnummers for call in mock_registries.bvv.served), pattern
        assert mock_registries.coa.served == [] and mock_registries.ind.served == []

    decomposed = unicodedata.normalize("NFD", accented(surname))
    for variant in (
        surname,
        surname.upper(),
        surname.lower(),
        surname.swapcase(),
        accented(surname),
        decomposed,
        f"  {surname}  ",
    ):
        answer = await who.query(SEARCH_QUERY, {"n": variant, "d": born})
        assert answer.status == 200 and "errors" not in answer.body, (variant, answer.body)
        found = answer.body["data"]["zoekVreemdelingen"]
        assert record["vnummer"] in {p["vnummer"] for p in found}, variant
        assert len(found) == len(expected)
        assert all(
            p["naam"]["geslachtsnaam"] == surname
            for p in found
            if p["vnummer"] == record["vnummer"]
        )

    # The right name with another birth date is nobody (the date is exact too).
    other_day = "1900-01-01" if born != "1900-01-01" else "1900-01-02"
    answer = await who.query(SEARCH_QUERY, {"n": surname, "d": other_day})
    assert answer.body == {"data": {"zoekVreemdelingen": []}}


# ---- query limits and trusted documents ----------------------------------------------------------


async def test_depth_over_the_limit_is_too_complex(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    deep = "query($v: ID!) { vreemdeling(vnummer: $v) { opvang { locatie { code } } } }"
    v = mock_registries.population.vnummer(5)
    running = await start(limits=Limits(max_depth=3))
    answer = await nvik(running, tmp_path, "TOEZICHT_VW").query(deep, {"v": v})
    assert answer.status == 200 and "errors" not in answer.body, "depth 3 is at the limit"

    running = await start(limits=Limits(max_depth=2))
    who = nvik(running, tmp_path, "TOEZICHT_VW")
    answer = await who.query(deep, {"v": v})
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert code_of(answer.body) == "QUERY_TOO_COMPLEX"
    assert served_nothing(mock_registries)
    await assert_one_request_record(running, sub_of(who), "QUERY_TOO_COMPLEX")

    # Fragments do not hide depth.
    mock_registries.reset()
    fragmented = (
        "query($v: ID!) { vreemdeling(vnummer: $v) { ...O } } "
        "fragment O on Vreemdeling { opvang { ...L } } fragment L on Opvang { locatie { code } }"
    )
    answer = await who.query(fragmented, {"v": v})
    assert answer.status == 400 and code_of(answer.body) == "QUERY_TOO_COMPLEX", answer.body
    assert served_nothing(mock_registries)


async def test_too_many_fields_is_too_complex(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    limit = gateway.gateway.limits.max_fields
    v = mock_registries.population.vnummer(6)

    def query(n_fields: int) -> str:  # the root field plus n_fields - 1 selections
        return (
            '{ vreemdeling(vnummer: "'
            + v
            + '") { '
            + " ".join(["vnummer"] * (n_fields - 1))
            + " } }"
        )

    answer = await nvik(gateway, tmp_path, "TOEZICHT_VW").query(query(limit))
    assert answer.status == 200 and answer.body["data"]["vreemdeling"] == {"vnummer": v}, (
        answer.body
    )

    mock_registries.reset()
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")
    answer = await who.query(query(limit + 1))
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert code_of(answer.body) == "QUERY_TOO_COMPLEX"
    assert served_nothing(mock_registries)
    await assert_one_request_record(gateway, sub_of(who), "QUERY_TOO_COMPLEX")


async def test_lookup_of_only_the_vnummer_answers_a_known_person(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Selecting only ``vnummer`` must not answer a known person as unknown (null)."""
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")
    v = mock_registries.population.vnummer(11)
    answer = await who.query("query($v: ID!) { vreemdeling(vnummer: $v) { vnummer } }", {"v": v})
    assert answer.body == {"data": {"vreemdeling": {"vnummer": v}}}
    (call,) = mock_registries.bvv.served
    assert call.vnummers == (v,) and call.fields == set(), "existence only: no field is fetched"
    records = await trail(gateway, sub_of(who))
    assert {r.data_subject_id for r in records} == {gateway.gateway.pseudonym(v)}


async def test_too_many_tokens_is_too_complex(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    limit = gateway.gateway.limits.max_tokens
    v = mock_registries.population.vnummer(7)
    # Few fields, many tokens: unused variable definitions (4 tokens each) pad the document.
    padding = ", ".join(f"$p{i}: Int" for i in range(limit // 4 + 10))
    query = f'query Q({padding}) {{ vreemdeling(vnummer: "{v}") {{ vnummer }} }}'
    who = nvik(gateway, tmp_path, "TOEZICHT_VW")
    answer = await who.query(query)
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert code_of(answer.body) == "QUERY_TOO_COMPLEX", answer.body
    assert served_nothing(mock_registries)
    await assert_one_request_record(gateway, sub_of(who), "QUERY_TOO_COMPLEX")


async def test_trusted_documents_only(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> None:
    documents = tmp_path / "documents"
    (documents / "partner").mkdir(parents=True)
    listed = ONE_QUERY + "\n"
    (documents / "persoon.graphql").write_text(listed, encoding="utf-8")
    (documents / "partner" / "lijst.graphql").write_text(LIST_QUERY + "\n", encoding="utf-8")
    manifest = tmp_path / "trusted.json"
    result = CliRunner().invoke(
        cli_app, ["documents", "build", str(documents), "--output", str(manifest)]
    )
    assert result.exit_code == 0, result.output
    table = json.loads(manifest.read_text(encoding="utf-8"))
    digest = hashlib.sha256(listed.encode()).hexdigest()
    assert len(table) == 2 and table[digest] == listed

    running = await start(trusted_documents=manifest)
    who = nvik(running, tmp_path, "TOEZICHT_VW")
    v = mock_registries.population.vnummer(8)

    by_text = await who.query(listed, {"v": v})
    assert by_text.status == 200 and by_text.body["data"]["vreemdeling"]["vnummer"] == v, (
        by_text.body
    )
    by_hash = await running.gateway.handle(
        who.headers(),
        {
            "variables": {"v": v},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
        },
    )
    assert by_hash.status == 200 and by_hash.body == by_text.body, by_hash.body

    refused_officer = officer("untrusted")
    untrusted = nvik(running, tmp_path, "TOEZICHT_VW", sub=refused_officer)
    for payload in (
        {
            "query": ONE_QUERY.replace("naam { geslachtsnaam }", "geboorte { datum }"),
            "variables": {"v": v},
        },
        {
            "query": listed.strip(),
            "variables": {"v": v},
        },  # any change of the text is another document
        {
            "variables": {"v": v},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}},
        },
    ):
        mock_registries.reset()
        answer = await running.gateway.handle(untrusted.headers(), payload)
        assert answer.status == 400 and answer.body["data"] is None, answer.body
        assert code_of(answer.body) == "PERSISTED_QUERY_NOT_FOUND"
        assert served_nothing(mock_registries)
    records = await trail(running, refused_officer)
    assert [(r.data_subject_id, r.reason) for r in records] == [
        (None, "PERSISTED_QUERY_NOT_FOUND")
    ] * 3


# ---- aggregates (ANALYSE) ------------------------------------------------------------------------


@pytest.fixture(params=[300, 800, 10_000], ids=lambda n: f"population-{n}")
async def analysis_world(
    request: pytest.FixtureRequest, tmp_path: Path, mock_registries: Registries
) -> AsyncIterator[Running]:
    """A gateway over a population of the given size (small ones have small cells)."""
    size = request.param
    mocks = (
        mock_registries if size == mock_registries.population.size else create_registries(size=size)
    )
    mocks.reset()
    running = await start_gateway(settings_for(tmp_path / "state"), mocks=mocks)
    yield running
    await running.close()
    mocks.reset()


def derivable(
    published: dict[str, dict[str, int | None]], parent_of: dict[str, str]
) -> list[tuple[str, str]]:
    """Suppressed cells whose value follows exactly from everything a reader knows.

    The reader knows every published cell of all four tables, that each table sums to the same
    grand total (the number of persons in reception on the date) and which municipality each
    location lies in (so each municipality's locations sum to its GEMEENTE cell). A suppressed
    cell is derivable iff its unit vector lies in the row space of that linear system.
    """
    unknowns: list[tuple[str, str]] = [
        (g, key) for g, cells in published.items() for key, count in cells.items() if count is None
    ]
    totals = {
        sum(c for c in cells.values() if c is not None)
        for g, cells in published.items()
        if all(c is not None for c in cells.values())
    }
    assert len(totals) <= 1, f"fully published tables disagree on the total: {totals}"
    total_known = bool(totals)
    if not total_known:
        unknowns.append(("TOTAAL", ""))
    index = {u: i for i, u in enumerate(unknowns)}
    rows: list[list[Fraction]] = []

    def row(plus: list[tuple[str, str]], minus: list[tuple[str, str]]) -> None:
        coefficients = [Fraction(0)] * len(unknowns)
        for u in plus:
            if u in index:
                coefficients[index[u]] += 1
        for u in minus:
            if u in index:
                coefficients[index[u]] -= 1
        rows.append(coefficients)

    for g, cells in published.items():  # each table sums to the grand total
        row([(g, k) for k in cells], [("TOTAAL", "")])
    for gemeente in published["GEMEENTE"]:  # each municipality's locations sum to its cell
        row(
            [("LOCATIE", k) for k, p in parent_of.items() if p == gemeente],
            [("GEMEENTE", gemeente)],
        )

    base = rational_rank(rows)
    found = []
    for u, i in index.items():
        if u == ("TOTAAL", ""):
            continue
        unit = [Fraction(0)] * len(unknowns)
        unit[i] = Fraction(1)
        if rational_rank([*rows, unit]) == base:
            found.append(u)
    return found


def group_ok(hidden: list[int], threshold: int) -> bool:
    """None suppressed, or at least two summing to >= threshold (and to more than their number)."""
    return not hidden or (
        len(hidden) >= 2 and sum(hidden) >= threshold and sum(hidden) > len(hidden)
    )


async def test_aggregates_suppress_small_cells_and_no_cell_can_be_derived(
    analysis_world: Running, tmp_path: Path
) -> None:
    mocks = analysis_world.mocks
    purpose = analysis_world.gateway.policy.purposes["ANALYSE"]
    threshold = purpose.min_cell
    assert purpose.aggregates_only and threshold == 10
    who = nvik(analysis_world, tmp_path, "ANALYSE")

    published: dict[str, dict[str, int | None]] = {}
    raw: dict[str, dict[str, int]] = {}
    parent_of: dict[str, str] = {}
    for grouping in GROUPINGS:
        answer = await who.query(STATISTICS, {"g": grouping})
        assert answer.status == 200 and "errors" not in answer.body, answer.body
        cells = answer.body["data"]["opvangstatistiek"]
        true = raw_statistics(mocks.population, PEILDATUM, grouping)
        raw[grouping] = {c.sleutel: c.aantal for c in true}
        if grouping == "LOCATIE":
            parent_of = {c.sleutel: str(c.bovenliggend) for c in true}
        assert [c["sleutel"] for c in cells] == sorted(raw[grouping]), "same cells as the registry"
        published[grouping] = {}
        for cell in cells:
            key, count = cell["sleutel"], raw[grouping][cell["sleutel"]]
            assert cell["onderdrukt"] is (cell["aantal"] is None), cell
            if count < threshold:
                assert cell["onderdrukt"], f"{grouping} {key}: {count} persons must be suppressed"
            if not cell["onderdrukt"]:
                assert cell["aantal"] == count, f"{grouping} {key}: published count is wrong"
            published[grouping][key] = cell["aantal"]

    totals = {g: sum(cells.values()) for g, cells in raw.items()}
    assert len(set(totals.values())) == 1, totals
    for grouping in GROUPINGS:
        hidden = [raw[grouping][k] for k, v in published[grouping].items() if v is None]
        assert group_ok(hidden, threshold), f"{grouping}: suppressed counts {sorted(hidden)}"
    gemeente_cells = published["GEMEENTE"]
    for gemeente in sorted(set(parent_of.values())):
        members = [k for k, p in parent_of.items() if p == gemeente]
        hidden = [raw["LOCATIE"][k] for k in members if published["LOCATIE"][k] is None]
        if gemeente_cells[gemeente] is not None:  # the municipality total is public
            assert group_ok(hidden, threshold), (
                f"LOCATIE in {gemeente}: suppressed {sorted(hidden)}"
            )
        else:  # its total is hidden, so all of its locations are too (else total = published sum)
            assert len(hidden) == len(members) or group_ok(hidden, threshold), gemeente

    leaks = derivable(published, parent_of)
    assert leaks == [], (
        f"suppressed cells derivable from the published tables: {leaks}. LOCATIE and GEMEENTE "
        "must come from one joint pattern: suppressed independently, a municipality with a "
        "single location taken as a complement in GEMEENTE is still published (as its location) "
        "in LOCATIE, so the complement protects nothing and the primary cell follows from the "
        "grand total."
    )
    if mocks.population.size <= 800:
        assert any(v is None for cells in published.values() for v in cells.values()), (
            "a small population must exercise suppression"
        )


async def test_no_person_is_reachable_under_analysis(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = nvik(gateway, tmp_path, "ANALYSE")
    v = mock_registries.population.vnummer(9)
    record = mock_registries.population.record(9)
    attempts: list[tuple[str, dict[str, Any] | None]] = [
        (ONE_QUERY, {"v": v}),
        (LIST_QUERY, {"v": [v]}),
        (LIST_QUERY, {"v": []}),  # no subject at all: still no person field
        (SEARCH_QUERY, {"n": record["naam"]["geslachtsnaam"], "d": record["geboorte"]["datum"]}),
        ('{ auditZoeken(vnummer: "' + v + '") { betrokkene medewerker } }', None),
    ]
    for query, variables in attempts:
        answer = await who.query(query, variables)
        assert answer.body["data"] is None or all(
            x in (None, []) for x in answer.body["data"].values()
        ), answer.body
        assert "errors" in answer.body, answer.body
        assert code_of(answer.body) in {"TOO_MANY_SUBJECTS", "FIELD_NOT_PERMITTED"}, answer.body
        assert "vnummer" not in json.dumps(answer.body.get("data")), answer.body
    assert served_nothing(mock_registries)

    # The schema this caller sees has no person in it.
    answer = await who.query(
        '{ __schema { types { name } } v: __type(name: "Vreemdeling") { name } }'
    )
    assert answer.status == 200, answer.body
    names = {t["name"] for t in answer.body["data"]["__schema"]["types"]}
    assert answer.body["data"]["v"] is None
    assert not names & {"Vreemdeling", "Naam", "Geboorte", "Opvang", "AuditRegel"}, names
    assert "StatistiekCel" in names

    # The trail shows the attempts (a refused look-up is recorded against the person sought),
    # and nothing about any person was given.
    records = await trail(gateway, sub_of(who))
    assert records
    assert all(r.decision is Decision.REFUSED for r in records if r.data_subject_id is not None)
    assert not [r for r in records if r.decision is Decision.GIVEN], "nothing was given"


async def test_cap_probing_shows_up_in_audit_anomalies_cli(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Probing the caps is visible to the security team: ``ketenpoort audit anomalies``."""
    prober = nvik(gateway, tmp_path, "TOEZICHT_VW")
    for size in (100, 500, 26):
        answer = await prober.query(LIST_QUERY, {"v": vnummers(mock_registries, size)})
        assert answer.status == 400 and code_of(answer.body) == "TOO_MANY_SUBJECTS"
    colleague = nvik(gateway, tmp_path, "TOEZICHT_VW")
    answer = await colleague.query(ONE_QUERY, {"v": mock_registries.population.vnummer(1)})
    assert answer.status == 200

    state = tmp_path / "state"
    runner = CliRunner()

    def cli(*args: str) -> Any:
        env = {"KETENPOORT_STATE": str(state), "KETENPOORT_AUDIT_STORE": ""}
        return runner.invoke(cli_app, ["audit", *args], env=env)

    # CliRunner runs asyncio.run: keep it off this test's event loop.
    result = await asyncio.to_thread(cli, "anomalies", "--json", "--as", "fg-test")
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)
    assert [(f["kind"], f["officer"], f["value"]) for f in findings] == [
        ("caps", sub_of(prober), 3)
    ]
    assert findings[0]["organisation"] == "NVIK" and "TOO_MANY_SUBJECTS×3" in findings[0]["detail"]

    result = await asyncio.to_thread(cli, "anomalies", "--as", "fg-test")
    assert result.exit_code == 0, result.output
    assert sub_of(prober) in result.stdout and "caps" in result.stdout
    assert sub_of(colleague) not in result.stdout

    result = await asyncio.to_thread(cli, "anomalies", "--since", "2099-01-01", "--as", "fg-test")
    assert result.exit_code == 0 and result.stdout == "No anomalies found.\n", result.output
    result = await asyncio.to_thread(cli, "anomalies", "--since", "gisteren", "--as", "fg-test")
    assert result.exit_code == 2, result.output

    # Each use of the trail is itself on the trail, and the chain still verifies.
    uses = await trail(gateway, "fg-test")
    assert [r.coordinate for r in uses] == ["Audit.anomalies"] * 3
    result = await asyncio.to_thread(cli, "verify")
    assert result.exit_code == 0 and result.stdout.startswith("OK"), result.output
