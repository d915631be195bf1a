"""What a caller may see of the schema: the schema filtered by its grant.

Introspection is answered from this filtered schema, so a partner generating a client sees only
what its purpose allows, and a refused field (``religie`` for TOEZICHT_VW, say) is invisible.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    execute,
    print_schema,
)

from gateway.policy.model import Grant


def filtered_schema(schema: GraphQLSchema, allowed: Collection[str]) -> GraphQLSchema | None:
    """A schema with only the allowed coordinates (and the types they reach); None if empty."""
    allowed = frozenset(allowed)
    built: dict[str, GraphQLObjectType | None] = {}

    def visible_fields(type_: GraphQLObjectType) -> dict[str, GraphQLField]:
        fields: dict[str, GraphQLField] = {}
        for name, field in type_.fields.items():
            if f"{type_.name}.{name}" not in allowed:
                continue
            mapped = remap(field.type)
            if mapped is None:
                continue
            fields[name] = GraphQLField(
                mapped,
                args=field.args,
                resolve=field.resolve,
                description=field.description,
                deprecation_reason=field.deprecation_reason,
            )
        return fields

    def object_type(type_: GraphQLObjectType) -> GraphQLObjectType | None:
        if type_.name in built:
            return built[type_.name]
        if not any(f"{type_.name}.{name}" in allowed for name in type_.fields):
            built[type_.name] = None
            return None
        new = GraphQLObjectType(
            type_.name, fields=lambda: visible_fields(type_), description=type_.description
        )
        built[type_.name] = new
        return new

    def remap(type_: Any) -> Any:
        if isinstance(type_, GraphQLNonNull):
            inner = remap(type_.of_type)
            return None if inner is None else GraphQLNonNull(inner)
        if isinstance(type_, GraphQLList):
            inner = remap(type_.of_type)
            return None if inner is None else GraphQLList(inner)
        if isinstance(type_, GraphQLObjectType):
            return object_type(type_)
        named: GraphQLNamedType = type_
        return named

    query = schema.query_type
    if query is None:
        return None
    root = object_type(query)
    if root is None:
        return None
    result = GraphQLSchema(query=root, directives=schema.directives)
    # Drop types whose every field was dropped for want of a visible type.
    if not root.fields:
        return None
    return result


def visible_sdl(schema: GraphQLSchema, allowed: Collection[str]) -> str:
    """The SDL a caller with this grant sees (``ketenpoort schema``)."""
    filtered = filtered_schema(schema, allowed)
    return "" if filtered is None else print_schema(filtered)


class VisibleSchemas:
    """The schema each grant may see, built once per grant: introspection and validation
    messages are answered from it."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self._schema = schema
        self._by_grant: dict[tuple[str, frozenset[str], str], GraphQLSchema | None] = {}

    def schema_for(self, grant: Grant) -> GraphQLSchema | None:
        """The grant's filtered schema; ``None`` when it may see nothing."""
        key = (grant.organisation, grant.roles, grant.purpose.id)
        if key not in self._by_grant:
            self._by_grant[key] = filtered_schema(self._schema, grant.allowed)
        return self._by_grant[key]


def introspect(
    schema: GraphQLSchema | None,
    document: DocumentNode,
    variables: Mapping[str, Any],
    operation_name: str | None,
) -> ExecutionResult:
    """Answer an introspection operation from the caller's visible ``schema``."""
    if schema is None:
        return ExecutionResult(
            data=None, errors=[GraphQLError("Nothing in this schema is visible to you.")]
        )
    result = execute(
        schema, document, variable_values=dict(variables), operation_name=operation_name
    )
    assert isinstance(result, ExecutionResult)  # no async resolvers in introspection
    return result
