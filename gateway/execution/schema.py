"""The gateway's GraphQL schema: the domain types plus the root fields.

Root resolvers are thin: they hand the request's plan and arguments to
:mod:`gateway.execution.fields`, which fetches what the plan permits and returns plain registry
objects with refusals in place.
"""

from __future__ import annotations

from functools import cache
from operator import getitem
from typing import Any

import strawberry
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLSchema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from gateway.domain import (
    SCALARS,
    AuditRegel,
    Date,
    StatistiekCel,
    StatistiekGroepering,
    Vreemdeling,
)
from gateway.execution import fields
from gateway.internals import graphql_core_schema


@strawberry.type
class Query:
    @strawberry.field(description="One person by V-nummer (10 digits).")
    def vreemdeling(self, info: Info, vnummer: strawberry.ID) -> Vreemdeling | None:
        # Synchronous: the persons an operation names are fetched before it executes.
        return fields.one(info, vnummer)  # type: ignore[no-any-return]  # a registry dict

    @strawberry.field(description="Several persons by V-nummer; at most the purpose's cap.")
    def vreemdelingen(self, info: Info, vnummers: list[strawberry.ID]) -> list[Vreemdeling | None]:
        return fields.many(info, vnummers)

    @strawberry.field(description="Exact search on surname and birth date; no wildcards.")
    async def zoekVreemdelingen(  # noqa: N802 - GraphQL name, as in the Haal Centraal APIs
        self, info: Info, geslachtsnaam: str, geboortedatum: Date
    ) -> list[Vreemdeling]:
        return await fields.search(info, geslachtsnaam, geboortedatum)

    @strawberry.field(description="Reception counts; cells under the threshold are suppressed.")
    async def opvangstatistiek(
        self, info: Info, peildatum: Date, groepering: StatistiekGroepering
    ) -> list[StatistiekCel]:
        return await fields.statistics(info, peildatum, groepering)

    @strawberry.field(description="Search the accountability trail (security team and FG only).")
    async def auditZoeken(  # noqa: N802 - GraphQL name
        self,
        info: Info,
        vnummer: strawberry.ID | None = None,
        medewerker: str | None = None,
        organisatie: str | None = None,
        doelbinding: str | None = None,
        sinds: str | None = None,
        tot: str | None = None,
    ) -> list[AuditRegel]:
        return await fields.audit_search(
            info, vnummer, medewerker, organisatie, doelbinding, sinds, tot
        )


def schema_config() -> StrawberryConfig:
    """The one configuration of the gateway's schema.

    Registry objects are dicts keyed by GraphQL names: they are read with getitem, so there is no
    conversion per field and no attribute magic, and a missing key fails closed (masked).
    """
    return StrawberryConfig(default_resolver=getitem, scalar_map=SCALARS)


@cache
def graphql_schema() -> GraphQLSchema:
    """The full GraphQL schema (for coordinates, SDL and filtering; not for execution)."""
    return graphql_core_schema(strawberry.Schema(query=Query, config=schema_config()))


def _named_type(type_: Any) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def schema_coordinates(schema: GraphQLSchema) -> dict[str, str]:
    """Every field coordinate of the schema's own types (``Type.field``) → its named type.

    Introspection types (``__Schema`` ...) are left out: they are governed separately.
    """
    coordinates: dict[str, str] = {}
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or not isinstance(type_, GraphQLObjectType):
            continue
        for field_name, field in type_.fields.items():
            coordinates[f"{name}.{field_name}"] = _named_type(field.type).name
    return coordinates


def non_null_coordinates(schema: GraphQLSchema) -> frozenset[str]:
    """The ``Type.field`` coordinates of non-null fields, root fields left out.

    A refused one nulls its parent (:mod:`gateway.policy.non_null` refuses policies that would);
    a refused non-null *root* field is refused per request instead (gateway.pipeline.refusals).
    """
    root = schema.query_type.name if schema.query_type is not None else None
    return frozenset(
        f"{name}.{field_name}"
        for name, type_ in schema.type_map.items()
        if name != root and not name.startswith("__") and isinstance(type_, GraphQLObjectType)
        for field_name, field in type_.fields.items()
        if isinstance(field.type, GraphQLNonNull)
    )
