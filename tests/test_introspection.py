"""Introspection shows each caller only what its purpose allows; no trick reveals a refused field.

As NVIK analist for TOEZICHT_VW, neither ``__schema`` nor ``__type`` reveals ``religie``,
``gezondheid``, ``procedures`` (or their types); ``__typename``, fragments and aliases never
return a refused value; introspection cannot be mixed with data; ``ketenpoort schema`` prints the
same filtered SDL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from graphql import build_client_schema, build_schema, get_introspection_query
from typer.testing import CliRunner

from gateway.assembly.runtime import Running
from gateway.cli.main import app as cli_app
from gateway.config import DEFAULT_POLICY
from gateway.execution.schema import schema_coordinates
from mocks import Registries
from mocks.data import Record
from tests.support import Caller, caller
from tests.test_authorization import COORDINATES, POLICY, all_records

HIDDEN_WORDS = ("religie", "gezondheid", "Gezondheid", "procedures", "Procedure")
REFUSED_TYPES = (
    "Gezondheid", "Procedure", "Biometrie", "StrafrechtelijkGegeven", "Overlastmelding",
    "Signalering", "AuditRegel", "StatistiekCel", "StatistiekGroepering",
)  # fmt: skip


def toezicht(running: Running, tmp_path: Path) -> Caller:
    return caller(running, tmp_path / "state", org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")


def allowed_for(org: str, roles: list[str], purpose: str) -> frozenset[str]:
    return POLICY.grant(org, roles, purpose).allowed


def visible(allowed: frozenset[str]) -> set[str]:
    """Allowed coordinates reachable from Query through allowed coordinates."""
    seen: set[str] = set()
    types, todo = {"Query"}, ["Query"]
    while todo:
        current = todo.pop()
        for coordinate, named in COORDINATES.items():
            if coordinate.startswith(f"{current}.") and coordinate in allowed:
                seen.add(coordinate)
                if named not in types and any(c.startswith(f"{named}.") for c in COORDINATES):
                    types.add(named)
                    todo.append(named)
    return seen


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]+", text))


def assert_nothing_fetched(mocks: Registries) -> None:
    assert all(registry.served == [] for registry in mocks.all)


def rich_person(mocks: Registries) -> Record:
    """A person with a religion, health data and procedures: values that must never show."""
    return next(
        r
        for r in all_records(mocks.population)
        if r["religie"] and r["gezondheid"] and r["procedures"] and r["etniciteit"]
    )


# --- __schema and __type -----------------------------------------------------------------------


async def test_schema_types_and_fields_show_only_the_grant(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = toezicht(gateway, tmp_path)
    answer = await who.query("{ __schema { types { name fields { name } } } }")
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    types = answer.body["data"]["__schema"]["types"]
    names = {t["name"] for t in types}
    assert not names & set(REFUSED_TYPES), names & set(REFUSED_TYPES)
    shown = {
        f"{t['name']}.{f['name']}"
        for t in types
        if not t["name"].startswith("__")
        for f in t["fields"] or ()
    }
    allowed = allowed_for("NVIK", ["analist"], "TOEZICHT_VW")
    assert shown == visible(allowed), {
        "revealed but refused": sorted(shown - allowed),
        "allowed but hidden": sorted(visible(allowed) - shown),
    }
    assert {"Vreemdeling.naam", "Vreemdeling.meldplicht", "Opvang.locatie"} <= shown
    assert not words(json.dumps(answer.body)) & set(HIDDEN_WORDS)
    assert_nothing_fetched(mock_registries)


async def test_full_introspection_query_reveals_nothing_refused(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """What a client generator runs: descriptions, args, enums, directives included."""
    answer = await toezicht(gateway, tmp_path).query(get_introspection_query(descriptions=True))
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    text = json.dumps(answer.body)
    assert not words(text) & set(HIDDEN_WORDS), words(text) & set(HIDDEN_WORDS)
    for refused in (
        "etniciteit",
        "seksueleGerichtheid",
        "biometrie",
        "signaleringen",
        "strafrechtelijkeGegevens",
        "overlastmeldingen",
        "auditZoeken",
        "opvangstatistiek",
    ):
        assert refused not in words(text), refused
    client_schema = build_client_schema(answer.body["data"])
    allowed = allowed_for("NVIK", ["analist"], "TOEZICHT_VW")
    assert set(schema_coordinates(client_schema)) == visible(allowed)
    assert_nothing_fetched(mock_registries)


async def test_type_vreemdeling_lists_only_allowed_fields(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    answer = await toezicht(gateway, tmp_path).query(
        '{ __type(name: "Vreemdeling") { name fields(includeDeprecated: true) { name } } }'
    )
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    fields = {f["name"] for f in answer.body["data"]["__type"]["fields"]}
    allowed = allowed_for("NVIK", ["analist"], "TOEZICHT_VW")
    assert fields == {c.split(".", 1)[1] for c in allowed if c.startswith("Vreemdeling.")}
    assert {"vnummer", "naam", "geboorte", "verblijfsstatus", "opvang", "meldplicht"} <= fields
    assert not fields & {"religie", "gezondheid", "procedures", "etniciteit", "biometrie"}
    assert_nothing_fetched(mock_registries)


@pytest.mark.parametrize("type_name", ["Gezondheid", "Procedure", "Biometrie", "AuditRegel"])
async def test_type_of_a_refused_type_is_null(
    gateway: Running, mock_registries: Registries, tmp_path: Path, type_name: str
) -> None:
    answer = await toezicht(gateway, tmp_path).query(
        f'{{ __type(name: "{type_name}") {{ name fields {{ name }} }} }}'
    )
    assert answer.status == 200, answer.body
    assert answer.body["data"] == {"__type": None}
    assert_nothing_fetched(mock_registries)


def _active_combos() -> list[tuple[str, str, str]]:
    combos: dict[tuple[str, str, str], None] = {}
    for rule in POLICY.rules:
        if rule.effect == "toestaan" and POLICY.purposes[rule.purpose].active:
            for role in rule.roles:
                if POLICY.grant(rule.organisation, [role], rule.purpose).allowed:
                    combos[(rule.organisation, role, rule.purpose)] = None
    return list(combos)


ACTIVE = _active_combos()


@pytest.mark.parametrize(("org", "role", "purpose"), ACTIVE, ids=["-".join(c) for c in ACTIVE])
async def test_every_caller_sees_exactly_its_grant(
    gateway: Running, mock_registries: Registries, tmp_path: Path, org: str, role: str, purpose: str
) -> None:
    who = caller(gateway, tmp_path / "state", org=org, roles=[role], purpose=purpose)
    answer = await who.query(get_introspection_query(descriptions=False))
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    shown = set(schema_coordinates(build_client_schema(answer.body["data"])))
    assert shown == visible(allowed_for(org, [role], purpose))
    assert_nothing_fetched(mock_registries)


async def test_unauthenticated_introspection_is_refused(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = toezicht(gateway, tmp_path)
    for headers in ({}, {"authorization": "Bearer nope"}):
        request = {k: v for k, v in who.headers().items() if k != "authorization"} | headers
        answer = await gateway.gateway.handle(request, {"query": "{ __schema { types { name } } }"})
        assert answer.status == 401
        assert answer.body["data"] is None
        assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["UNAUTHENTICATED"]
        assert "types" not in json.dumps(answer.body)
    assert_nothing_fetched(mock_registries)


# --- tricks that must never return a refused value --------------------------------------------

TRICKS: dict[str, tuple[str, dict[str, Any]]] = {
    "typename-beside-refused": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { __typename religie } }",
        {"vreemdeling": {"__typename": "Vreemdeling", "religie": None}},
    ),
    "named-fragment": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { ...F } }"
        " fragment F on Vreemdeling { __typename religie gezondheid { toelichting }"
        " procedures { zaaknummer } }",
        {
            "vreemdeling": {
                "__typename": "Vreemdeling",
                "religie": None,
                "gezondheid": None,
                "procedures": None,
            }
        },
    ),
    "inline-fragment": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { ... on Vreemdeling { religie etniciteit } } }",
        {"vreemdeling": {"religie": None, "etniciteit": None}},
    ),
    "aliases-with-allowed-names": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { geslacht: religie"
        " naam: gezondheid { zorgbehoefte } vnr: procedures { zaaknummer } } }",
        {"vreemdeling": {"geslacht": None, "naam": None, "vnr": None}},
    ),
    "aliased-roots": (
        "query($v: ID!) { a: vreemdeling(vnummer: $v) { __typename r: religie }"
        " b: vreemdelingen(vnummers: [$v]) { religie } }",
        {"a": {"__typename": "Vreemdeling", "r": None}, "b": [{"religie": None}]},
    ),
    "typename-inside-refused-object": (
        "query($v: ID!) { vreemdeling(vnummer: $v) {"
        " gezondheid { __typename } procedures { __typename } } }",
        {"vreemdeling": {"gezondheid": None, "procedures": None}},
    ),
    "fragment-on-refused-type": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { gezondheid { ...G } } }"
        " fragment G on Gezondheid { zorgbehoefte toelichting }",
        {"vreemdeling": {"gezondheid": None}},
    ),
    "same-field-twice-and-nested-fragments": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { religie ...A } }"
        " fragment A on Vreemdeling { religie ... on Vreemdeling { ...B } }"
        " fragment B on Vreemdeling { religie naam { geslachtsnaam } }",
        {"vreemdeling": {"religie": None, "naam": "<truth>"}},
    ),
    "include-directive": (
        "query($v: ID!) { vreemdeling(vnummer: $v) { religie @include(if: true)"
        " gezondheid @skip(if: false) { toelichting } } }",
        {"vreemdeling": {"religie": None, "gezondheid": None}},
    ),
}


def fill_truth(expected: Any, truth: Record) -> Any:
    if isinstance(expected, dict):
        return {
            k: {"geslachtsnaam": truth["naam"]["geslachtsnaam"]}
            if v == "<truth>"
            else fill_truth(v, truth)
            for k, v in expected.items()
        }
    if isinstance(expected, list):
        return [fill_truth(v, truth) for v in expected]
    return expected


def secrets_of(person: Record) -> list[str]:
    """Ground-truth values of refused fields that must never appear in any answer."""
    values = [person["religie"], person["etniciteit"], person["gezondheid"]["toelichting"]]
    values += [p["zaaknummer"] for p in person["procedures"]]
    return [v for v in values if v]


@pytest.mark.parametrize("trick", list(TRICKS))
async def test_tricks_never_return_a_refused_value(
    gateway: Running, mock_registries: Registries, tmp_path: Path, trick: str
) -> None:
    person = rich_person(mock_registries)
    query, expected = TRICKS[trick]
    answer = await toezicht(gateway, tmp_path).query(query, {"v": person["vnummer"]})
    assert answer.status == 200, answer.body
    assert answer.body["data"] == fill_truth(expected, person)
    text = json.dumps(answer.body, ensure_ascii=False)
    for secret in secrets_of(person):
        assert secret not in text, f"refused value {secret!r} leaked"
    errors = answer.body["errors"]
    assert errors and all(e["extensions"]["code"] == "FIELD_NOT_PERMITTED" for e in errors)
    allowed = allowed_for("NVIK", ["analist"], "TOEZICHT_VW")
    assert all(e["extensions"]["coordinate"] not in allowed for e in errors)
    for call in mock_registries.bvv.served:
        assert not {p.split(".")[0] for p in call.fields} & {"religie", "gezondheid", "etniciteit"}
    assert mock_registries.ind.served == [], "IND asked although procedures are refused"


async def test_include_with_a_variable_cannot_reuse_a_cached_plan(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """The same document with @include(if: $x) first false, then true: still refused."""
    person = rich_person(mock_registries)
    who = toezicht(gateway, tmp_path)
    query = (
        "query($v: ID!, $x: Boolean!) { vreemdeling(vnummer: $v) {"
        " naam { geslachtsnaam } religie @include(if: $x)"
        " gezondheid @include(if: $x) { toelichting } } }"
    )
    first = await who.query(query, {"v": person["vnummer"], "x": False})
    surname = person["naam"]["geslachtsnaam"]
    assert first.body == {"data": {"vreemdeling": {"naam": {"geslachtsnaam": surname}}}}
    second = await who.query(query, {"v": person["vnummer"], "x": True})
    assert second.body["data"]["vreemdeling"]["religie"] is None
    assert second.body["data"]["vreemdeling"]["gezondheid"] is None
    assert {e["extensions"]["coordinate"] for e in second.body["errors"]} == {
        "Vreemdeling.religie",
        "Vreemdeling.gezondheid",
    }
    for secret in secrets_of(person):
        assert secret not in json.dumps(second.body, ensure_ascii=False)


MIXED = {
    "schema-and-person": (
        "query($v: ID!) { __schema { types { name } }"
        " vreemdeling(vnummer: $v) { naam { geslachtsnaam } } }"
    ),
    "type-and-list": (
        'query($v: ID!) { __type(name: "Vreemdeling") { name }'
        " vreemdelingen(vnummers: [$v]) { vnummer } }"
    ),
    "aliased-introspection": (
        "query($v: ID!) { s: __schema { queryType { name } }"
        " p: vreemdeling(vnummer: $v) { religie } }"
    ),
    "introspection-in-fragment": (
        "query($v: ID!) { ...Q vreemdeling(vnummer: $v) { naam { voornamen } } }"
        " fragment Q on Query { __schema { types { name fields { name } } } }"
    ),
}


@pytest.mark.parametrize("case", list(MIXED))
async def test_introspection_mixed_with_data_is_refused(
    gateway: Running, mock_registries: Registries, tmp_path: Path, case: str
) -> None:
    person = rich_person(mock_registries)
    answer = await toezicht(gateway, tmp_path).query(MIXED[case], {"v": person["vnummer"]})
    assert answer.status == 400, answer.body
    assert answer.body["data"] is None
    assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["BAD_USER_INPUT"]
    assert_nothing_fetched(mock_registries)


# --- the CLI -------------------------------------------------------------------------------------


def test_schema_cli_prints_the_filtered_sdl() -> None:
    result = CliRunner().invoke(
        cli_app,
        ["schema", "--org", "NVIK", "--role", "analist", "--doelbinding", "TOEZICHT_VW"],
        env={"KETENPOORT_POLICY": str(DEFAULT_POLICY)},
    )
    assert result.exit_code == 0, result.output
    sdl = result.stdout
    assert "type Vreemdeling" in sdl and "geslacht" in sdl
    assert not words(sdl) & {"religie", "gezondheid", "Gezondheid", "procedures", "Procedure"}
    printed = set(schema_coordinates(build_schema(sdl)))
    assert printed == visible(allowed_for("NVIK", ["analist"], "TOEZICHT_VW"))
