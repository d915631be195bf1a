"""The federated core: one call per registry, projection, cache, partial data on faults."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.assembly.runtime import Running
from mocks import Faults, Registries
from tests.support import Caller, caller

ALL_REGISTRIES = """
query($v: [ID!]!) { vreemdelingen(vnummers: $v) {
  vnummer naam { voornamen geslachtsnaam } verblijfsstatus { soort }
  opvang { locatie { code } modaliteit } procedures { zaaknummer beslissing } } }
"""
BVV_ONLY = """
query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } geboorte { datum } } }
"""


def ind_caller(running: Running, tmp_path: Path) -> Caller:
    """DT&V's regievoerder sees BVV, COA and IND fields, up to 50 persons per request."""
    return caller(
        running, tmp_path / "state", org="DTV", roles=["regievoerder"], purpose="TERUGKEER"
    )


def vnummers(mocks: Registries, n: int, start: int = 0) -> list[str]:
    return [mocks.population.vnummer(i) for i in range(start, start + n)]


async def test_fifty_persons_one_call_per_registry_then_cache(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = ind_caller(gateway, tmp_path)
    persons = vnummers(mock_registries, 50)
    answer = await who.query(ALL_REGISTRIES, {"v": persons})
    assert answer.status == 200, answer.body
    assert "errors" not in answer.body, answer.body["errors"][:3]
    assert len(answer.body["data"]["vreemdelingen"]) == 50
    assert [len(m.served) for m in mock_registries.all] == [1, 1, 1]
    assert set(mock_registries.bvv.served[0].vnummers) == set(persons)

    again = await who.query(ALL_REGISTRIES, {"v": persons})
    assert again.body == answer.body
    assert [len(m.served) for m in mock_registries.all] == [1, 1, 1], (
        "repeat must come from the cache"
    )


async def test_bvv_only_query_calls_only_bvv_with_selected_fields(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = ind_caller(gateway, tmp_path)
    answer = await who.query(BVV_ONLY, {"v": vnummers(mock_registries, 1)[0]})
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert mock_registries.coa.served == [] and mock_registries.ind.served == []
    (call,) = mock_registries.bvv.served
    assert call.fields == {"naam.geslachtsnaam", "geboorte.datum"}


@pytest.mark.parametrize(
    "fault",
    [Faults(status=500), Faults(status=503), Faults(timeout=True), Faults(malformed=True)],
    ids=["500", "503", "timeout", "malformed"],
)
@pytest.mark.parametrize("registry", ["coa", "ind"])
async def test_faults_give_partial_data(
    start, mock_registries: Registries, tmp_path: Path, fault: Faults, registry: str
) -> None:
    running = await start(registry_timeout=0.5)
    who = ind_caller(running, tmp_path)
    getattr(mock_registries, registry).faults = replace(fault)  # reset() clears in place
    answer = await who.query(ALL_REGISTRIES, {"v": vnummers(mock_registries, 3, start=100)})
    assert answer.status == 200
    people = answer.body["data"]["vreemdelingen"]
    assert all(p is not None and p["naam"] is not None for p in people), "BVV data still comes"
    field = "opvang" if registry == "coa" else "procedures"
    assert all(p[field] is None for p in people)
    codes = {(e["extensions"]["code"], e["path"][-1]) for e in answer.body["errors"]}
    assert codes == {("REGISTRY_UNAVAILABLE", field)}


@pytest.mark.parametrize(
    "fault", [Faults(status=500), Faults(timeout=True), Faults(malformed=True)]
)
async def test_bvv_fault_keeps_subgraph_data(
    start, mock_registries: Registries, tmp_path: Path, fault: Faults
) -> None:
    running = await start(registry_timeout=0.5)
    who = ind_caller(running, tmp_path)
    mock_registries.bvv.faults = replace(fault)
    answer = await who.query(ALL_REGISTRIES, {"v": vnummers(mock_registries, 2, start=200)})
    assert answer.status == 200
    errors = answer.body["errors"]
    assert errors and all(e["extensions"]["code"] == "REGISTRY_UNAVAILABLE" for e in errors)
    people = answer.body["data"]["vreemdelingen"]
    assert all(p["naam"] is None and p["verblijfsstatus"] is None for p in people)


@pytest.mark.parametrize("bad", ["123", "12345678901", "abcdefghij", "12345 6789", ""])
async def test_bad_vnummer_is_bad_user_input_without_lookup(
    gateway: Running, mock_registries: Registries, tmp_path: Path, bad: str
) -> None:
    who = ind_caller(gateway, tmp_path)
    answer = await who.query(BVV_ONLY, {"v": bad})
    assert answer.body["data"] is None
    assert answer.body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert all(m.served == [] for m in mock_registries.all)


async def test_unknown_person_is_null(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = ind_caller(gateway, tmp_path)
    unknown = next(
        f"{n:010d}"
        for n in range(1, 10**6)
        if mock_registries.population.person(f"{n:010d}") is None
    )
    answer = await who.query(BVV_ONLY, {"v": unknown})
    assert answer.body == {"data": {"vreemdeling": None}}


async def test_variable_defaults_name_the_persons(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """A V-nummer given as a variable's default is looked up like a given one."""
    who = ind_caller(gateway, tmp_path)
    person = vnummers(mock_registries, 1, start=300)[0]
    for operation_name in (None, "Persoon"):
        query = (
            f'query Persoon($v: ID! = "{person}") '
            "{ vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
        )
        payload_name = {} if operation_name is None else {"operationName": operation_name}
        answer = await gateway.gateway.handle(who.headers(), {"query": query, **payload_name})
        assert answer.status == 200, answer.body
        assert answer.body["data"]["vreemdeling"]["vnummer"] == person
