"""Shared machinery of the federation subgraph mocks (COA, IND).

Each subgraph is a Starlette app with ``/graphql`` (strawberry's ASGI ``GraphQL`` view, POST and
GET) and ``GET /health``. Faults apply to ``/graphql`` only. One :class:`ServedCall` is recorded
per HTTP request that resolved entities or statistics: the V-nummers asked (from the
representations or root arguments, in order, duplicates collapsed) and the dotted leaf paths
selected under the entity (inline fragments and fragment spreads are followed, ``__typename`` is
not data and is left out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import strawberry
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key
from strawberry.types import ExecutionContext
from strawberry.types.base import get_object_definition
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from mocks.data import Population
from mocks.registry import MockRegistry, headers_of

T = TypeVar("T")

#: ``extensions.code`` of an ``_entities`` refusal: a ``__typename`` this subgraph has no entity
#: of, or a representation that is not an object with its ``__typename`` and key fields.
UNKNOWN_ENTITY_TYPE: Final = "UNKNOWN_ENTITY_TYPE"
INVALID_REPRESENTATION: Final = "INVALID_REPRESENTATION"

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


def lookup(
    info: Info, vnummer: strawberry.ID, build: Callable[[Population, str], T | None]
) -> T | None:
    """Resolve one person by V-nummer with ``build`` (None for an unknown one), recording it.

    The one path of ``Query.vreemdeling`` and of ``_entities`` in every subgraph mock.
    """
    noteer(info, [str(vnummer)])
    return build(info.context.population, str(vnummer))


class SubgraphSchema(strawberry.federation.Schema):
    """A Federation v2 subgraph schema whose ``_entities`` refuses a bad representation with a
    GraphQL error at its index, a clear message and a stable code (:data:`UNKNOWN_ENTITY_TYPE`,
    :data:`INVALID_REPRESENTATION`), never Python's KeyError or TypeError text.

    A valid representation is passed on with its ``__typename`` and key fields only.
    """

    def __init__(self, name: str, query: type, entities: Sequence[type]) -> None:
        self.subgraph = name
        self.entity_keys: dict[str, tuple[tuple[str, ...], ...]] = {}
        for entity in entities:
            definition = get_object_definition(entity, strict=True)
            keys = tuple(
                tuple(d.fields.split()) for d in definition.directives or () if isinstance(d, Key)
            )
            self.entity_keys[definition.name] = keys
        # A gateway sends the same few documents over and over (one per field set): parse and
        # validate each text once (strawberry keeps one LRU per maxsize across the per-request
        # extension instances). Bounded, as the texts come from whoever calls the mock.
        super().__init__(
            query=query,
            types=list(entities),
            extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256)],
        )

    def entities_resolver(
        self, info: strawberry.Info, representations: list[FederationAny]
    ) -> list[FederationAny]:
        # The signature is the field's: strawberry reads ``[_Any!]!`` from these annotations.
        results: list[Any] = []
        for index, representation in enumerate(representations):
            checked = self._checked(index, representation)
            if isinstance(checked, GraphQLError):
                results.append(checked)  # completed as this item's error, at its path
            else:
                results.extend(super().entities_resolver(info, [FederationAny(checked)]))
        return results

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log unexpected errors only: a refused representation is the caller's, not ours."""
        ours = (UNKNOWN_ENTITY_TYPE, INVALID_REPRESENTATION)
        unexpected = [e for e in errors if (e.extensions or {}).get("code") not in ours]
        if unexpected:
            super().process_errors(unexpected, execution_context)

    def _checked(self, index: int, representation: object) -> dict[str, Any] | GraphQLError:
        if not isinstance(representation, dict):
            return _refusal(INVALID_REPRESENTATION, f"Representation {index} is not an object.")
        typename = representation.get("__typename")
        if not isinstance(typename, str):
            return _refusal(
                INVALID_REPRESENTATION, f"Representation {index} has no __typename string."
            )
        keys = self.entity_keys.get(typename)
        if keys is None:
            known = ", ".join(sorted(self.entity_keys)) or "none"
            return _refusal(
                UNKNOWN_ENTITY_TYPE,
                f"{typename!r} is not an entity of subgraph {self.subgraph} (entities: {known}).",
            )
        for key in keys:
            if all(isinstance(representation.get(name), str) for name in key):
                return {"__typename": typename, **{name: representation[name] for name in key}}
        wanted = " or ".join(", ".join(key) for key in keys)
        return _refusal(
            INVALID_REPRESENTATION,
            f"Representation {index} of {typename} lacks its key field(s) as strings: {wanted}.",
        )


def _refusal(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


class _GraphQLView(GraphQL[SubgraphContext, None]):
    """strawberry's ASGI view with the mock's context."""

    def __init__(self, schema: SubgraphSchema, population: Population) -> None:
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

    def __init__(self, name: str, population: Population, schema: SubgraphSchema) -> None:
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
