"""What the explorer shows: the policy's organisations and purposes, and a caller's schema tree.

Pure functions of the loaded policy and the GraphQL schema (no I/O), returning JSON-ready dicts
for the development-only endpoints of :mod:`gateway.http.explorer`. Every field of the tree
carries the policy's decision for its coordinate (``Grant.decide``: the deciding rule id or the
refusal code) and a Dutch explanation, so the integrator sees why a field is given or refused.
"""

from __future__ import annotations

from typing import Any, Final

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
)
from graphql.pyutils import Undefined

from gateway.policy.model import (
    AGGREGATES_ONLY,
    ART9_NO_BASIS,
    ART10_NO_BASIS,
    DEFAULT_DENY,
    PURPOSE_FORBIDDEN,
    PURPOSE_SUSPENDED,
    Grant,
    Policy,
    Purpose,
    is_criminal_data,
    is_special_category,
    legal_refusal,
)

#: Deeper than any path of the schema; a guard against a future self-referencing type.
MAX_DEPTH: Final = 8


def describe_purpose(purpose: Purpose) -> dict[str, Any]:
    """A purpose as the explorer shows it (its processing activities feed ``X-Verwerking``)."""
    return {
        "id": purpose.id,
        "description": purpose.omschrijving,
        "status": purpose.status,
        "status_reason": purpose.status_reason,
        "activities": list(purpose.processing_activities),
        "special_category_basis": purpose.bijzondere_grondslag,
        "criminal_data_basis": purpose.strafrechtelijke_grondslag,
        "aggregates_only": purpose.aggregates_only,
    }


def grants_overview(policy: Policy) -> dict[str, Any]:
    """Organisations with their roles and, per role, the purposes some rule grants it."""
    organisations = []
    for organisation in policy.organisations.values():
        roles = [
            {"id": role, "purposes": sorted(policy.purposes_for(organisation.id, [role]))}
            for role in organisation.roles
        ]
        organisations.append({"id": organisation.id, "name": organisation.naam, "roles": roles})
    return {
        "policy_version": policy.short_version,
        "organisations": organisations,
        "purposes": {p.id: describe_purpose(p) for p in policy.purposes.values()},
    }


def _legal_text(code: str, purpose: Purpose) -> str:
    if code == ART9_NO_BASIS:
        return (
            f"bijzonder persoonsgegeven (AVG art. 9) en doelbinding {purpose.id} heeft geen "
            f"grondslag voor bijzondere persoonsgegevens ({code})"
        )
    if code == ART10_NO_BASIS:
        return (
            f"strafrechtelijk gegeven (AVG art. 10) en doelbinding {purpose.id} heeft geen "
            f"grondslag voor strafrechtelijke gegevens ({code})"
        )
    return f"doelbinding {purpose.id} geeft alleen geaggregeerde aantallen ({code})"


def explanation(policy: Policy, grant: Grant, coordinate: str) -> str:
    """Why ``coordinate`` is given or refused to this grant, in Dutch, naming the rule or code."""
    given, reason = grant.decide(coordinate)
    purpose = grant.purpose
    if given:
        return f"toegestaan door regel {reason}"
    if reason in (ART9_NO_BASIS, ART10_NO_BASIS, AGGREGATES_ONLY):
        return _legal_text(reason, purpose)
    if reason in (PURPOSE_SUSPENDED, PURPOSE_FORBIDDEN):
        word = "opgeschort" if reason == PURPOSE_SUSPENDED else "verboden"
        # The status reason itself is shown once with the purpose, not under every field.
        return f"doelbinding {purpose.id} is {word} ({reason})"
    if reason == DEFAULT_DENY:
        text = f"geen regel staat dit veld toe ({DEFAULT_DENY})"
    else:
        text = f"verboden door regel {reason}"
    # The legal safeguard may refuse the field as well: say so, it is the reason that remains
    # whatever the rules ever say.
    legal = legal_refusal(coordinate, policy.coordinates.get(coordinate, ""), purpose)
    if legal is not None:
        text += "; bovendien " + _legal_text(legal, purpose)
    return text


def _unwrap(type_: Any) -> tuple[Any, bool]:
    """The named type below NonNull/List wrappers, and whether a list wraps it."""
    listed = False
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        listed = listed or isinstance(type_, GraphQLList)
        type_ = type_.of_type
    return type_, listed


def _arguments(field: GraphQLField) -> list[dict[str, Any]]:
    result = []
    for name, argument in field.args.items():
        named, listed = _unwrap(argument.type)
        enum_values = list(named.values) if isinstance(named, GraphQLEnumType) else None
        result.append(
            {
                "name": name,
                "type": str(argument.type),
                "named_type": named.name,
                "required": isinstance(argument.type, GraphQLNonNull)
                and argument.default_value is Undefined,
                "list": listed,
                "enum_values": enum_values,
            }
        )
    return result


def schema_tree(schema: GraphQLSchema, policy: Policy, grant: Grant) -> list[dict[str, Any]]:
    """Every field reachable from ``Query``, each marked with the grant's decision.

    A node: ``name``, ``coordinate``, ``type`` (as in SDL), ``allowed``, ``reason`` (rule id or
    refusal code), ``explanation``, ``category`` (``"special"``, ``"criminal"`` or ``None``),
    ``arguments`` and ``fields`` (``None`` for a leaf). Refused fields are included: the tree shows
    the whole schema, not only what the caller may see (that is ``ketenpoort schema``).
    """

    def fields_of(type_: GraphQLObjectType, path: tuple[str, ...]) -> list[dict[str, Any]]:
        nodes = []
        for name, field in type_.fields.items():
            coordinate = f"{type_.name}.{name}"
            named, _ = _unwrap(field.type)
            allowed, reason = grant.decide(coordinate)
            category = None
            if is_special_category(coordinate, named.name):
                category = "special"
            elif is_criminal_data(coordinate, named.name):
                category = "criminal"
            children = None
            if isinstance(named, GraphQLObjectType):
                # A type already on the path would recurse forever: show it as a leaf-less group.
                recursive = named.name in path or len(path) >= MAX_DEPTH
                children = [] if recursive else fields_of(named, (*path, named.name))
            nodes.append(
                {
                    "name": name,
                    "coordinate": coordinate,
                    "type": str(field.type),
                    "allowed": allowed,
                    "reason": reason,
                    "explanation": explanation(policy, grant, coordinate),
                    "category": category,
                    "arguments": _arguments(field),
                    "fields": children,
                }
            )
        return nodes

    query = schema.query_type
    return [] if query is None else fields_of(query, (query.name,))
