"""Shared machinery of the federation subgraph mocks (COA, IND).

Each subgraph is a Starlette app with ``/graphql`` (strawberry's ASGI ``GraphQL`` view, POST and
GET) and ``GET /health``. Faults apply to ``/graphql`` only. One :class:`ServedCall` is recorded
per HTTP request that resolved entities or statistics: the V-nummers asked (from the
representations or root arguments, in order, duplicates collapsed) and the dotted leaf paths
selected under the entity (inline fragments and fragment spreads are followed, ``__typename`` is
not data and is left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import strawberry
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from mocks.data import Population
from mocks.registry import MockRegistry, headers_of

# Key under which the per-request collector travels in the ASGI scope to the GraphQL context.
_SCOPE_KEY: Final = "ketenpoort.mock.verzameling"


@dataclass
class Verzameling:
    """What one HTTP request asked of a subgraph, filled by the resolvers."""

    vnummers: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    aangeraakt: bool = False


@dataclass
class SubgraphContext:
    """The GraphQL context of the subgraph mocks."""

    request: Request | WebSocket
    response: Response | WebSocket
    population: Population
    verzameling: Verzameling


Info = strawberry.Info[SubgraphContext, None]


def veldpaden(selections: list[Selection], prefix: str = "") -> set[str]:
    """Return the dotted leaf paths of a selection set (fragments flattened)."""
    paden: set[str] = set()
    for sel in selections:
        if isinstance(sel, SelectedField):
            if sel.name == "__typename":
                continue
            pad = prefix + sel.name
            if sel.selections:
                paden |= veldpaden(sel.selections, pad + ".")
            else:
                paden.add(pad)
        elif isinstance(sel, InlineFragment | FragmentSpread):
            paden |= veldpaden(sel.selections, prefix)
    return paden


def noteer(info: Info, vnummers: list[str]) -> None:
    """Record in the request's collector the subjects asked and the entity paths selected."""
    verzameling = info.context.verzameling
    verzameling.aangeraakt = True
    verzameling.vnummers.extend(vnummers)
    for veld in info.selected_fields:
        verzameling.fields |= veldpaden(veld.selections)


def noteer_veld(info: Info, veld: str) -> None:
    """Record a root field that reads no individual subject (statistics)."""
    verzameling = info.context.verzameling
    verzameling.aangeraakt = True
    verzameling.fields.add(veld)


class _GraphQLView(GraphQL[SubgraphContext, None]):
    """strawberry's ASGI view with the mock's context."""

    def __init__(self, schema: strawberry.federation.Schema, population: Population) -> None:
        super().__init__(schema)
        self.population = population

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> SubgraphContext:
        verzameling = request.scope.get(_SCOPE_KEY)
        if not isinstance(verzameling, Verzameling):  # e.g. a websocket, never recorded
            verzameling = Verzameling()
        return SubgraphContext(request, response, self.population, verzameling)


class _Endpoint:
    """ASGI wrapper around the view: injects faults, then records what was served."""

    def __init__(self, registry: MockRegistry, view: _GraphQLView) -> None:
        self.registry = registry
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.view(scope, receive, send)
            return
        fout = await self.registry.fault_response()
        if fout is not None:
            await fout(scope, receive, send)
            return
        verzameling = Verzameling()
        await self.view({**scope, _SCOPE_KEY: verzameling}, receive, send)
        if verzameling.aangeraakt:
            self.registry.record(
                tuple(dict.fromkeys(verzameling.vnummers)),
                frozenset(verzameling.fields),
                headers_of(Headers(scope=scope)),
            )


class Subgraph(MockRegistry):
    """A federation v2 subgraph mock; :attr:`schema` is its strawberry federation schema."""

    def __init__(
        self, name: str, population: Population, schema: strawberry.federation.Schema
    ) -> None:
        super().__init__(name, population)
        self.schema = schema
        endpoint = _Endpoint(self, _GraphQLView(schema, population))
        self.app = Starlette(
            routes=[
                Route("/graphql", endpoint),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "registry": self.name})

    def sdl(self) -> str:
        """Return the subgraph SDL (with federation directives), as a router would fetch it."""
        return str(self.schema.as_str())


def population_of(info: Info) -> Population:
    """Return the population behind the current request."""
    return info.context.population
