"""Apollo Federation v2 subgraphs (COA, IND): ``_entities`` for ``Vreemdeling`` by V-nummer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from resolvers.base import RegistryClient, RegistryUnavailable, malformed


def selection(paths: Iterable[str]) -> str:
    """Dotted paths as a GraphQL selection.

    ``{"opvang.locatie.code"}`` becomes ``"opvang { locatie { code } }"``.
    """
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})

    def render(node: dict[str, Any]) -> str:
        return " ".join(f"{k} {{ {render(v)} }}" if v else k for k, v in node.items())

    return render(tree)


class SubgraphClient(RegistryClient):
    """A federated subgraph reached at ``{base_url}/graphql``."""

    async def entities(
        self, vnummers: Sequence[str], paths: Iterable[str]
    ) -> dict[str, dict[str, Any] | None]:
        """The entities' selected fields by V-nummer (None for a person the registry lacks)."""
        query = (
            "query Entities($r: [_Any!]!) { _entities(representations: $r) "
            f"{{ ... on Vreemdeling {{ vnummer {selection(paths)} }} }} }}"
        )
        representations = [{"__typename": "Vreemdeling", "vnummer": v} for v in vnummers]
        answer = await self.post_json(
            "/graphql",
            {"query": query, "variables": {"r": representations}},
            subjects=len(vnummers),
        )
        entities = self._data(answer).get("_entities")
        if not isinstance(entities, list) or len(entities) != len(vnummers):
            raise malformed(self.name)
        result: dict[str, dict[str, Any] | None] = {}
        for vnummer, entity in zip(vnummers, entities, strict=True):
            if entity is not None and (
                not isinstance(entity, dict) or entity.get("vnummer") != vnummer
            ):
                raise malformed(self.name)
            result[vnummer] = entity
        return result

    def _data(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise malformed(self.name)
        if answer.get("errors"):
            raise RegistryUnavailable(self.name, "graphql errors")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise malformed(self.name)
        return data


class CoaClient(SubgraphClient):
    name = "COA"

    async def statistics(self, peildatum: str, grouping: str) -> list[dict[str, Any]]:
        """Raw (unsuppressed) reception counts; suppression is the gateway's job."""
        query = (
            "query Stat($p: String!, $g: String!) { opvangstatistiek(peildatum: $p, groepering: $g)"
            " { sleutel aantal bovenliggend } }"
        )
        answer = await self.post_json(
            "/graphql", {"query": query, "variables": {"p": peildatum, "g": grouping}}, subjects=0
        )
        cells = self._data(answer).get("opvangstatistiek")
        if not isinstance(cells, list) or not all(
            isinstance(c, dict)
            and isinstance(c.get("aantal"), int)
            and isinstance(c.get("sleutel"), str)
            for c in cells
        ):
            raise malformed(self.name)
        return cells


class IndClient(SubgraphClient):
    name = "IND"
