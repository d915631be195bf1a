"""The accountability trail, end to end: what a response released is exactly what the store holds.

Every test runs against both audit stores: the embedded SQLite file (default, in the test's state
directory) and PostgreSQL (a fresh database per test, dropped at teardown). Each request carries
its own ``traceparent``, so its records are found by trace id and compared, value by value, with
the response: every non-null value has a ``given`` record for its data subject (by pseudonym) and
schema coordinate; every refusal, scope refusal and registry failure has its record; nothing else
is recorded as given. The raw V-nummer never reaches the store.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)
from typer.testing import CliRunner

from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.cli.main import app as cli_app
from gateway.pipeline.answer import Answer
from mocks import Faults, Registries
from tests.conftest import StartGateway
from tests.support import caller, drop_database, fresh_database

# ---- stores -------------------------------------------------------------------------------


@dataclass
class Store:
    """The audit store of one test: its URL and how to reach it behind the gateway's back."""

    kind: str  # "sqlite" | "postgres"
    url: str
    state: Path
    db_file: Path | None = None  # SQLite
    db_name: str | None = None  # PostgreSQL

    def files(self) -> list[Path]:
        assert self.db_file is not None
        return [p for p in (self.db_file, *_sidecars(self.db_file)) if p.exists()]

    async def execute(self, sql: str) -> None:
        """Run one statement directly on the database (tampering, breaking, restoring)."""
        if self.kind == "sqlite":
            assert self.db_file is not None
            await asyncio.to_thread(_sqlite_execute, self.db_file, sql)
            return
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def all_text(self) -> str:
        """Every byte/row the store holds, as text (for the raw V-nummer check)."""
        if self.kind == "sqlite":
            return b"".join(p.read_bytes() for p in self.files()).decode("latin-1")
        connection = await asyncpg.connect(self.url)
        try:
            tables = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            rows: list[str] = []
            for table in tables:
                name = table["table_name"]
                rows += [
                    r[0]
                    for r in await connection.fetch(
                        f'SELECT row_to_json(t)::text FROM "{name}" t'  # noqa: S608 (catalog names)
                    )
                ]
            assert any('"seq"' in r for r in rows), "no records read from PostgreSQL"
            return "\n".join(rows)
        finally:
            await connection.close()


def _sidecars(db: Path) -> list[Path]:
    return [db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def _sqlite_execute(db: Path, sql: str) -> None:
    connection = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        connection.execute(sql)
    finally:
        connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Requested before ``start``: the gateway closes before the database is dropped."""
    state = tmp_path / "state"
    if request.param == "sqlite":
        db = state / "audit.db"
        yield Store("sqlite", f"sqlite:///{db}", state, db_file=db)
        return
    url, name = await fresh_database()
    try:
        yield Store("postgres", url, state, db_name=name)
    finally:
        await drop_database(name)


async def start_on(store: Store, start: StartGateway, **overrides: Any) -> Running:
    if store.kind == "sqlite":
        running = await start(**overrides)  # the default: <state>/audit.db
        assert running.gateway.audit_store.__class__.__name__ == "SQLiteAuditStore"
        return running
    return await start(audit_store=store.url, **overrides)


# ---- requests with known trace ids ----------------------------------------------------------


def new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


async def records_of(running: Running, trace_id: str) -> list[AuditRecord]:
    return await running.gateway.audit_store.search(AuditQuery(trace_id=trace_id, limit=100_000))


# ---- the document and response walker -------------------------------------------------------


def _included(node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
    for directive in node.directives or ():
        if directive.name.value not in ("skip", "include"):
            continue
        (argument,) = directive.arguments
        assert isinstance(argument.value, BooleanValueNode), "tests use literal @skip/@include"
        if (directive.name.value == "skip") == argument.value.value:
            return False
    return True


class Shape:
    """One operation's selections, typed by the gateway's schema coordinates.

    Record paths are as the trail writes them: the root's response key, then field names
    (list indices left out). Response paths use the response keys (aliases).
    """

    def __init__(self, query: str, coordinates: Mapping[str, str]) -> None:
        document: DocumentNode = parse(query)
        self.coordinates = coordinates
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        (operation,) = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        self.roots: dict[str, list[FieldNode]] = {}
        for node in self.fields(operation.selection_set):
            self.roots.setdefault(self.key(node), []).append(node)

    @staticmethod
    def key(node: FieldNode) -> str:
        return node.alias.value if node.alias else node.name.value

    def fields(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if not _included(selection):  # type: ignore[arg-type]
                continue
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found += self.fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                found += self.fields(self.fragments[selection.name.value].selection_set)
        return found

    def root_field(self, key: str) -> str:
        return self.roots[key][0].name.value

    def selected(self, key: str) -> set[tuple[str, str]]:
        """(coordinate, record path) of every field selected under root ``key``."""
        root = self.root_field(key)
        out = {(f"Query.{root}", key)}

        def walk(nodes: list[FieldNode], type_name: str, path: str) -> None:
            for node in nodes:
                name = node.name.value
                if name == "__typename":
                    continue
                coordinate = f"{type_name}.{name}"
                out.add((coordinate, f"{path}.{name}"))
                if node.selection_set is not None:
                    child_type = self.coordinates[coordinate]
                    walk(self.fields(node.selection_set), child_type, f"{path}.{name}")

        for node in self.roots[key]:
            walk(self.fields(node.selection_set), self.coordinates[f"Query.{root}"], key)
        return out

    def values(self, key: str, person: Mapping[str, Any]) -> set[tuple[str, str]]:
        """(coordinate, record path) of every non-null value in one returned person."""
        out: set[tuple[str, str]] = set()

        def walk(
            value: Mapping[str, Any], nodes: list[FieldNode], type_name: str, path: str
        ) -> None:
            for node in nodes:
                name = node.name.value
                if name == "__typename":
                    continue
                child = value[self.key(node)]
                if child is None:
                    continue
                coordinate = f"{type_name}.{name}"
                out.add((coordinate, f"{path}.{name}"))
                if node.selection_set is None:
                    continue
                sub = self.fields(node.selection_set)
                for item in child if isinstance(child, list) else [child]:
                    if item is not None:
                        walk(item, sub, self.coordinates[coordinate], f"{path}.{name}")

        root = self.root_field(key)
        for node in self.roots[key]:
            walk(person, self.fields(node.selection_set), self.coordinates[f"Query.{root}"], key)
        return out

    def locate(self, response_path: Sequence[str | int]) -> tuple[str, str]:
        """(coordinate, record path) of an error's response path."""
        key, *rest = response_path
        assert isinstance(key, str)
        root = self.root_field(key)
        coordinate, path = f"Query.{root}", key
        nodes = self.roots[key]
        type_name = self.coordinates[coordinate]
        for part in rest:
            if isinstance(part, int):
                continue
            matching = [
                n for node in nodes for n in self.fields(node.selection_set) if self.key(n) == part
            ]
            assert matching, f"{part!r} of {response_path} is not in the document"
            name = matching[0].name.value
            coordinate = f"{type_name}.{name}"
            path = f"{path}.{name}"
            type_name = self.coordinates[coordinate]
            nodes = matching
        return coordinate, path


# ---- scenarios ----------------------------------------------------------------------------


@dataclass
class Scenario:
    """One request: who asks, what, about whom; optionally with a registry failing."""

    name: str
    org: str
    roles: list[str]
    purpose: str
    query: str
    #: Root response key → the V-nummer (``vreemdeling``) or V-nummers (``vreemdelingen``);
    #: absent for searches (their persons are read from the response's ``vnummer``).
    subjects: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Faults] = field(default_factory=dict)
    #: Codes this scenario must produce (so each scenario surely exercises what it is for).
    expect_codes: set[str] = field(default_factory=set)
    sub: str = "medewerker-001"


@dataclass
class Outcome:
    scenario: Scenario
    answer: Answer
    trace_id: str
    span_id: str
    records: list[AuditRecord]


PERSON_FIELDS = """
fragment Persoon on Vreemdeling {
  vnummer
  naam { voornamen voorvoegsel geslachtsnaam }
  ... on Vreemdeling { geboorte { datum land } }
}
"""


def population_sets(mocks: Registries) -> dict[str, list[str]]:
    """V-nummers by trait, from the synthetic population (deterministic)."""
    population = mocks.population
    overlast: list[str] = []
    plain: list[str] = []
    for i in range(1000, 3000):
        record = population.record(i)
        if any(s["soort"] == "OVERLAST" for s in record["signaleringen"]):
            overlast.append(record["vnummer"])
        elif record["opvang"] is not None and record["procedures"]:
            plain.append(record["vnummer"])
    # Distinctive numbers (no runs of zeros an OIN could contain) that nobody in it has.
    candidates = (str(n) for n in range(7_314_159_265, 7_314_159_365))
    unknown = [v for v in candidates if population.person(v) is None][:3]
    assert len(overlast) >= 4 and len(plain) >= 40 and len(unknown) == 3
    return {"overlast": overlast, "plain": plain, "unknown": unknown}


def scenarios(mocks: Registries) -> list[Scenario]:
    sets = population_sets(mocks)
    plain, overlast, unknown = sets["plain"], sets["overlast"], sets["unknown"]
    searched = mocks.population.person(plain[20])
    assert searched is not None
    return [
        Scenario(
            "toezicht-aliases-refused-unknown",
            "NVIK",
            ["analist"],
            "TOEZICHT_VW",
            PERSON_FIELDS
            + """
            query Toezicht($a: ID!, $b: ID!) {
              eerste: vreemdeling(vnummer: $a) {
                ...Persoon
                religie
                gezondheid { zorgbehoefte }
                procedures { zaaknummer }
                opvang { locatie { code naam } modaliteit }
                verblijfsstatus { soort einddatum }
                meldplicht { actief }
                nationaliteiten { code }
                n: naam { vn: voornamen }
              }
              tweede: vreemdeling(vnummer: $b) { vnummer religie naam { geslachtsnaam } }
              onbekend: vreemdeling(vnummer: "UNKNOWN") { vnummer naam { geslachtsnaam } }
            }
            """.replace("UNKNOWN", unknown[0]),
            {"eerste": plain[0], "tweede": plain[1], "onbekend": unknown[0]},
            {"a": plain[0], "b": plain[1]},
            expect_codes={"FIELD_NOT_PERMITTED"},
        ),
        Scenario(
            "toezicht-search",
            "NVIK",
            ["analist"],
            "TOEZICHT_VW",
            """
            query($g: String!, $d: Date!) {
              zoekVreemdelingen(geslachtsnaam: $g, geboortedatum: $d) {
                vnummer naam { geslachtsnaam } opvang { locatie { gemeente } } etniciteit
              }
            }
            """,
            {},
            {"g": searched["naam"]["geslachtsnaam"], "d": searched["geboorte"]["datum"]},
            expect_codes={"FIELD_NOT_PERMITTED"},
        ),
        Scenario(
            "overlast-row-scope",
            "NVIK",
            ["analist"],
            "OVERLAST",
            """
            query($v: [ID!]!) {
              vreemdelingen(vnummers: $v) {
                vnummer naam { geslachtsnaam }
                signaleringen { soort datum bron }
                overlastmeldingen { datum soort }
                opvang { locatie { code } }
                verblijfsstatus { soort }
              }
            }
            """,
            {"vreemdelingen": [overlast[0], plain[2], overlast[1], unknown[1], plain[3]]},
            {"v": [overlast[0], plain[2], overlast[1], unknown[1], plain[3]]},
            expect_codes={"SUBJECT_OUT_OF_SCOPE", "FIELD_NOT_PERMITTED"},
        ),
        Scenario(
            "terugkeer-coa-failing",
            "DTV",
            ["regievoerder"],
            "TERUGKEER",
            """
            query($v: [ID!]!) {
              vreemdelingen(vnummers: $v) {
                vnummer naam { geslachtsnaam }
                opvang { locatie { code } modaliteit }
                procedures { zaaknummer fase beslissing }
                meldplicht { actief frequentie }
              }
            }
            """,
            {"vreemdelingen": [plain[4], plain[5], plain[6]]},
            {"v": [plain[4], plain[5], plain[6]]},
            faults={"coa": Faults(status=500)},
            expect_codes={"REGISTRY_UNAVAILABLE", "FIELD_NOT_PERMITTED"},
            sub="regievoerder-007",
        ),
        Scenario(
            "asiel-ind",
            "IND",
            ["beslismedewerker"],
            "ASIEL_BEHANDELING",
            """
            query($v: ID!) {
              persoon: vreemdeling(vnummer: $v) {
                vnummer
                procedures { zaaknummer soort fase beslissing beslisdatum }
                biometrie { vingerafdrukkenOpgenomen opnamedatum }
                gezondheid { zorgbehoefte }
                strafrechtelijkeGegevens { feit }
                religie
                meldplicht { actief }
              }
            }
            """,
            {"persoon": plain[7]},
            {"v": plain[7]},
            expect_codes={"FIELD_NOT_PERMITTED"},
            sub="ind-042",
        ),
        Scenario(
            "toezicht-bvv-failing",
            "NVIK",
            ["analist"],
            "TOEZICHT_VW",
            """
            query($v: [ID!]!) {
              vreemdelingen(vnummers: $v) { vnummer naam { geslachtsnaam } opvang { modaliteit } }
            }
            """,
            {"vreemdelingen": [plain[9], plain[10]]},
            {"v": [plain[9], plain[10]]},
            faults={"bvv": Faults(status=500)},
            expect_codes={"REGISTRY_UNAVAILABLE"},
        ),
        Scenario(
            "overlast-bvv-failing",
            "NVIK",
            ["analist"],
            "OVERLAST",
            """
            query($v: [ID!]!) {
              vreemdelingen(vnummers: $v) {
                vnummer naam { geslachtsnaam } opvang { locatie { code } }
              }
            }
            """,
            {"vreemdelingen": [overlast[2], plain[8]]},
            {"v": [overlast[2], plain[8]]},
            faults={"bvv": Faults(status=500)},
            expect_codes={"REGISTRY_UNAVAILABLE"},
        ),
    ]


async def run(running: Running, state: Path, mocks: Registries, scenario: Scenario) -> Outcome:
    who = caller(
        running,
        state,
        org=scenario.org,
        roles=scenario.roles,
        purpose=scenario.purpose,
        sub=scenario.sub,
    )
    for registry, faults in scenario.faults.items():
        getattr(mocks, registry).faults = replace(faults)  # a fresh instance: reset() clears
    trace_id, span_id, traceparent = new_traceparent()
    try:
        answer = await who.query(scenario.query, scenario.variables, traceparent=traceparent)
    finally:
        for registry in scenario.faults:
            getattr(mocks, registry).faults = Faults()
    return Outcome(scenario, answer, trace_id, span_id, await records_of(running, trace_id))


VNUMMER_TEXT = re.compile(r"(?<![0-9])[0-9]{10}(?![0-9])")


def all_vnummers(scenario: Scenario, answer: Answer) -> set[str]:
    """Every V-nummer a request named or its answer carried."""
    text = scenario.query + json.dumps(scenario.variables) + json.dumps(answer.body)
    return set(VNUMMER_TEXT.findall(text))


def check_outcome(outcome: Outcome, running: Running) -> None:
    """The comparison of one response with its records (see the module docstring)."""
    scenario, body = outcome.scenario, outcome.answer.body
    name = scenario.name
    assert outcome.answer.status == 200, (name, body)
    codes = {e["extensions"]["code"] for e in body.get("errors", ())}
    assert scenario.expect_codes <= codes, (name, codes, body.get("errors"))
    assert codes <= {"FIELD_NOT_PERMITTED", "SUBJECT_OUT_OF_SCOPE", "REGISTRY_UNAVAILABLE"}, (
        name,
        body.get("errors"),
    )
    pseudonym = running.gateway.pseudonym
    shape = Shape(scenario.query, running.gateway.coordinates)
    data = body["data"]
    assert data is not None, (name, body)
    policy = running.gateway.policy

    records = outcome.records
    assert records, f"{name}: nothing recorded for trace {outcome.trace_id}"
    for r in records:  # the request's context on every record
        assert r.trace_id == outcome.trace_id
        assert r.parent_span_id == outcome.span_id, "the incoming span is the request's parent"
        assert r.organisation == scenario.org
        assert r.organisation_oin == policy.organisations[scenario.org].oin
        assert r.officer == scenario.sub
        assert r.roles == tuple(scenario.roles)
        assert r.purpose == scenario.purpose
        assert r.legal_basis == policy.purposes[scenario.purpose].grondslag
        assert r.processing_activity_id and r.processing_activity_id.startswith("https://")
        assert r.policy_version == policy.version
        assert r.data_subject_id is not None, f"{name}: a person query's record without subject"
        assert r.data_subject_id_type == "vnummer"
        assert r.status == ("OK" if r.decision is Decision.GIVEN else "ERROR")

    # A V-nummer no registry knows is recorded at its root field with reason NOT_FOUND: the
    # answer disclosed its absence. Such a subject must be null in the answer and carry
    # nothing else given.
    not_found = {(r.data_subject_id, r.path) for r in records if r.reason == "NOT_FOUND"}
    for subject, path in not_found:
        key = path.split(".", 1)[0]
        assert path == key, (name, path)
        assert all(
            r.data_subject_id != subject or r.reason == "NOT_FOUND"
            for r in records
            if r.path.split(".", 1)[0] == key
        ), (name, subject)
    given = {
        (r.data_subject_id, r.coordinate, r.path)
        for r in records
        if r.decision is Decision.GIVEN and r.reason != "NOT_FOUND"
    }
    not_given = {
        (r.data_subject_id, r.coordinate, r.path): r
        for r in records
        if r.decision is not Decision.GIVEN
    }

    def subject_at(key: str, index: int | None) -> str:
        named = scenario.subjects.get(key)
        if isinstance(named, str):
            return named
        assert index is not None
        if isinstance(named, list):
            return str(named[index])
        return str(data[key][index]["vnummer"])  # a search: the person carries its number

    # 1. every non-null value has its given record; collect the returned subjects per root
    returned: dict[str, set[str]] = {}
    for key, value in data.items():
        persons = value if isinstance(value, list) else [value]
        returned[key] = set()
        for index, person in enumerate(persons):
            if person is None:
                continue
            vnummer = subject_at(key, index if isinstance(value, list) else None)
            assert person["vnummer"] == vnummer, (name, key, index)
            returned[key].add(pseudonym(vnummer))
            root_decision = (f"Query.{shape.root_field(key)}", key)
            for coordinate, path in shape.values(key, person) | {root_decision}:
                assert (pseudonym(vnummer), coordinate, path) in given, (
                    f"{name}: {path} ({coordinate}) of a returned person has no given record"
                )

    # 2. every refusal and failure has its record; nothing at or below it is recorded as given
    failed: list[tuple[str, str]] = []
    for error in body.get("errors", ()):
        code, path = error["extensions"]["code"], error["path"]
        key = path[0]
        index = path[1] if len(path) > 1 and isinstance(path[1], int) else None
        subject = pseudonym(subject_at(key, index))
        coordinate, record_path = shape.locate(path)
        record = not_given.get((subject, coordinate, record_path))
        assert record is not None, f"{name}: no record of {code} at {path} ({coordinate})"
        if code == "FIELD_NOT_PERMITTED":
            assert record.decision is Decision.REFUSED and record.reason.startswith(code), record
        elif code == "SUBJECT_OUT_OF_SCOPE":
            assert coordinate.startswith("Query.") and record.decision is Decision.REFUSED
            assert record.reason.startswith(code), record
        else:
            assert record.decision is Decision.ERROR and record.reason == code, record
        failed.append((subject, record_path))
    for subject, failed_path in failed:
        below = [g for g in given if g[0] == subject and (g[2] + ".").startswith(failed_path + ".")]
        assert not below, f"{name}: given records at or below the failed {failed_path}: {below}"

    # 3. nothing else is given: selected, for a subject this root returned
    for subject, coordinate, path in given:
        key = path.split(".", 1)[0]
        assert key in shape.roots, (name, path)
        assert subject in returned.get(key, set()), (
            f"{name}: {coordinate} recorded as given for a subject {key} did not return"
        )
        assert (coordinate, path) in shape.selected(key), (name, coordinate, path)

    # 3b. every unknown V-nummer asked has its NOT_FOUND record, and only those do
    unknown_asked = {
        (pseudonym(v), key)
        for key, named in scenario.subjects.items()
        for v in ([named] if isinstance(named, str) else named if isinstance(named, list) else [])
        if running.mocks.population.person(v) is None
    }
    assert {(s, p.split(".", 1)[0]) for s, p in not_found} == unknown_asked, name

    # 4. records name only the subjects of this request
    asked = {pseudonym(v) for v in all_vnummers(scenario, outcome.answer)}
    assert {r.data_subject_id for r in records} <= asked, name


# ---- 1. the comparison ----------------------------------------------------------------------


@dataclass
class Refusal:
    """A request refused before execution: one record, no data subject."""

    name: str
    purpose: str
    query: str
    variables: dict[str, Any]
    code: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def refusals(mocks: Registries) -> list[Refusal]:
    many = [mocks.population.vnummer(i) for i in range(3000, 3026)]  # 26 > 25 for TOEZICHT_VW
    one = {"v": mocks.population.vnummer(3100)}
    lookup = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
    return [
        Refusal("forbidden", "BEZETTING", lookup, one, "PURPOSE_FORBIDDEN", 403),
        Refusal("suspended", "MENSENHANDEL", lookup, one, "PURPOSE_SUSPENDED", 403),
        Refusal("not-granted", "ASIEL_BEHANDELING", lookup, one, "PURPOSE_NOT_GRANTED", 403),
        Refusal(
            "no-purpose",
            "TOEZICHT_VW",
            lookup,
            one,
            "PURPOSE_REQUIRED",
            400,
            {"x-doelbinding": ""},
        ),
        Refusal(
            "too-many",
            "TOEZICHT_VW",
            "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer naam { geslachtsnaam } } }",
            {"v": many},
            "TOO_MANY_SUBJECTS",
            400,
        ),
    ]


async def test_every_released_value_is_recorded_and_nothing_else(
    store: Store, start: StartGateway, mock_registries: Registries
) -> None:
    running = await start_on(store, start, registry_timeout=0.5)
    outcomes = [
        await run(running, store.state, mock_registries, s) for s in scenarios(mock_registries)
    ]
    for outcome in outcomes:
        check_outcome(outcome, running)
    # The failing registry really failed and the others still served the same request.
    terugkeer = next(o for o in outcomes if o.scenario.name == "terugkeer-coa-failing")
    assert all(p["procedures"] for p in terugkeer.answer.body["data"]["vreemdelingen"])
    search = next(o for o in outcomes if o.scenario.name == "toezicht-search")
    assert search.answer.body["data"]["zoekVreemdelingen"], "the search found the person"
    scoped = next(o for o in outcomes if o.scenario.name == "overlast-row-scope")
    assert sum(p is not None for p in scoped.answer.body["data"]["vreemdelingen"]) == 2

    used: set[str] = set()
    for outcome in outcomes:
        used |= all_vnummers(outcome.scenario, outcome.answer)
    for refusal in refusals(mock_registries):
        who = caller(running, store.state, org="NVIK", roles=["analist"], purpose=refusal.purpose)
        trace_id, span_id, traceparent = new_traceparent()
        answer = await who.query(
            refusal.query, refusal.variables, traceparent=traceparent, **refusal.headers
        )
        assert answer.status == refusal.status, (refusal.name, answer.body)
        assert answer.body["data"] is None
        assert answer.body["errors"][0]["extensions"]["code"] == refusal.code, refusal.name
        (record,) = await records_of(running, trace_id)  # exactly one
        assert record.data_subject_id is None and record.data_subject_id_type is None, refusal.name
        # The request-level record counts the identifiers a refused request named.
        named = len(refusal.variables["v"]) if refusal.name == "too-many" else 0
        path = f"identifiers:{named}" if named else ""
        assert (record.coordinate, record.path) == ("Query", path), refusal.name
        assert record.decision is Decision.REFUSED and record.reason == refusal.code, refusal.name
        assert record.parent_span_id == span_id and record.officer == "medewerker-001"
        assert record.purpose == (refusal.purpose if refusal.name != "no-purpose" else None)
        used |= set(VNUMMER_TEXT.findall(json.dumps(refusal.variables)))

    assert (await running.gateway.audit_store.verify()).ok
    assert len(used) > 40, "the V-nummers of the run"
    if store.kind == "sqlite":  # the gateway is still open: recent commits live in the WAL
        assert any(p.name.endswith("-wal") and p.stat().st_size for p in store.files())
    everything = await store.all_text()
    assert len(everything) > 10_000, "the store's contents were read"
    pseudonyms = {running.gateway.pseudonym(v) for v in used}
    assert any(p in everything for p in pseudonyms), "subjects are stored, by pseudonym"
    leaked = sorted(v for v in used if v in everything)
    assert not leaked, f"raw V-nummers in the {store.kind} store: {leaked[:5]}"


# ---- 2. fail closed -------------------------------------------------------------------------


DTV_QUERY = """
query($v: [ID!]!) {
  vreemdelingen(vnummers: $v) { vnummer naam { voornamen geslachtsnaam } procedures { zaaknummer } }
}
"""


def person_values(mocks: Registries, vnummers: list[str]) -> list[str]:
    values: list[str] = []
    for v in vnummers:
        record = mocks.population.person(v)
        assert record is not None
        values += [record["naam"]["voornamen"], record["naam"]["geslachtsnaam"]]
        values += [p["zaaknummer"] for p in record["procedures"]]
    return values


async def test_broken_store_fails_closed_and_recovers_without_restart(
    store: Store, start: StartGateway, mock_registries: Registries
) -> None:
    running = await start_on(store, start)
    dtv = caller(running, store.state, org="DTV", roles=["regievoerder"], purpose="TERUGKEER")
    beveiliging = caller(
        running,
        store.state,
        org="NVIK",
        roles=["beveiliging"],
        purpose="VERANTWOORDING",
    )
    forbidden = caller(running, store.state, org="NVIK", roles=["analist"], purpose="BEZETTING")
    persons = [mock_registries.population.vnummer(i) for i in range(4000, 4003)]
    secrets_of_persons = person_values(mock_registries, persons)

    before = await dtv.query(DTV_QUERY, {"v": persons[:1]})
    assert before.status == 200 and before.body["data"]["vreemdelingen"][0] is not None

    await store.execute("ALTER TABLE audit_entry RENAME TO audit_entry_weg")
    broken_traces: list[str] = []
    attempts = [
        (dtv, DTV_QUERY, {"v": persons}),  # data fetched, not released
        (dtv, DTV_QUERY, {"v": persons[1:]}),  # again: no lucky second try
        (beveiliging, '{ auditZoeken(medewerker: "medewerker-001") { volgnummer } }', None),
        (forbidden, DTV_QUERY, {"v": persons[:1]}),  # refused before execution: also recorded
    ]
    for who, query, variables in attempts:
        trace_id, _, traceparent = new_traceparent()
        broken_traces.append(trace_id)
        answer = await who.query(query, variables, traceparent=traceparent)
        assert answer.status == 503, answer.body
        assert answer.body["data"] is None
        assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["AUDIT_UNAVAILABLE"]
        text = answer.encode().decode()
        assert not [s for s in secrets_of_persons if s in text], "a person's data left unrecorded"
        assert not any(v in text for v in persons)
    assert mock_registries.bvv.served, "the registries were asked: only the release was stopped"

    await store.execute("ALTER TABLE audit_entry_weg RENAME TO audit_entry")
    after = await dtv.query(DTV_QUERY, {"v": persons})
    assert after.status == 200, after.body
    people = after.body["data"]["vreemdelingen"]
    assert [p["vnummer"] for p in people] == persons
    assert all(p["naam"]["geslachtsnaam"] for p in people)
    for trace_id in broken_traces:  # nothing of a refused batch was committed
        assert await records_of(running, trace_id) == []
    assert (await running.gateway.audit_store.verify()).ok


# ---- 3. `ketenpoort audit verify` -----------------------------------------------------------


def cli(store: Store, *args: str) -> Any:
    env = {"KETENPOORT_STATE": str(store.state), "KETENPOORT_AUDIT_STORE": store.url}
    return CliRunner().invoke(cli_app, list(args), env=env)


async def test_audit_verify_passes_untouched_and_names_the_altered_record(
    store: Store, start: StartGateway, mock_registries: Registries
) -> None:
    running = await start_on(store, start)
    dtv = caller(running, store.state, org="DTV", roles=["regievoerder"], purpose="TERUGKEER")
    for n in range(3):
        persons = [mock_registries.population.vnummer(i) for i in range(5000 + 3 * n, 5003 + 3 * n)]
        answer = await dtv.query(DTV_QUERY, {"v": persons})
        assert answer.status == 200, answer.body
    records = await running.gateway.audit_store.search(AuditQuery(limit=100_000))
    assert len(records) >= 3 * 3 * 5

    ok = await asyncio.to_thread(cli, store, "audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("OK")

    victim = records[len(records) // 2]
    await store.execute(
        f"UPDATE audit_entry SET officer = 'iemand-anders' WHERE seq = {victim.seq}"  # noqa: S608
    )
    broken = await asyncio.to_thread(cli, store, "audit", "verify")
    assert broken.exit_code != 0, broken.output
    assert f"seq {victim.seq}" in broken.output, broken.output
