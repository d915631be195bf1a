"""Tests of the mock chain registries (mocks/): data, BVV, COA/IND subgraphs, faults, CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mocks.app import Registries, combined_app, create_registries
from mocks.cli import app as cli_app
from mocks.data import Population, actief_in_opvang, in_opvang_op

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ENTITIES = (
    "query($r: [_Any!]!) { _entities(representations: $r) { __typename "
    "... on Vreemdeling { vnummer %s } } }"
)


@pytest.fixture(scope="module")
def population() -> Population:
    return Population()


@pytest.fixture(scope="module")
def records(population: Population) -> list[dict[str, Any]]:
    return [population.record(i) for i in range(population.size)]


@pytest.fixture
def registries() -> Registries:
    return create_registries()


@pytest.fixture
async def client(registries: Registries) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=combined_app(registries))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=5) as c:
        yield c


def first(records: list[dict[str, Any]], pred: Any, n: int = 1) -> list[str]:
    """V-nummers of the first ``n`` records satisfying ``pred``."""
    found = [r["vnummer"] for r in records if pred(r)][:n]
    assert len(found) == n
    return found


def has_signal(soort: str) -> Any:
    return lambda r: any(s["soort"] == soort for s in r["signaleringen"])


def reps(vnummers: list[str]) -> list[dict[str, str]]:
    return [{"__typename": "Vreemdeling", "vnummer": v} for v in vnummers]


# -- data ------------------------------------------------------------------------------------


def test_same_seed_same_persons_other_seed_differs() -> None:
    a, b, c = (
        Population(seed=1, size=500),
        Population(seed=1, size=500),
        Population(seed=2, size=500),
    )
    assert [a.record(i) for i in range(50)] == [b.record(i) for i in range(50)]
    assert list(a.vnummers()) == list(b.vnummers())
    assert a.record(0) != c.record(0)
    assert list(a.vnummers())[:50] != list(c.vnummers())[:50]


def test_vnummer_bijection(population: Population) -> None:
    seen = set()
    for i, v in enumerate(population.vnummers()):
        assert len(v) == 10
        assert v.isdigit()
        assert population.index(v) == i
        seen.add(v)
    assert len(seen) == population.size
    outside = next(f"{n:010d}" for n in range(10**9, 10**9 + 100_000) if f"{n:010d}" not in seen)
    assert population.person(outside) is None
    assert population.person("123") is None
    assert population.person("12345678ab") is None


def test_distributions_roughly_as_specified(records: list[dict[str, Any]]) -> None:
    n = len(records)

    def share(pred: Any) -> float:
        return sum(1 for r in records if pred(r)) / n

    assert 0.65 < share(lambda r: r["opvang"] is not None) < 0.75
    assert 0.12 < share(lambda r: r["meldplicht"] is not None and r["meldplicht"]["actief"]) < 0.18
    assert share(lambda r: r["meldplicht"] is not None and not r["meldplicht"]["actief"]) > 0.05
    assert share(lambda r: r["meldplicht"] is None) > 0.6
    assert 0.03 < share(has_signal("OVERLAST")) < 0.05
    assert 0.005 < share(has_signal("TOP_X")) < 0.015
    assert 0.005 < share(has_signal("NATIONALE_VEILIGHEID")) < 0.015
    assert 0.015 < share(has_signal("MENSENHANDEL")) < 0.025
    assert share(lambda r: r["biometrie"] is not None) > 0.8
    assert 0.17 < share(lambda r: r["gezondheid"] is not None) < 0.23
    assert 0.26 < share(lambda r: r["religie"] is not None) < 0.34
    assert 0.26 < share(lambda r: r["etniciteit"] is not None) < 0.34
    assert 0.01 < share(lambda r: r["seksueleGerichtheid"] is not None) < 0.03
    assert 0.04 < share(lambda r: bool(r["strafrechtelijkeGegevens"])) < 0.06
    assert all(1 <= len(r["procedures"]) <= 2 for r in records)
    with_reports = [r for r in records if r["overlastmeldingen"]]
    assert sum(1 for r in with_reports if has_signal("OVERLAST")(r)) > 0.7 * len(with_reports)
    locaties = {r["opvang"]["locatie"]["code"] for r in records if r["opvang"]}
    gemeenten = {r["opvang"]["locatie"]["gemeente"] for r in records if r["opvang"]}
    assert 25 <= len(locaties) <= 35
    assert 15 <= len(gemeenten) <= 25
    assert 20 <= len({r["nationaliteiten"][0]["code"] for r in records}) <= 30


def test_record_shape(records: list[dict[str, Any]]) -> None:
    r = next(r for r in records if r["opvang"] and r["meldplicht"] and r["signaleringen"])
    assert set(r["naam"]) == {"voornamen", "voorvoegsel", "geslachtsnaam"}
    assert set(r["geboorte"]) == {"datum", "plaats", "land"}
    assert set(r["meldplicht"]) == {"actief", "frequentie", "meldlocatie", "laatsteMelding"}
    assert set(r["opvang"]) == {"locatie", "instroomdatum", "uitstroomdatum", "modaliteit"}
    assert set(r["procedures"][0]) == {"zaaknummer", "soort", "fase", "beslissing", "beslisdatum"}
    assert r["geslacht"] in {"M", "V", "X"}
    assert len(r["geboorte"]["datum"]) == 10
    assert r["geboorte"]["datum"][4] == "-"


def test_large_population_lookup_is_fast() -> None:
    big = Population(size=1_000_000)
    start = time.perf_counter()
    last = big.vnummer(999_999)
    person = big.person(last)
    assert person is not None
    assert person["vnummer"] == last
    assert big.index(last) == 999_999
    assert time.perf_counter() - start < 0.1


# -- BVV -------------------------------------------------------------------------------------


async def test_bvv_projection_and_record(
    client: httpx.AsyncClient, registries: Registries, records: list[dict[str, Any]]
) -> None:
    vnummers = [*first(records, lambda r: bool(r["signaleringen"]), 2), records[0]["vnummer"]]
    fields = ["naam.voornamen", "naam.geslachtsnaam", "signaleringen.soort", "geslacht"]
    resp = await client.post(
        "/bvv/personen",
        json={"vnummers": vnummers, "fields": fields},
        headers={"traceparent": TRACEPARENT},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["buitenVoorwaarde"] == []
    assert [p["vnummer"] for p in body["personen"]] == vnummers
    for p in body["personen"]:
        assert set(p) == {"vnummer", "naam", "signaleringen", "geslacht"}
        assert set(p["naam"]) == {"voornamen", "geslachtsnaam"}
        assert all(set(s) == {"soort"} for s in p["signaleringen"])
    assert body["personen"][0]["signaleringen"]
    call = registries.bvv.served[-1]
    assert call.registry == "BVV"
    assert call.vnummers == tuple(vnummers)
    assert call.fields == frozenset(fields)
    assert call.headers["traceparent"] == TRACEPARENT


async def test_bvv_whole_object_and_only_vnummer(
    client: httpx.AsyncClient, records: list[dict[str, Any]]
) -> None:
    v = records[3]["vnummer"]
    resp = await client.post(
        "/bvv/personen", json={"vnummers": [v], "fields": ["naam", "naam.voornamen"]}
    )
    assert resp.json()["personen"] == [{"vnummer": v, "naam": records[3]["naam"]}]
    resp = await client.post("/bvv/personen", json={"vnummers": [v], "fields": []})
    assert resp.json()["personen"] == [{"vnummer": v}]


@pytest.mark.parametrize(
    ("voorwaarde", "pred", "scope_field"),
    [
        ({"signaal": "OVERLAST"}, has_signal("OVERLAST"), "signaleringen.soort"),
        (
            {"meldplicht": True},
            lambda r: r["meldplicht"] is not None and r["meldplicht"]["actief"],
            "meldplicht.actief",
        ),
    ],
)
async def test_bvv_voorwaarde_excludes(
    client: httpx.AsyncClient,
    registries: Registries,
    records: list[dict[str, Any]],
    voorwaarde: dict[str, Any],
    pred: Any,
    scope_field: str,
) -> None:
    inside = first(records, pred, 2)
    outside = first(records, lambda r: not pred(r), 2)
    unknown = next(
        f"{n:010d}"
        for n in range(10**9, 2 * 10**9)
        if registries.population.index(f"{n:010d}") is None
    )
    asked = [outside[0], inside[0], unknown, outside[1], inside[1]]
    resp = await client.post(
        "/bvv/personen",
        json={"vnummers": asked, "fields": ["naam"], "voorwaarde": voorwaarde},
    )
    body = resp.json()
    assert [p["vnummer"] for p in body["personen"]] == inside
    assert body["buitenVoorwaarde"] == outside
    assert unknown not in json.dumps(body)
    assert registries.bvv.served[-1].fields == frozenset({"naam", scope_field})


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,
        b"[1, 2]",
        json.dumps({"vnummers": "0123456789", "fields": []}).encode(),
        json.dumps({"vnummers": [123], "fields": []}).encode(),
        json.dumps({"vnummers": ["12345"], "fields": []}).encode(),
        json.dumps({"vnummers": ["０１２３４５６７８９"], "fields": []}).encode(),
        json.dumps({"vnummers": [f"{n:010d}" for n in range(101)], "fields": []}).encode(),
        json.dumps({"vnummers": [], "fields": ["naam.bestaatniet"]}).encode(),
        json.dumps({"vnummers": [], "fields": ["opvang"]}).encode(),
        json.dumps({"vnummers": [], "fields": "naam"}).encode(),
        json.dumps({"vnummers": []}).encode(),
        json.dumps({"vnummers": [], "fields": [], "extra": 1}).encode(),
        json.dumps({"vnummers": [], "fields": [], "voorwaarde": {"signaal": "X"}}).encode(),
        json.dumps({"vnummers": [], "fields": [], "voorwaarde": {"meldplicht": False}}).encode(),
    ],
)
async def test_bvv_bad_body_is_problem(
    client: httpx.AsyncClient, registries: Registries, content: bytes
) -> None:
    resp = await client.post(
        "/bvv/personen", content=content, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == 400
    assert registries.bvv.served == []


async def test_bvv_unknown_vnummers_absent(client: httpx.AsyncClient) -> None:
    population = Population()
    unknown = [
        f"{n:010d}" for n in range(10**9, 10**9 + 10_000) if population.index(f"{n:010d}") is None
    ][:3]
    resp = await client.post("/bvv/personen", json={"vnummers": unknown, "fields": ["naam"]})
    assert resp.status_code == 200
    assert resp.json() == {"personen": [], "buitenVoorwaarde": []}


async def test_bvv_zoeken_exact_and_literal(
    client: httpx.AsyncClient, registries: Registries, records: list[dict[str, Any]]
) -> None:
    target = next(r for r in records if not r["naam"]["geslachtsnaam"].isascii())
    naam, datum = target["naam"]["geslachtsnaam"], target["geboorte"]["datum"]

    async def zoek(geslachtsnaam: str, geboortedatum: str = datum) -> list[dict[str, Any]]:
        resp = await client.post(
            "/bvv/zoeken",
            json={
                "geslachtsnaam": geslachtsnaam,
                "geboortedatum": geboortedatum,
                "fields": ["naam.geslachtsnaam"],
                "max": 5,
            },
        )
        assert resp.status_code == 200
        result: list[dict[str, Any]] = resp.json()["personen"]
        return result

    hits = await zoek(naam)
    assert target["vnummer"] in [p["vnummer"] for p in hits]
    assert all(set(p) == {"vnummer", "naam"} for p in hits)
    # Case and diacritics are folded (exact, not fuzzy).
    import unicodedata

    folded = "".join(
        c for c in unicodedata.normalize("NFKD", naam) if not unicodedata.combining(c)
    ).upper()
    assert target["vnummer"] in [p["vnummer"] for p in await zoek(folded)]
    # Wildcard characters are literal; prefixes and other dates do not match.
    for pattern in ("*", "%", "_", naam[:2] + "*", naam[:2] + "%", naam[:-1] + "_", naam[:3]):
        assert await zoek(pattern) == []
    other_day = "1900-01-01"
    assert await zoek(naam, other_day) == []
    assert registries.bvv.served[0].fields == frozenset({"naam.geslachtsnaam"})
    resp = await client.post(
        "/bvv/zoeken", json={"geslachtsnaam": naam, "geboortedatum": "2001-02-30", "fields": []}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")


async def test_health(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/bvv/health", "/coa/health", "/ind/health"):
        assert (await client.get(path)).status_code == 200


# -- COA / IND -------------------------------------------------------------------------------


async def test_coa_entities_aligned_and_recorded(
    client: httpx.AsyncClient, registries: Registries, records: list[dict[str, Any]]
) -> None:
    known = [records[i]["vnummer"] for i in (0, 1, 2)]
    unknown = "0000000000" if registries.population.index("0000000000") is None else "0000000001"
    asked = [known[0], unknown, known[1], known[2]]
    query = (
        "query($r: [_Any!]!) { _entities(representations: $r) { __typename "
        "... on Vreemdeling { opvang { locatie { code } modaliteit } ...F } } } "
        "fragment F on Vreemdeling { overlastmeldingen { soort } }"
    )
    resp = await client.post(
        "/coa/graphql",
        json={"query": query, "variables": {"r": reps(asked)}},
        headers={"traceparent": TRACEPARENT},
    )
    assert resp.status_code == 200
    entities = resp.json()["data"]["_entities"]
    assert len(entities) == 4
    assert entities[1] is None
    for entity, i in zip([entities[0], entities[2], entities[3]], (0, 1, 2), strict=True):
        opvang = records[i]["opvang"]
        expected = (
            None
            if opvang is None
            else {
                "locatie": {"code": opvang["locatie"]["code"]},
                "modaliteit": opvang["modaliteit"],
            }
        )
        assert entity["opvang"] == expected
    call = registries.coa.served[-1]
    assert call.registry == "COA"
    assert call.vnummers == tuple(asked)
    assert call.fields == frozenset(
        {"opvang.locatie.code", "opvang.modaliteit", "overlastmeldingen.soort"}
    )
    assert call.headers["traceparent"] == TRACEPARENT
    assert registries.ind.served == []
    assert registries.bvv.served == []


async def test_ind_entities(
    client: httpx.AsyncClient, registries: Registries, records: list[dict[str, Any]]
) -> None:
    asked = [
        records[5]["vnummer"],
        "9" * 10 if registries.population.index("9" * 10) is None else "1" * 10,
    ]
    query = ENTITIES % "procedures { zaaknummer beslissing }"
    resp = await client.post("/ind/graphql", json={"query": query, "variables": {"r": reps(asked)}})
    entities = resp.json()["data"]["_entities"]
    assert entities[1] is None
    assert entities[0]["vnummer"] == asked[0]
    assert entities[0]["procedures"] == [
        {"zaaknummer": p["zaaknummer"], "beslissing": p["beslissing"]}
        for p in records[5]["procedures"]
    ]
    assert registries.ind.served[-1].fields == frozenset(
        {"vnummer", "procedures.zaaknummer", "procedures.beslissing"}
    )


async def test_subgraph_sdl_has_key(client: httpx.AsyncClient) -> None:
    for base in ("/coa", "/ind"):
        resp = await client.post(f"{base}/graphql", json={"query": "{ _service { sdl } }"})
        sdl = resp.json()["data"]["_service"]["sdl"]
        assert 'type Vreemdeling @key(fields: "vnummer")' in sdl
        assert "federation/v2" in sdl


@pytest.mark.parametrize("groepering", ["LOCATIE", "GEMEENTE", "NATIONALITEIT", "VERBLIJFSSTATUS"])
async def test_opvangstatistiek_sums(
    client: httpx.AsyncClient,
    registries: Registries,
    records: list[dict[str, Any]],
    groepering: str,
) -> None:
    peildatum = "2023-01-01"
    query = (
        "query($p: String!, $g: String!) { opvangstatistiek(peildatum: $p, groepering: $g) "
        "{ sleutel aantal bovenliggend } }"
    )
    resp = await client.post(
        "/coa/graphql", json={"query": query, "variables": {"p": peildatum, "g": groepering}}
    )
    cellen = resp.json()["data"]["opvangstatistiek"]
    expected = sum(1 for r in records if in_opvang_op(r, peildatum))
    assert expected > 1000
    assert sum(c["aantal"] for c in cellen) == expected
    assert all(c["aantal"] > 0 for c in cellen)
    assert all((c["bovenliggend"] is not None) == (groepering == "LOCATIE") for c in cellen)
    call = registries.coa.served[-1]
    assert call.fields == frozenset({"opvangstatistiek"})
    assert call.vnummers == ()


async def test_opvangstatistiek_bad_groepering(client: httpx.AsyncClient) -> None:
    query = '{ opvangstatistiek(peildatum: "2023-01-01", groepering: "PERSOON") { sleutel } }'
    resp = await client.post("/coa/graphql", json={"query": query})
    assert resp.json()["errors"]


# -- faults ----------------------------------------------------------------------------------


def _requests(records: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    v = records[0]["vnummer"]
    return {
        "BVV": ("/bvv/personen", {"vnummers": [v], "fields": ["naam"]}),
        "COA": (
            "/coa/graphql",
            {"query": ENTITIES % "opvang { modaliteit }", "variables": {"r": reps([v])}},
        ),
        "IND": (
            "/ind/graphql",
            {"query": ENTITIES % "procedures { fase }", "variables": {"r": reps([v])}},
        ),
    }


@pytest.mark.parametrize("name", ["BVV", "COA", "IND"])
async def test_faults(
    client: httpx.AsyncClient,
    registries: Registries,
    records: list[dict[str, Any]],
    name: str,
) -> None:
    registry = next(r for r in registries.all if r.name == name)
    path, body = _requests(records)[name]

    registry.faults.status = 503
    resp = await client.post(path, json=body)
    assert resp.status_code == 503
    assert registry.served == []

    registry.reset()
    registry.faults.malformed = True
    resp = await client.post(path, json=body)
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        resp.json()

    registry.reset()
    registry.faults.latency = 0.2
    start = time.perf_counter()
    resp = await client.post(path, json=body)
    assert resp.status_code == 200
    assert time.perf_counter() - start >= 0.2
    assert len(registry.served) == 1

    registry.reset()
    registry.faults.timeout = True
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await client.post(path, json=body)
    # Health is never faulted.
    assert (await client.get(path.rsplit("/", 1)[0] + "/health")).status_code == 200

    faults = registry.faults
    registry.reset()
    assert faults is registry.faults
    assert not faults.timeout
    assert registry.served == []
    assert (await client.post(path, json=body)).status_code == 200


# -- CLI -------------------------------------------------------------------------------------


def test_cli_list(records: list[dict[str, Any]]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["list", "--signaal", "OVERLAST", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == first(records, has_signal("OVERLAST"), 5)

    result = runner.invoke(cli_app, ["list", "--meldplicht", "--opvang", "--limit", "3"])
    assert result.exit_code == 0, result.output
    expected = first(
        records,
        lambda r: r["meldplicht"] is not None and r["meldplicht"]["actief"] and actief_in_opvang(r),
        3,
    )
    assert result.output.split() == expected

    result = runner.invoke(cli_app, ["list"])
    assert result.output.split() == [r["vnummer"] for r in records[:20]]

    result = runner.invoke(cli_app, ["list", "--seed", "7", "--size", "50", "--limit", "2"])
    assert result.output.split() == list(Population(7, 50).vnummers())[:2]

    result = runner.invoke(cli_app, ["list", "--signaal", "ONZIN"])
    assert result.exit_code != 0
