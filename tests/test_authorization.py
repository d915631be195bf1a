"""Purpose-bound field-level authorization, table-driven over the default policy.

For every (organisation, role, purpose) of ``policy/ketenbeleid.yaml`` that is ``actief`` and
grants a person root field, one query selects EVERY field of ``Vreemdeling`` (nested types fully
expanded, built from the GraphQL schema) for persons inside the purpose's row scope, persons
outside it and an unknown V-nummer. The answer is compared with the synthetic population's
ground truth and the policy's ``explain``; the mock registries' records show what was asked.

The helpers at the top (schema walking, ground truth, registry paths) are reused by
``tests/test_property_authorization.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLSchema

from gateway.assembly.policy_file import load_policy
from gateway.assembly.runtime import Running
from gateway.config import DEFAULT_POLICY
from gateway.domain import REGISTRY_OF_FIELD
from gateway.execution.schema import graphql_schema, schema_coordinates
from gateway.policy.model import Grant, Policy, Purpose, Scope, explain
from mocks import Registries
from mocks.coa import opvangstatistiek
from mocks.data import Population, Record
from tests.support import caller

GRAPHQL: GraphQLSchema = graphql_schema()
COORDINATES: dict[str, str] = schema_coordinates(GRAPHQL)
POLICY: Policy = load_policy(DEFAULT_POLICY, COORDINATES)
PERSON = "Vreemdeling"
PERSON_ROOTS = ("Query.vreemdeling", "Query.vreemdelingen", "Query.zoekVreemdelingen")
#: The path the mock BVV records for a row-scope check (mocks/bvv.py, _SCOPEVELD).
SCOPE_FIELD = {"signaal": "signaleringen.soort", "meldplicht": "meldplicht.actief"}
PEILDATUM = "2024-06-01"


# --- the schema -------------------------------------------------------------------------------


def unwrap(type_: Any) -> tuple[Any, bool]:
    """(named type, whether a list lies on the way)."""
    is_list = False
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        is_list = is_list or isinstance(type_, GraphQLList)
        type_ = type_.of_type
    return type_, is_list


def object_type(name: str) -> GraphQLObjectType:
    type_ = GRAPHQL.type_map[name]
    assert isinstance(type_, GraphQLObjectType)
    return type_


def is_object(type_name: str) -> bool:
    return isinstance(GRAPHQL.type_map.get(type_name), GraphQLObjectType)


def full_selection(type_name: str) -> str:
    """Every field of ``type_name``, object fields expanded all the way down."""
    parts = []
    for name, field in object_type(type_name).fields.items():
        named, _ = unwrap(field.type)
        if is_object(named.name):
            parts.append(f"{name} {{ {full_selection(named.name)} }}")
        else:
            parts.append(name)
    return " ".join(parts)


def reachable(type_name: str) -> set[str]:
    """Every coordinate reachable below ``type_name`` (including its own fields)."""
    found: set[str] = set()
    for name, field in object_type(type_name).fields.items():
        found.add(f"{type_name}.{name}")
        named, _ = unwrap(field.type)
        if is_object(named.name):
            found |= reachable(named.name)
    return found


def coordinates_of_path(dotted: str, root: str = PERSON) -> list[str]:
    """``"opvang.locatie.code"`` → Vreemdeling.opvang, Opvang.locatie, Locatie.code."""
    result: list[str] = []
    type_name = root
    for part in dotted.split("."):
        if part == "__typename":  # an existence check of the object above: no data field
            continue
        coordinate = f"{type_name}.{part}"
        assert coordinate in COORDINATES, f"registry path {dotted!r} is not in the schema"
        result.append(coordinate)
        type_name = COORDINATES[coordinate]
    return result


def expected_fetch(grant: Grant, type_name: str = PERSON) -> dict[str, set[str]]:
    """Per registry, the leaf paths the gateway should ask when every field is selected."""
    fetch: dict[str, set[str]] = {}

    def walk(current: str, prefix: str, registry: str | None) -> None:
        for name, field in object_type(current).fields.items():
            coordinate = f"{current}.{name}"
            if coordinate not in grant.allowed:
                continue
            field_registry = registry
            if current == PERSON:
                if name == "vnummer":
                    continue  # the caller's own key; no registry hands it out
                field_registry = REGISTRY_OF_FIELD[name]
            path = f"{prefix}.{name}" if prefix else name
            named, _ = unwrap(field.type)
            if is_object(named.name):
                walk(named.name, path, field_registry)
            else:
                assert field_registry is not None
                fetch.setdefault(field_registry, set()).add(path)

    walk(type_name, "", None)
    return fetch


# --- the population ---------------------------------------------------------------------------

_RECORDS: dict[int, list[Record]] = {}


def all_records(population: Population) -> list[Record]:
    """Every record of the population (10,000 by default; generated once per population)."""
    key = id(population)
    if key not in _RECORDS:
        _RECORDS[key] = [population.record(i) for i in range(population.size)]
    return _RECORDS[key]


def in_scope(record: Record, scope: Scope | None) -> bool:
    """The row scope as the policy describes it (independent of the gateway's code)."""
    if scope is None:
        return True
    if scope.kind == "signaal":
        return any(s["soort"] == scope.value for s in record["signaleringen"])
    meldplicht = record["meldplicht"]
    return meldplicht is not None and meldplicht["actief"] is True


def unknown_vnummers(population: Population, count: int) -> list[str]:
    """Valid-looking V-nummers that are not in the population."""
    found: list[str] = []
    for n in range(1, 10**6):
        candidate = f"{n * 7919:010d}"
        if population.person(candidate) is None:
            found.append(candidate)
            if len(found) == count:
                return found
    raise AssertionError("no unknown V-nummer found")


def has_data(value: Any) -> bool:
    return value is not None and value != []


def choose_persons(
    population: Population, purpose: Purpose, allowed: frozenset[str], inside: int, outside: int
) -> tuple[list[str], list[str]]:
    """In-scope persons that together have data for every allowed object field of Vreemdeling
    (greedy set cover), and out-of-scope persons rich in special-category data."""
    scope = purpose.rijbereik
    needed = {
        name
        for name, field in object_type(PERSON).fields.items()
        if f"{PERSON}.{name}" in allowed and is_object(unwrap(field.type)[0].name)
    }
    records = all_records(population)
    candidates = [r for r in records if in_scope(r, scope)]
    chosen: list[Record] = []
    covered: set[str] = set()
    while covered != needed and len(chosen) < inside:
        best = max(candidates, key=lambda r: len({f for f in needed - covered if has_data(r[f])}))
        gain = {f for f in needed - covered if has_data(best[f])}
        if not gain:
            break
        chosen.append(best)
        covered |= gain
    assert covered == needed, (
        f"test data: no in-scope persons for {purpose.id} with data for {sorted(needed - covered)}"
    )
    for record in candidates:
        if len(chosen) >= inside:
            break
        if record not in chosen:
            chosen.append(record)
    out: list[Record] = []
    if scope is not None:
        rich = [
            r
            for r in records
            if not in_scope(r, scope) and r["religie"] and r["gezondheid"] and r["opvang"]
        ]
        if scope.kind == "meldplicht":  # a lapsed obligation is outside the scope too
            rich.sort(key=lambda r: r["meldplicht"] is None)
        out = rich[:outside]
        assert len(out) == outside
    return [r["vnummer"] for r in chosen], [r["vnummer"] for r in out]


# --- answers against the ground truth -------------------------------------------------------


def expected_object(
    grant: Grant, type_name: str, truth: Mapping[str, Any], path: tuple[Any, ...]
) -> tuple[dict[str, Any], set[tuple[tuple[Any, ...], str]]]:
    """What an every-field selection of ``truth`` must look like: values of allowed fields,
    None for refused ones, and the (path, coordinate) of every FIELD_NOT_PERMITTED error."""
    data: dict[str, Any] = {}
    errors: set[tuple[tuple[Any, ...], str]] = set()
    for name, field in object_type(type_name).fields.items():
        coordinate = f"{type_name}.{name}"
        here = (*path, name)
        if coordinate not in grant.allowed:
            data[name] = None
            errors.add((here, coordinate))
            continue
        value = truth[name]
        named, _ = unwrap(field.type)
        if not is_object(named.name) or value is None:
            data[name] = value
        elif isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                sub, sub_errors = expected_object(grant, named.name, item, (*here, index))
                items.append(sub)
                errors |= sub_errors
            data[name] = items
        else:
            data[name], sub_errors = expected_object(grant, named.name, value, here)
            errors |= sub_errors
    return data, errors


def observed_coordinates(
    type_name: str, value: Any, path: tuple[Any, ...], error_paths: set[tuple[Any, ...]]
) -> set[str]:
    """Coordinates whose key came back in ``value`` without an error at its path."""
    found: set[str] = set()
    if isinstance(value, list):
        for index, item in enumerate(value):
            found |= observed_coordinates(type_name, item, (*path, index), error_paths)
        return found
    if not isinstance(value, dict):
        return found
    for name, item in value.items():
        here = (*path, name)
        if here in error_paths:
            continue
        coordinate = f"{type_name}.{name}"
        found.add(coordinate)
        child = COORDINATES[coordinate]
        if is_object(child):
            found |= observed_coordinates(child, item, here, error_paths)
    return found


def error_key(error: Mapping[str, Any]) -> tuple[tuple[Any, ...], str, Any, Any]:
    extensions = error.get("extensions") or {}
    return (
        tuple(error.get("path") or ()),
        extensions.get("code"),
        extensions.get("coordinate"),
        extensions.get("doelbinding"),
    )


def served_fields_within(mocks: Registries, grant: Grant, purpose: Purpose) -> list[str]:
    """Problems: any field a registry received that the grant does not allow."""
    problems: list[str] = []
    scope = purpose.rijbereik
    for registry in mocks.all:
        for call in registry.served:
            for path in call.fields:
                if registry.name == "BVV" and scope is not None and path == SCOPE_FIELD[scope.kind]:
                    continue  # the scope check, recorded by the mock; it returns nothing of it
                if registry.name != "BVV" and path == "vnummer":
                    continue  # the entity key the gateway sends as representation
                refused = [c for c in coordinates_of_path(path) if c not in grant.allowed]
                if refused:
                    problems.append(f"{registry.name} received {path} (refused: {refused})")
    return problems


def all_served(mocks: Registries) -> list[Any]:
    return [call for registry in mocks.all for call in registry.served]


# --- the table --------------------------------------------------------------------------------


def person_combos(policy: Policy) -> list[tuple[str, str, str]]:
    combos: dict[tuple[str, str, str], None] = {}
    for rule in policy.rules:
        if rule.effect != "toestaan":
            continue
        purpose = policy.purposes[rule.purpose]
        if not purpose.active:
            continue
        for role in rule.roles:
            grant = policy.grant(rule.organisation, [role], rule.purpose)
            if grant.allowed & set(PERSON_ROOTS):
                combos[(rule.organisation, role, rule.purpose)] = None
    return list(combos)


COMBOS = person_combos(POLICY)


def test_table_covers_the_person_purposes_of_the_default_policy() -> None:
    """Guard against an empty or shrunken table (the policy file is the source of the list)."""
    purposes = {purpose for _, _, purpose in COMBOS}
    assert {"TOEZICHT_VW", "OVERLAST", "MELDPLICHT", "TERUGKEER", "GRENSTOEZICHT"} <= purposes
    assert "MENSENHANDEL" not in purposes and "BEZETTING" not in purposes
    assert "ANALYSE" not in purposes
    assert len(COMBOS) >= 10


def person_query(
    allowed: frozenset[str], vnummers: Sequence[str], selection: str
) -> tuple[str, list[tuple[Any, ...]]]:
    """A query for ``vnummers`` (``vreemdelingen`` if allowed, else aliased ``vreemdeling``
    roots) and the response path of each person's entry."""
    if "Query.vreemdelingen" in allowed:
        query = f"{{ vreemdelingen(vnummers: {json.dumps(list(vnummers))}) {{ {selection} }} }}"
        return query, [("vreemdelingen", i) for i in range(len(vnummers))]
    roots = " ".join(
        f'p{i}: vreemdeling(vnummer: "{v}") {{ {selection} }}' for i, v in enumerate(vnummers)
    )
    return f"{{ {roots} }}", [(f"p{i}",) for i in range(len(vnummers))]


def entry_at(data: Mapping[str, Any], path: tuple[Any, ...]) -> Any:
    value: Any = data
    for step in path:
        value = value[step]
    return value


@pytest.mark.parametrize(("org", "role", "purpose_id"), COMBOS, ids=["-".join(c) for c in COMBOS])
async def test_every_field_selected_gives_exactly_the_allowed_set(
    start: Any, mock_registries: Registries, tmp_path: Path, org: str, role: str, purpose_id: str
) -> None:
    running: Running = await start()
    policy = running.gateway.policy
    purpose = policy.purposes[purpose_id]
    grant = policy.grant(org, [role], purpose_id)
    allowed = frozenset(c for c, given, _ in explain(policy, org, [role], purpose_id) if given)
    assert allowed == grant.allowed

    population = mock_registries.population
    inside, outside = choose_persons(population, purpose, allowed, inside=4, outside=2)
    (unknown,) = unknown_vnummers(population, 1)
    persons = [*inside, *outside, unknown]
    assert len(persons) <= purpose.max_subjects

    query, entry_paths = person_query(allowed, persons, full_selection(PERSON))
    root = "Query.vreemdelingen" if "Query.vreemdelingen" in allowed else "Query.vreemdeling"
    selected = {root} | reachable(PERSON)
    who = caller(running, tmp_path / "state", org=org, roles=[role], purpose=purpose_id)
    answer = await who.query(query)
    assert answer.status == 200, answer.body
    data = answer.body["data"]
    errors = answer.body.get("errors", [])

    # Every error is expected: FIELD_NOT_PERMITTED at each refused path of each in-scope person
    # (with coordinate and doelbinding), SUBJECT_OUT_OF_SCOPE at each out-of-scope entry.
    expected_errors: set[tuple[tuple[Any, ...], str, Any, Any]] = set()
    for vnummer, path in zip(persons, entry_paths, strict=True):
        entry = entry_at(data, path)
        truth = population.person(vnummer)
        if vnummer == unknown:
            assert entry is None, f"unknown person {vnummer} must be null, got {entry}"
        elif vnummer in outside:
            assert entry is None, f"out-of-scope person {vnummer} leaked: {entry}"
            expected_errors.add((path, "SUBJECT_OUT_OF_SCOPE", None, purpose_id))
        else:
            assert truth is not None
            want, refused = expected_object(grant, PERSON, truth, path)
            assert entry == want, f"{vnummer}: answer differs from the allowed ground truth"
            expected_errors |= {(p, "FIELD_NOT_PERMITTED", c, purpose_id) for p, c in refused}
    got_errors = {error_key(e) for e in errors}
    assert got_errors == expected_errors, {
        "unexpected": sorted(map(str, got_errors - expected_errors))[:10],
        "missing": sorted(map(str, expected_errors - got_errors))[:10],
    }
    assert len(errors) == len(got_errors), "one error per refused path, no duplicates"

    # The coordinates that came back (without error) are exactly explain's allowed set
    # restricted to what was selected.
    error_paths = {tuple(e["path"]) for e in errors}
    observed: set[str] = set()
    for vnummer, path in zip(persons, entry_paths, strict=True):
        if vnummer in inside:
            if path not in error_paths:
                observed.add(root)
            observed |= observed_coordinates(PERSON, entry_at(data, path), path, error_paths)
    assert observed == allowed & selected, {
        "given but not allowed": sorted(observed - allowed),
        "allowed but not given": sorted((allowed & selected) - observed),
    }

    # The registries received exactly the allowed fields (BVV: plus its scope check).
    fetch = expected_fetch(grant)
    assert served_fields_within(mock_registries, grant, purpose) == []
    scope_extra = {SCOPE_FIELD[purpose.rijbereik.kind]} if purpose.rijbereik else set()
    (bvv_call,) = mock_registries.bvv.served
    assert bvv_call.fields == frozenset(fetch.get("BVV", set()) | scope_extra)
    assert set(bvv_call.vnummers) == set(persons)
    asked_of_subgraphs = set(inside) | (set() if purpose.rijbereik else {unknown})
    for registry in (mock_registries.coa, mock_registries.ind):
        if registry.name in fetch:
            (call,) = registry.served
            assert call.fields == frozenset(fetch[registry.name] | {"vnummer"})
            assert set(call.vnummers) == asked_of_subgraphs, registry.name
        else:
            assert registry.served == [], f"{registry.name} asked although nothing of it is allowed"
        for call in registry.served:
            leaked = set(call.vnummers) & set(outside)
            assert not leaked, f"{registry.name} was asked about out-of-scope persons {leaked}"


@pytest.mark.parametrize(("org", "role", "purpose_id"), COMBOS, ids=["-".join(c) for c in COMBOS])
async def test_subject_cap_is_enforced_before_any_fetch(
    start: Any, mock_registries: Registries, tmp_path: Path, org: str, role: str, purpose_id: str
) -> None:
    running: Running = await start()
    policy = running.gateway.policy
    purpose = policy.purposes[purpose_id]
    grant = policy.grant(org, [role], purpose_id)
    who = caller(running, tmp_path / "state", org=org, roles=[role], purpose=purpose_id)
    population = mock_registries.population
    cap = purpose.max_subjects
    selection = "vnummer naam { geslachtsnaam }"

    persons = [population.vnummer(i) for i in range(cap + 1)]
    over, _ = person_query(grant.allowed, persons, selection)
    answer = await who.query(over)
    assert answer.status == 400, answer.body
    assert answer.body["data"] is None
    assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["TOO_MANY_SUBJECTS"]
    assert answer.body["errors"][0]["extensions"]["maximum"] == cap
    assert all_served(mock_registries) == []

    at_cap, paths = person_query(grant.allowed, persons[:cap], selection)
    answer = await who.query(at_cap)
    assert answer.status == 200, answer.body
    codes = {e["extensions"]["code"] for e in answer.body.get("errors", [])}
    assert codes <= {"SUBJECT_OUT_OF_SCOPE"}, codes
    assert len(paths) == cap
    assert served_fields_within(mock_registries, grant, purpose) == []


async def test_grensbewaker_gets_no_list_lookup(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """KMAR's GRENSTOEZICHT allows Query.vreemdeling but not Query.vreemdelingen."""
    who = caller(
        gateway, tmp_path / "state", org="KMAR", roles=["grensbewaker"], purpose="GRENSTOEZICHT"
    )
    persons = [mock_registries.population.vnummer(i) for i in range(3)]
    answer = await who.query(
        "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer naam { geslachtsnaam } } }",
        {"v": persons},
    )
    assert answer.body["data"] is None  # [Vreemdeling]! is non-null: the refusal nulls the root
    (error,) = answer.body["errors"]
    assert error["path"] == ["vreemdelingen"]
    assert error["extensions"] == {
        "code": "FIELD_NOT_PERMITTED",
        "coordinate": "Query.vreemdelingen",
        "doelbinding": "GRENSTOEZICHT",
    }
    assert all_served(mock_registries) == []


@pytest.mark.parametrize("vnummer_index", [0, 1])
async def test_only_refused_or_key_fields_still_answer_for_a_known_person(
    gateway: Running, mock_registries: Registries, tmp_path: Path, vnummer_index: int
) -> None:
    """Selecting nothing the registries must project (only the key, ``__typename`` or refused
    fields) must neither claim the person does not exist nor hide the refusal."""
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
    vnummer = mock_registries.population.vnummer(vnummer_index)
    answer = await who.query(
        "query($v: ID!) { vreemdeling(vnummer: $v) { __typename vnummer religie } }", {"v": vnummer}
    )
    assert answer.status == 200
    assert answer.body["data"] == {
        "vreemdeling": {"__typename": "Vreemdeling", "vnummer": vnummer, "religie": None}
    }, "a known person selected by key and a refused field came back as unknown (null)"
    assert [error_key(e) for e in answer.body["errors"]] == [
        (("vreemdeling", "religie"), "FIELD_NOT_PERMITTED", "Vreemdeling.religie", "TOEZICHT_VW")
    ]
    for call in mock_registries.bvv.served:
        assert not call.fields & {"religie"}
    assert mock_registries.coa.served == [] and mock_registries.ind.served == []


async def test_list_literal_with_variables_is_evaluated_per_request(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """``vreemdelingen(vnummers: [$a, $b])``: the plan is shared by requests with other values,
    so the persons (and the cap) must come from each request's own variables."""
    who = caller(
        gateway, tmp_path / "state", org="DTV", roles=["regievoerder"], purpose="TERUGKEER"
    )
    query = "query($a: ID!, $b: ID!) { vreemdelingen(vnummers: [$a, $b]) { vnummer } }"
    population = mock_registries.population
    for first, second in ((0, 1), (2, 3)):
        a, b = population.vnummer(first), population.vnummer(second)
        answer = await who.query(query, {"a": a, "b": b})
        assert answer.status == 200 and "errors" not in answer.body, answer.body
        assert answer.body["data"] == {"vreemdelingen": [{"vnummer": a}, {"vnummer": b}]}

    cap = gateway.gateway.policy.purposes["STRAFVORDERING"].max_subjects
    names = [f"v{i}" for i in range(cap + 1)]
    over = (
        f"query({', '.join(f'${n}: ID!' for n in names)}) "
        f"{{ vreemdelingen(vnummers: [{', '.join(f'${n}' for n in names)}]) {{ vnummer }} }}"
    )
    strafvordering = caller(
        gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="STRAFVORDERING"
    )
    mock_registries.reset()
    variables = {n: population.vnummer(i) for i, n in enumerate(names)}
    answer = await strafvordering.query(over, variables)
    assert answer.status == 400, answer.body
    assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["TOO_MANY_SUBJECTS"]
    assert all_served(mock_registries) == []


@pytest.mark.parametrize("purpose_id", ["OVERLAST", "MELDPLICHT", "TOEZICHT_VW"])
async def test_search_gives_only_in_scope_persons_and_allowed_fields(
    gateway: Running, mock_registries: Registries, tmp_path: Path, purpose_id: str
) -> None:
    """``zoekVreemdelingen``: out-of-scope matches are left out of the list, the subgraphs are
    never asked about them, and refused fields are null with FIELD_NOT_PERMITTED."""
    policy = gateway.gateway.policy
    purpose = policy.purposes[purpose_id]
    grant = policy.grant("NVIK", ["analist"], purpose_id)
    population = mock_registries.population
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose=purpose_id)
    records = all_records(population)
    inside = next(r for r in records if in_scope(r, purpose.rijbereik) and r["opvang"])
    outside = next(
        (r for r in records if not in_scope(r, purpose.rijbereik) and r["religie"]), None
    )
    query = (
        "query($n: String!, $d: Date!) { zoekVreemdelingen(geslachtsnaam: $n, geboortedatum: $d)"
        " { vnummer naam { geslachtsnaam } religie opvang { modaliteit } } }"
    )
    for person in (inside, outside):
        if person is None:  # TOEZICHT_VW has no row scope: nobody is outside it
            assert purpose.rijbereik is None
            continue
        mock_registries.reset()
        name, birth = person["naam"]["geslachtsnaam"], person["geboorte"]["datum"]
        answer = await who.query(query, {"n": name, "d": birth})
        assert answer.status == 200, answer.body
        matches = [population.record(i) for i in population.zoek(name, birth)]
        expected = [r for r in matches if in_scope(r, purpose.rijbereik)]
        found = answer.body["data"]["zoekVreemdelingen"]
        assert [p["vnummer"] for p in found] == [r["vnummer"] for r in expected]
        for entry, truth in zip(found, expected, strict=True):
            assert entry["naam"] == {"geslachtsnaam": truth["naam"]["geslachtsnaam"]}
            assert entry["religie"] is None
            want_opvang = truth["opvang"] and {"modaliteit": truth["opvang"]["modaliteit"]}
            given_opvang = "Vreemdeling.opvang" in grant.allowed
            assert entry["opvang"] == (want_opvang if given_opvang else None)
        codes = {(e["extensions"]["code"], e["path"][-1]) for e in answer.body.get("errors", [])}
        assert ("FIELD_NOT_PERMITTED", "religie") in codes or not found
        assert all(code == "FIELD_NOT_PERMITTED" for code, _ in codes)
        assert served_fields_within(mock_registries, grant, purpose) == []
        excluded = {r["vnummer"] for r in matches} - {r["vnummer"] for r in expected}
        for registry in (mock_registries.coa, mock_registries.ind):
            for call in registry.served:
                assert not set(call.vnummers) & excluded, f"{registry.name} asked about {excluded}"


def _first(population: Population, predicate: Any) -> Record:
    return next(r for r in all_records(population) if predicate(r))


NOTHING_TO_FETCH = {
    # (org, role, purpose, selection, person predicate, expected Vreemdeling data from truth)
    "typename-only": (
        "NVIK",
        "analist",
        "TOEZICHT_VW",
        "naam { __typename }",
        lambda r: True,
        lambda r: {"naam": {"__typename": "Naam"}},
    ),
    "every-subfield-skipped": (
        "NVIK",
        "analist",
        "TOEZICHT_VW",
        "naam { voornamen @skip(if: true) }",
        lambda r: True,
        lambda r: {"naam": {}},
    ),
    "subgraph-typename-only": (
        "NVIK",
        "analist",
        "TOEZICHT_VW",
        "opvang { __typename }",
        lambda r: bool(r["opvang"]),
        lambda r: {"opvang": {"__typename": "Opvang"}},
    ),
    "only-refused-subfields": (
        "DTV",
        "regievoerder",
        "TERUGKEER",
        "procedures { fase }",
        lambda r: bool(r["procedures"]),
        lambda r: {"procedures": [{"fase": None} for _ in r["procedures"]]},
    ),
}


@pytest.mark.parametrize("case", list(NOTHING_TO_FETCH))
async def test_object_field_with_nothing_to_fetch_answers(
    gateway: Running, mock_registries: Registries, tmp_path: Path, case: str
) -> None:
    """An allowed object selected without any allowed leaf (only __typename, skipped or refused
    sub-fields) is answered as the registry has it: the gateway asks only whether it is there
    (``<object>.__typename``), never a value, and refused sub-fields keep their errors."""
    org, role, purpose, selection, predicate, expected = NOTHING_TO_FETCH[case]
    person = _first(mock_registries.population, predicate)
    who = caller(gateway, tmp_path / "state", org=org, roles=[role], purpose=purpose)
    answer = await who.query(
        f"query($v: ID!) {{ vreemdeling(vnummer: $v) {{ {selection} }} }}", {"v": person["vnummer"]}
    )
    codes = [e["extensions"]["code"] for e in answer.body.get("errors", [])]
    assert "INTERNAL_ERROR" not in codes, f"masked internal error for a valid query: {answer.body}"
    assert answer.body["data"] == {"vreemdeling": expected(person)}, answer.body
    assert set(codes) <= {"FIELD_NOT_PERMITTED"}
    policy = gateway.gateway.policy
    grant = policy.grant(org, [role], purpose)
    assert served_fields_within(mock_registries, grant, policy.purposes[purpose]) == []


# --- ANALYSE: aggregates only -----------------------------------------------------------------


def raw_counts(population: Population, peildatum: str, groepering: str) -> dict[str, int]:
    """The COA's raw, unsuppressed counts (the mock's own function, not through the gateway)."""
    return {c.sleutel: c.aantal for c in opvangstatistiek(population, peildatum, groepering)}


@pytest.mark.parametrize("groepering", ["LOCATIE", "GEMEENTE", "NATIONALITEIT", "VERBLIJFSSTATUS"])
async def test_analyse_gets_suppressed_statistics(
    gateway: Running, mock_registries: Registries, tmp_path: Path, groepering: str
) -> None:
    purpose = gateway.gateway.policy.purposes["ANALYSE"]
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="ANALYSE")
    answer = await who.query(
        "query($p: Date!, $g: StatistiekGroepering!) {"
        " opvangstatistiek(peildatum: $p, groepering: $g) { sleutel aantal onderdrukt } }",
        {"p": PEILDATUM, "g": groepering},
    )
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    cells = answer.body["data"]["opvangstatistiek"]
    raw = raw_counts(mock_registries.population, PEILDATUM, groepering)
    assert {c["sleutel"] for c in cells} == set(raw) and len(cells) == len(raw)
    for cell in cells:
        assert isinstance(cell["onderdrukt"], bool)
        if cell["onderdrukt"]:
            assert cell["aantal"] is None, cell
        else:
            assert cell["aantal"] == raw[cell["sleutel"]], cell
            assert cell["aantal"] >= purpose.min_cell, f"small cell published: {cell}"
    small = {k for k, n in raw.items() if n < purpose.min_cell}
    suppressed = {c["sleutel"] for c in cells if c["onderdrukt"]}
    assert small <= suppressed
    assert mock_registries.bvv.served == [] and mock_registries.ind.served == []
    (call,) = mock_registries.coa.served
    assert call.vnummers == () and call.fields == frozenset({"opvangstatistiek"})


async def test_analyse_suppresses_small_location_cells(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """A date early in the synthetic world has small reception counts: some cells must go."""
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="ANALYSE")
    peildatum = "2019-03-01"
    raw = raw_counts(mock_registries.population, peildatum, "LOCATIE")
    assert any(n < 10 for n in raw.values()), "test data: expected small cells on this date"
    answer = await who.query(
        f'{{ opvangstatistiek(peildatum: "{peildatum}", groepering: LOCATIE)'
        " { sleutel aantal onderdrukt } }"
    )
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    cells = answer.body["data"]["opvangstatistiek"]
    suppressed = [c for c in cells if c["onderdrukt"]]
    assert suppressed and all(c["aantal"] is None for c in suppressed)
    assert {k for k, n in raw.items() if n < 10} <= {c["sleutel"] for c in suppressed}
    published = [c for c in cells if not c["onderdrukt"]]
    assert all(c["aantal"] == raw[c["sleutel"]] and c["aantal"] >= 10 for c in published)


def _analyse_person_queries(population: Population) -> list[tuple[str, str]]:
    record = population.record(7)
    name, birth = record["naam"]["geslachtsnaam"], record["geboorte"]["datum"]
    v = record["vnummer"]
    return [
        ("vreemdeling", f'{{ vreemdeling(vnummer: "{v}") {{ vnummer naam {{ voornamen }} }} }}'),
        ("vreemdelingen", f'{{ vreemdelingen(vnummers: ["{v}"]) {{ opvang {{ modaliteit }} }} }}'),
        (
            "zoekVreemdelingen",
            f'{{ zoekVreemdelingen(geslachtsnaam: "{name}", geboortedatum: "{birth}")'
            " { vnummer } }",
        ),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["one", "many", "search"])
async def test_analyse_person_roots_are_refused_and_fetch_nothing(
    gateway: Running, mock_registries: Registries, tmp_path: Path, which: int
) -> None:
    """A refused root passes the same cap as an allowed one: ANALYSE may name nobody (cap 0),
    so a person root is refused with the request, before anything is fetched."""
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="ANALYSE")
    _, query = _analyse_person_queries(mock_registries.population)[which]
    answer = await who.query(query)
    codes = [e["extensions"]["code"] for e in answer.body.get("errors", [])]
    assert codes == ["TOO_MANY_SUBJECTS"], answer.body
    assert answer.status == 400 and answer.body["data"] is None
    assert all_served(mock_registries) == []


async def test_analyse_statistics_and_person_in_one_query(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="ANALYSE")
    vnummer = mock_registries.population.vnummer(3)
    statistic = (
        f'opvangstatistiek(peildatum: "{PEILDATUM}", groepering: GEMEENTE)'
        " { sleutel aantal onderdrukt }"
    )
    # Naming a person is over ANALYSE's cap of 0, refused root or not: the request is refused.
    answer = await who.query(
        f'{{ {statistic} vreemdeling(vnummer: "{vnummer}") {{ naam {{ geslachtsnaam }} }} }}'
    )
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["TOO_MANY_SUBJECTS"]
    assert all_served(mock_registries) == []
    # Alone, the statistic comes; only the COA is asked, for the statistic.
    answer = await who.query(f"{{ {statistic} __typename }}")
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert answer.body["data"]["opvangstatistiek"], "the aggregate comes"
    assert mock_registries.bvv.served == [] and mock_registries.ind.served == []
    assert [c.fields for c in mock_registries.coa.served] == [frozenset({"opvangstatistiek"})]
