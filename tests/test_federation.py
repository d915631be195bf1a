"""The COA and IND mocks are Federation v2 subgraphs that Apollo's composition library composes
with no error and no hint; the published supergraph is that composition; ``_entities`` refuses a
bad representation with a coded GraphQL error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli.main import app as cli_app
from mocks import Registries
from mocks.federation import DEFAULT_URLS, SUPERGRAPH
from tests.federation import compose, supergraph_text

ENTITIES = (
    "query($r: [_Any!]!) { _entities(representations: $r) { ... on Vreemdeling { vnummer } } }"
)


@pytest.mark.timeout(120)
def test_the_subgraphs_compose_without_errors_or_hints() -> None:
    result = compose()
    assert result["errors"] == []
    assert result["hints"] == []
    assert result["supergraphSdl"]
    assert supergraph_text(result) == SUPERGRAPH.read_text(encoding="utf-8"), (
        "mocks/supergraph.graphql is not the composition of the subgraphs: run `make supergraph`"
    )


def test_the_supergraph_command_prints_the_artifact_with_the_urls_asked() -> None:
    runner = CliRunner()
    plain = runner.invoke(cli_app, ["mocks", "supergraph"])
    assert plain.exit_code == 0
    assert plain.stdout == SUPERGRAPH.read_text(encoding="utf-8")
    moved = runner.invoke(
        cli_app,
        ["mocks", "supergraph", "--coa-url", "http://coa.example:4001/graphql"],
    )
    assert moved.exit_code == 0
    assert '@join__graph(name: "coa", url: "http://coa.example:4001/graphql")' in moved.stdout
    assert f'@join__graph(name: "ind", url: "{DEFAULT_URLS["ind"]}")' in moved.stdout
    bad = runner.invoke(cli_app, ["mocks", "supergraph", "--ind-url", "ftp://x"])
    assert bad.exit_code == 2
    assert "must be an http(s) URL" in bad.stderr


async def entities(mocks: Registries, name: str, representations: list[Any]) -> dict[str, Any]:
    app = mocks.coa.app if name == "coa" else mocks.ind.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        response = await client.post(
            "/graphql", json={"query": ENTITIES, "variables": {"r": representations}}
        )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("name", ["coa", "ind"])
@pytest.mark.parametrize(
    ("representation", "code", "message"),
    [
        (
            {"__typename": "Nope", "vnummer": "1"},
            "UNKNOWN_ENTITY_TYPE",
            "'Nope' is not an entity of subgraph {N} (entities: Vreemdeling).",
        ),
        (
            {"__typename": "Vreemdeling"},
            "INVALID_REPRESENTATION",
            "Representation 1 of Vreemdeling lacks its key field(s) as strings: vnummer.",
        ),
        (
            {"__typename": "Vreemdeling", "vnummer": 12},
            "INVALID_REPRESENTATION",
            "Representation 1 of Vreemdeling lacks its key field(s) as strings: vnummer.",
        ),
        ({"vnummer": "1"}, "INVALID_REPRESENTATION", "Representation 1 has no __typename string."),
        ("x", "INVALID_REPRESENTATION", "Representation 1 is not an object."),
    ],
    ids=["unknown-type", "no-key", "key-not-string", "no-typename", "not-object"],
)
async def test_a_bad_representation_is_a_coded_error_at_its_index(
    mock_registries: Registries, name: str, representation: Any, code: str, message: str
) -> None:
    mock_registries.reset()
    known = mock_registries.population.vnummer(0)
    good = {"__typename": "Vreemdeling", "vnummer": known, "extra": "ignored"}
    body = await entities(mock_registries, name, [good, representation])
    assert body["data"] == {"_entities": [{"vnummer": known}, None]}
    (error,) = body["errors"]
    assert error["path"] == ["_entities", 1]
    assert error["extensions"] == {"code": code}
    assert error["message"] == message.replace("{N}", name.upper())
