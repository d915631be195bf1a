"""The shape of a planned person query: per response key, what graphql-core would do there.

Built once per plan from the document, the operation, the plan's overlay and the schema, the way
graphql-core's CollectFields groups fields (fragments once per collection, ``@skip``/``@include``
with the coerced variables, merged response keys). Anything outside the person roots'
vocabulary raises :class:`Unsupported`: that plan is then executed by strawberry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    value_from_ast,
)

from gateway.errors import GatewayError
from gateway.planning.plan import Grant, Overlay, RequestPlan, RootPlan

#: Root fields the compiler answers; every other root falls back to strawberry.
COMPILED_ROOTS: dict[str, tuple[Literal["one", "many"], str]] = {
    "vreemdeling": ("one", "vnummer"),
    "vreemdelingen": ("many", "vnummers"),
}
#: Scalars whose serializer returns a value of this Python type unchanged (the fast path).
IDENTITY: dict[str, type] = {"String": str, "ID": str, "Date": str, "Boolean": bool}


class Unsupported(Exception):
    """The document uses something the compiler does not answer; the reason is the message."""


FieldKind = Literal["typename", "refused", "leaf", "object"]


@dataclass(slots=True)
class FieldShape:
    """One response key of an object."""

    key: str
    name: str
    kind: FieldKind
    #: Where an error here is located: every merged field node, in order.
    locations: Where
    nonnull: bool = False
    #: 0: not a list; 1: a list (items nullable unless ``item_nonnull``).
    is_list: bool = False
    item_nonnull: bool = False
    refusal: GatewayError | None = None
    #: For leaves: the GraphQL serializer, and the Python type it returns unchanged (or None).
    serialize: Any = None
    fast: type | None = None
    child: ObjectShape | None = None
    type_name: str = ""


@dataclass(slots=True)
class ObjectShape:
    type_name: str
    fields: list[FieldShape] = field(default_factory=list)


@dataclass(slots=True)
class RootShape:
    key: str
    kind: Literal["typename", "one", "many"]
    locations: Where
    plan: RootPlan | None = None
    person: ObjectShape | None = None
    #: The argument that names the persons.
    argument: str = ""


class Where:
    """The field nodes of one response key, and the ``locations`` graphql-core gives an error
    located at them — computed at the first error (most answers have none there)."""

    __slots__ = ("_locations", "_nodes")

    def __init__(self, nodes: Sequence[FieldNode]) -> None:
        self._nodes = list(nodes)
        self._locations: list[dict[str, int]] | None = None

    @property
    def locations(self) -> list[dict[str, int]]:
        if self._locations is None:
            formatted = GraphQLError("", nodes=self._nodes).formatted
            self._locations = [
                {"line": int(location["line"]), "column": int(location["column"])}
                for location in formatted.get("locations") or []
            ]
        return self._locations


class ShapeBuilder:
    """Builds the shapes of one operation (one plan)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        grant: Grant,
    ) -> None:
        self.schema = schema
        self.grant = grant
        self.fragments = fragments
        self.variables = variables

    # ---- CollectFields -------------------------------------------------------------------

    def _included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                raise Unsupported(f"directive @{name}")
            value: Any = None
            for argument in directive.arguments or ():
                if argument.name.value == "if":
                    value = value_from_ast(
                        argument.value, GraphQLNonNull(GraphQLBoolean), dict(self.variables)
                    )
            if not isinstance(value, bool):
                raise Unsupported("directive condition")
            if (name == "skip" and value) or (name == "include" and not value):
                return False
        return True

    def collect(
        self, selection_sets: Sequence[SelectionSetNode | None], type_name: str
    ) -> dict[str, list[FieldNode]]:
        """Field nodes by response key, in order; a fragment is visited once per collection."""
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def visit(selection_set: SelectionSetNode | None) -> None:
            if selection_set is None:
                return
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    if self._included(selection):
                        key = selection.alias.value if selection.alias else selection.name.value
                        grouped.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    if condition is not None and condition.name.value != type_name:
                        raise Unsupported("type condition of another type")
                    if self._included(selection):
                        visit(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in visited or not self._included(selection):
                        continue
                    visited.add(name)
                    fragment = self.fragments.get(name)
                    if fragment is None or fragment.type_condition.name.value != type_name:
                        raise Unsupported("fragment of another type")
                    visit(fragment.selection_set)
                else:  # pragma: no cover - graphql has no other selections
                    raise Unsupported("selection kind")

        for selection_set in selection_sets:
            visit(selection_set)
        return grouped

    # ---- shapes ----------------------------------------------------------------------------

    def object_shape(
        self, type_: GraphQLObjectType, nodes: Sequence[FieldNode], overlay: Overlay | None
    ) -> ObjectShape:
        shape = ObjectShape(type_.name)
        grouped = self.collect([n.selection_set for n in nodes], type_.name)
        markers = overlay.markers if overlay is not None else {}
        for key, field_nodes in grouped.items():
            name = field_nodes[0].name.value
            locations = Where(field_nodes)
            if name == "__typename":
                shape.fields.append(
                    FieldShape(key, name, "typename", locations, type_name=type_.name)
                )
                continue
            if name.startswith("__"):
                raise Unsupported("introspection below the root")
            definition = type_.fields.get(name)
            if definition is None or definition.args:
                raise Unsupported(f"field {type_.name}.{name}")
            out = FieldShape(key, name, "leaf", locations)
            gql_type: Any = definition.type
            if isinstance(gql_type, GraphQLNonNull):
                out.nonnull = True
                gql_type = gql_type.of_type
            if isinstance(gql_type, GraphQLList):
                out.is_list = True
                gql_type = gql_type.of_type
                if isinstance(gql_type, GraphQLNonNull):
                    out.item_nonnull = True
                    gql_type = gql_type.of_type
                if isinstance(gql_type, GraphQLList | GraphQLNonNull):
                    raise Unsupported("nested list")
            out.type_name = gql_type.name
            allowed, _ = self.grant.decide(f"{type_.name}.{name}")
            if name in markers:
                out.kind = "refused"
                out.refusal = markers[name]
            elif not allowed:  # the plan would have marked it: never answer it unmarked
                raise Unsupported("refusal not in plan")
            elif isinstance(gql_type, GraphQLObjectType):
                out.kind = "object"
                child_overlay = overlay.children.get(name) if overlay is not None else None
                out.child = self.object_shape(gql_type, field_nodes, child_overlay)
            elif isinstance(gql_type, GraphQLScalarType | GraphQLEnumType):
                out.serialize = gql_type.serialize
                out.fast = (
                    IDENTITY.get(gql_type.name) if isinstance(gql_type, GraphQLScalarType) else None
                )
            else:
                raise Unsupported(f"type {gql_type}")
            shape.fields.append(out)
        return shape

    def roots(self, operation: OperationDefinitionNode, plan: RequestPlan) -> list[RootShape]:
        if operation.operation.value != "query":
            raise Unsupported(f"{operation.operation.value} operation")
        if operation.directives:
            raise Unsupported("operation directives")
        query_type = self.schema.query_type
        assert query_type is not None
        shapes: list[RootShape] = []
        for key, nodes in self.collect([operation.selection_set], query_type.name).items():
            name = nodes[0].name.value
            locations = Where(nodes)
            if name == "__typename":
                shapes.append(RootShape(key, "typename", locations))
                continue
            if name not in COMPILED_ROOTS:
                raise Unsupported(f"root {name}")
            kind, argument = COMPILED_ROOTS[name]
            root = plan.roots.get(key)
            if root is None or root.field_name != name:
                raise Unsupported("root not in plan")
            person_type = query_type.fields[name].type
            while isinstance(person_type, GraphQLNonNull | GraphQLList):
                person_type = person_type.of_type
            assert isinstance(person_type, GraphQLObjectType)
            person = (
                None
                if root.refusal is not None
                else self.object_shape(person_type, nodes, plan.overlay)
            )
            shapes.append(RootShape(key, kind, locations, root, person, argument))
        return shapes
