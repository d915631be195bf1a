"""Regressions of the review of the tight edges (issue 10) and the development explorer.

One test (or a few) per finding, each asserting the corrected behaviour: the code and status,
no data, what the registries were asked, what was charged, and what the trail records.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.policy_file import load_policy
from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery, AuditRecord
from gateway.audit.stores import open_store
from gateway.config import RegistryEndpoints, Settings
from gateway.errors import GatewayError
from gateway.execution.schema import graphql_schema, non_null_coordinates, schema_coordinates
from gateway.http.app import create_app
from gateway.http.json_body import holds_lone_surrogate
from gateway.pipeline.answer import Answer
from gateway.policy.model import PolicyError
from gateway.proportionality.counting import moment
from mocks import Registries
from resolvers.bvv import BvvClient
from tests.support import caller, settings_for
from tests.test_edges import ask, assert_refused_once, code, served, who

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "policies"
DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policy" / "ketenbeleid.yaml"
SEARCH = (
    "query($n: String!) "
    '{ zoekVreemdelingen(geslachtsnaam: $n, geboortedatum: "1990-01-01") { vnummer } }'
)


async def used(running: Running, key: str, purpose: str) -> int:
    """The quota units ``key`` has used today for ``purpose`` (reserving none)."""
    decision = await running.gateway.quota_store.reserve(key, purpose, 0, 1_000_000)
    return decision.used


def http_headers(state: Path, purpose: str = "TOEZICHT_VW") -> dict[str, str]:
    policy = load_policy(DEFAULT_POLICY, schema_coordinates(graphql_schema()))
    settings = Settings()
    token = mint_dev_token(
        load_or_create_dev_key(state),
        issuer=settings.issuer,
        audience=settings.audience,
        subject="medewerker-001",
        oin=policy.organisations["NVIK"].oin,
        organisation="NVIK",
        roles=["analist"],
        purposes=[purpose],
    )
    return {
        "authorization": f"Bearer {token}",
        "x-doelbinding": purpose,
        "x-verwerking": policy.purposes[purpose].processing_activities[0],
        "content-type": "application/json",
        "accept": "application/json",
    }


def trail(settings: Settings) -> list[AuditRecord]:
    """Every record of the (closed) gateway's audit store."""

    async def read() -> list[AuditRecord]:
        store = open_store(settings.audit_store_url)
        await store.open()
        try:
            return await store.search(AuditQuery(limit=100_000))
        finally:
            await store.close()

    return asyncio.run(read())


# ---- 1. a lone surrogate anywhere in the body ------------------------------------------------

SURROGATE_BODIES = {
    "variable": b'{"query": "query($n: String!) { zoekVreemdelingen(geslachtsnaam: $n, '
    b'geboortedatum: \\"1990-01-01\\") { vnummer } }", "variables": {"n": "A\\ud800"}}',
    "query": b'{"query": "{ zoekVreemdelingen(geslachtsnaam: \\"A\\ud800\\", '
    b'geboortedatum: \\"1990-01-01\\") { vnummer } }"}',
    "operation-name": b'{"query": "{ __typename }", "operationName": "\\ud800"}',
    "enum-variable": b'{"query": "query($g: StatistiekGroepering!) { opvangstatistiek('
    b'peildatum: \\"2024-01-01\\", groepering: $g) { aantal } }", "variables": {"g": "\\udfff"}}',
    "variable-name": b'{"query": "{ __typename }", "variables": {"\\ud800": 1}}',
    "nested": b'{"query": "{ __typename }", "extensions": {"a": [[{"b": ["\\udc00"]}]]}}',
}


def test_a_lone_surrogate_in_the_body_is_refused_at_the_http_boundary(
    tmp_path: Path, mock_registries: Registries
) -> None:
    mock_registries.reset()
    settings = settings_for(tmp_path / "state")
    headers = http_headers(settings.state_dir)
    with TestClient(create_app(settings, mocks=mock_registries)) as http:
        for name, body in SURROGATE_BODIES.items():
            answer = http.post("/graphql", content=body, headers=headers)
            assert answer.status_code == 400, (name, answer.text)
            assert answer.headers["content-type"].startswith("application/json"), name
            assert answer.json().get("data") is None, name
            assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", name
    assert served(mock_registries) == []
    # Refused before anything read it: nothing recorded that the caller did not receive.
    assert trail(settings) == []


def test_holds_lone_surrogate_walks_keys_values_and_depth() -> None:
    assert not holds_lone_surrogate({"a": ["\U0001f600", {"b": "Zoë"}], "c": 1, "d": None})
    assert holds_lone_surrogate({"a": [{"b": "x\ud800"}]})
    assert holds_lone_surrogate({"\udfff": 1})
    deep: Any = "\ud800"
    for _ in range(50_000):  # deeper than recursion would go
        deep = [deep]
    assert holds_lone_surrogate({"v": deep})


def test_an_answer_always_encodes() -> None:
    body = {"data": None, "errors": [{"message": "Unknown 'x\ud800'", "extensions": {}}]}
    encoded = Answer(400, body).encode()
    assert json.loads(encoded) == body
    assert json.loads(Answer(200, {"data": {"n": "Zoë"}}).encode()) == {"data": {"n": "Zoë"}}


# ---- 2. a surname that is not printable text is refused before the quota is charged ----------


@pytest.mark.parametrize(
    "surname", ["Jansen\ud800", "Jan\u202esen", "Jan\u200bsen", "Jansen\t", "\u00a0"]
)
async def test_a_surname_that_is_not_printable_is_refused_before_charging(
    gateway: Running, mock_registries: Registries, tmp_path: Path, surname: str
) -> None:
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    answer, records = await ask(person, SEARCH, {"n": surname})
    assert answer.status == 400 and answer.body["data"] is None, answer.body
    assert code(answer) == "BAD_USER_INPUT"
    assert answer.body["errors"][0]["extensions"].get("argument") == "geslachtsnaam"
    json.loads(answer.encode())  # never an HTTP 500
    assert served(mock_registries) == []
    assert await used(gateway, "medewerker-001", "TOEZICHT_VW") == 0
    assert_refused_once(records, "BAD_USER_INPUT", 0)


# ---- 3. trail-search bounds: one parser, bounded, refused before charging --------------------

BAD_BOUNDS = [
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00",
    "2024-01-01T00:00:00+99:00",
    "1969-12-31T23:59:59+00:00",
    "2200-01-01T00:00:00Z",
    "2024-01-01\ud800",
    "2024-13-01",
]


@pytest.mark.parametrize("bound", BAD_BOUNDS)
async def test_trail_search_bounds_out_of_range_are_refused_before_charging(
    gateway: Running, mock_registries: Registries, tmp_path: Path, bound: str
) -> None:
    fg = caller(gateway, tmp_path / "state", org="NVIK", roles=["fg"], purpose="VERANTWOORDING")
    vnummer = mock_registries.population.vnummer(1)
    for name in ("sinds", "tot"):
        query = f'query($b: String) {{ auditZoeken(vnummer: "{vnummer}", {name}: $b) {{ pad }} }}'
        answer, records = await ask(fg, query, {"b": bound})
        assert answer.status == 400 and answer.body["data"] is None, answer.body
        assert code(answer) == "BAD_USER_INPUT", answer.body
        assert answer.body["errors"][0]["extensions"].get("argument") == name
        assert_refused_once(records, "BAD_USER_INPUT", 1)
    assert await used(gateway, "medewerker-001", "VERANTWOORDING") == 0


async def test_trail_search_bounds_in_range_are_read_as_utc(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    assert moment("2024-01-01T01:00:00+01:00", "sinds") == datetime(2024, 1, 1, tzinfo=UTC)
    assert moment("2024-01-01T00:00:00", "tot") == datetime(2024, 1, 1, tzinfo=UTC)
    assert moment(None, "tot") is None
    fg = caller(gateway, tmp_path / "state", org="NVIK", roles=["fg"], purpose="VERANTWOORDING")
    vnummer = mock_registries.population.vnummer(1)
    answer, _ = await ask(
        fg,
        f'{{ auditZoeken(vnummer: "{vnummer}", sinds: "2024-01-01T00:00:00+01:00", '
        f'tot: "2199-12-31T23:59:59") {{ pad }} }}',
    )
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert await used(gateway, "medewerker-001", "VERANTWOORDING") == 1


# ---- 4. variable coercion is told against the caller's own schema ----------------------------


async def test_variable_errors_name_no_enum_value_the_caller_cannot_see(
    gateway: Running, tmp_path: Path
) -> None:
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    grant = gateway.gateway.policy.grant("NVIK", ["analist"], "TOEZICHT_VW")
    assert not any(c.startswith("Query.opvangstatistiek") for c in grant.allowed)
    query = (
        "query($g: StatistiekGroepering!) "
        '{ opvangstatistiek(peildatum: "2024-01-01", groepering: $g) { aantal } }'
    )
    for value in ("LOCATI", "locatie", 3):
        answer, records = await ask(person, query, {"g": value})
        assert answer.status == 400 and answer.body["data"] is None, answer.body
        assert code(answer) == "BAD_USER_INPUT"
        text = json.dumps(answer.body)
        for hidden in ("LOCATIE", "GEMEENTE", "Did you mean", "opvangstatistiek'?"):
            assert hidden not in text, (value, text)
        assert_refused_once(records, "BAD_USER_INPUT", 0)


async def test_variable_errors_still_help_with_what_the_caller_can_see(
    gateway: Running, tmp_path: Path
) -> None:
    person = who(gateway, tmp_path, "TOEZICHT_VW")
    answer, _ = await ask(person, "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer } }", {})
    assert answer.status == 400 and code(answer) == "BAD_USER_INPUT"
    assert "$v" in answer.body["errors"][0]["message"]


# ---- 5. a policy may not refuse a non-null field of a type it gives --------------------------


def test_a_grant_refusing_a_non_null_field_of_a_given_type_stops_the_load() -> None:
    coordinates = schema_coordinates(graphql_schema())
    name = "ongeldig_verplicht_veld_geweigerd.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(FIXTURES / name, coordinates)
    problems = caught.value.problems
    # Only lezer + schrijver together meet the wildcard forbidding rule: every combination of
    # roles is compiled, and the message names the file, the rules and the coordinate.
    assert problems and all(name in p and "Vreemdeling.vnummer" in p for p in problems)
    assert any(
        "'A-lezer-BASIS'" in p
        and "(KETEN-geen-vnummer-schrijver)" in p
        and "['lezer', 'schrijver']" in p
        for p in problems
    ), problems
    assert not any("['lezer']" in p for p in problems), "the sound grant was refused too"


def test_legal_refusals_of_non_null_fields_stop_the_load() -> None:
    """Art. 9 / art. 10 refusals are decided like any other: were a special-category or
    criminal field non-null, a purpose without the basis that gives its siblings fails."""
    coordinates = schema_coordinates(graphql_schema())
    basis = FIXTURES / "basis.yaml"
    load_policy(basis, coordinates)  # sound as it is
    with pytest.raises(PolicyError, match=r"Vreemdeling\.strafrechtelijkeGegevens") as caught:
        load_policy(basis, coordinates, {"Vreemdeling.strafrechtelijkeGegevens"})
    assert any("AVG_ART10_GEEN_GRONDSLAG" in p for p in caught.value.problems)
    with pytest.raises(PolicyError) as caught:
        load_policy(basis, coordinates, {"Vreemdeling.religie"})
    assert any("(KETEN-geen-religie)" in p for p in caught.value.problems)


def test_the_served_schema_and_default_policy_are_sound() -> None:
    non_null = non_null_coordinates(graphql_schema())
    assert "Vreemdeling.vnummer" in non_null
    assert not any(c.startswith("Query.") for c in non_null)  # refused per request instead
    load_policy(DEFAULT_POLICY, schema_coordinates(graphql_schema()), non_null)


async def test_a_gateway_does_not_start_on_a_policy_refusing_vnummer(
    start: Any, tmp_path: Path
) -> None:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    marker = "  - id: COA-medewerker-OPVANG_UITVOERING"
    head, tail = text.split(marker, 1)
    rule, rest = tail.split("\n  - id:", 1)
    assert "      - Vreemdeling.vnummer\n" in rule
    custom = tmp_path / "beleid.yaml"
    custom.write_text(
        head + marker + rule.replace("      - Vreemdeling.vnummer\n", "", 1) + "\n  - id:" + rest,
        encoding="utf-8",
    )
    with pytest.raises(PolicyError, match="COA-medewerker-OPVANG_UITVOERING"):
        await start(policy=custom)


# ---- 6. searches: out-of-scope persons never leave the registry ------------------------------


async def test_a_scoped_search_hands_no_out_of_scope_vnummer_to_the_gateway(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    population = mock_registries.population
    outside = next(
        population.record(i)
        for i in range(2000)
        if not any(s["soort"] == "OVERLAST" for s in population.record(i)["signaleringen"])
    )
    bvv = gateway.gateway.registries.bvv
    scope = gateway.gateway.policy.purposes["OVERLAST"].rijbereik
    assert scope is not None
    name, born = outside["naam"]["geslachtsnaam"], outside["geboorte"]["datum"]
    found = await bvv.search(name, born, ("vnummer",), 5, scope.as_condition())
    assert outside["vnummer"] not in found.records
    assert found.out_of_scope == frozenset()
    assert all(outside["vnummer"] not in call.vnummers for call in mock_registries.bvv.served)
    # Without a scope the same search finds the person: the test looks at a real match.
    unscoped = await bvv.search(name, born, ("vnummer",), 5, None)
    assert outside["vnummer"] in unscoped.records
    # Through the gateway: the caller sees no sign of the person, the trail no subject.
    mock_registries.reset()
    answer, records = await ask(
        who(gateway, tmp_path, "OVERLAST"),
        f'{{ zoekVreemdelingen(geslachtsnaam: "{name}", geboortedatum: "{born}") {{ vnummer }} }}',
    )
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert outside["vnummer"] not in json.dumps(answer.body)
    assert gateway.gateway.pseudonym(outside["vnummer"]) not in {r.data_subject_id for r in records}


async def test_a_search_answer_naming_out_of_scope_persons_is_refused() -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"personen": [], "buitenVoorwaarde": ["0123456789"]})

    client = BvvClient(httpx.MockTransport(registry), "http://bvv.test", timeout=5.0)
    with pytest.raises(GatewayError) as caught:
        await client.search("Jansen", "1990-01-01", ("vnummer",), 5, {"signaal": "OVERLAST"})
    assert caught.value.code.value == "REGISTRY_UNAVAILABLE"


# ---- 7. an application's own requests count against its ceiling ------------------------------


async def test_an_application_token_is_always_charged_against_its_ceiling(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    five = [mock_registries.population.vnummer(i) for i in range(5)]
    app = caller(
        gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="STRAFVORDERING",
        sub="app-1", act_for_officers=True,
    )  # fmt: skip
    query = "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer } }"
    quota = gateway.gateway.policy.purposes["STRAFVORDERING"].quota_per_day
    ceiling = quota * 10
    answer = await app.query(query, {"v": five})  # for itself: no X-Gebruiker
    assert answer.status == 200, answer.body
    assert await used(gateway, "app-1 (application)", "STRAFVORDERING") == 5
    assert await used(gateway, "app-1", "STRAFVORDERING") == 5
    # Officers' requests fill the ceiling up to its last five units; then the application's
    # own request still fits, and the next one — for itself or an officer — does not.
    store = gateway.gateway.quota_store
    await store.reserve("app-1 (application)", "STRAFVORDERING", ceiling - 10, ceiling)
    assert (await app.query(query, {"v": five})).status == 200
    for headers in ({}, {"x-gebruiker": "officer-1"}):
        answer, records = await ask(app, query, {"v": five}, **headers)
        assert answer.status == 429 and code(answer) == "QUOTA_EXCEEDED", answer.body
        assert_refused_once(records, "QUOTA_EXCEEDED", 5)
    assert await used(gateway, "app-1 (application)", "STRAFVORDERING") == ceiling
    # A personal token has no ceiling key at all.
    person = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"],
                    purpose="STRAFVORDERING", sub="person-1")  # fmt: skip
    assert (await person.query(query, {"v": five})).status == 200
    assert await used(gateway, "person-1 (application)", "STRAFVORDERING") == 0


# ---- 8, 9. the explorer mints tokens only on the loopback, only for granted purposes ---------

MINT = {"org": "NVIK", "roles": ["analist"], "doelbinding": "TOEZICHT_VW"}


@contextmanager
def explorer(tmp_path: Path, mocks: Registries, base_url: str, **settings: Any) -> Iterator[Any]:
    mocks.reset()
    app: Starlette = create_app(settings_for(tmp_path / "state", **settings), mocks=mocks)
    with TestClient(app, base_url=base_url) as http:
        yield http


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8000", "http://localhost", "http://[::1]:8000"]
)
def test_the_explorer_mints_for_a_loopback_host(
    tmp_path: Path, mock_registries: Registries, base_url: str
) -> None:
    with explorer(tmp_path, mock_registries, base_url) as http:
        minted = http.post("/explorer/api/token", json=MINT)
        assert minted.status_code == 200, minted.text
        assert minted.json()["token"]


@pytest.mark.parametrize(
    "host", ["rebind.attacker.example", "rebind.attacker.example:8000", "127.0.0.1.evil.example",
             "localhost.evil.example", "[::1].evil", "127.0.0.2", "", "localhost:80x"],
)  # fmt: skip
def test_the_explorer_mints_nothing_for_another_host(
    tmp_path: Path, mock_registries: Registries, host: str
) -> None:
    with explorer(tmp_path, mock_registries, "http://127.0.0.1") as http:
        refused = http.post("/explorer/api/token", json=MINT, headers={"host": host})
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "token" not in refused.json()


@pytest.mark.parametrize(
    "settings",
    [
        {"host": "0.0.0.0"},  # noqa: S104 - the bind that must not mint
        {"host": "192.0.2.10"},
        {"registries": RegistryEndpoints.parse(
            "bvv=http://127.0.0.1:9,coa=http://127.0.0.1:9,ind=http://127.0.0.1:9")},
    ],
    ids=["any-address", "public-address", "real-registries"],
)  # fmt: skip
def test_the_explorer_offers_no_minting_off_the_loopback_or_with_real_registries(
    tmp_path: Path, mock_registries: Registries, settings: dict[str, Any]
) -> None:
    with explorer(tmp_path, mock_registries, "http://127.0.0.1", **settings) as http:
        assert http.get("/explorer/api/grants").status_code == 200  # the explorer is there
        assert http.post("/explorer/api/token", json=MINT).status_code in (404, 405)


def test_the_explorer_mints_only_granted_purposes(
    tmp_path: Path, mock_registries: Registries
) -> None:
    with explorer(tmp_path, mock_registries, "http://127.0.0.1") as http:
        for chosen in (
            {"org": "NVIK", "roles": ["analist"], "doelbinding": "VERANTWOORDING"},
            {"org": "COA", "roles": ["medewerker"], "doelbinding": "TOEZICHT_VW"},
        ):
            refused = http.post("/explorer/api/token", json=chosen)
            assert refused.status_code == 400, (chosen, refused.text)
            assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        several = {"org": "NVIK", "roles": ["analist", "fg"], "doelbinding": "VERANTWOORDING"}
        assert http.post("/explorer/api/token", json=several).status_code == 200


def test_the_explorer_refuses_a_lone_surrogate_in_its_json(
    tmp_path: Path, mock_registries: Registries
) -> None:
    with explorer(tmp_path, mock_registries, "http://127.0.0.1") as http:
        for path, body in (
            ("/explorer/api/token/inspect", b'{"token": "a\\ud800"}'),
            ("/explorer/api/token", b'{"org": "NVIK\\ud800", "roles": ["analist"]}'),
        ):
            answer = http.post(path, content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
