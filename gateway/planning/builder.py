"""The document walk that builds a plan: :class:`PlanBuilder` flattens fragments, applies
``@skip``/``@include``, asks the grant about every field, and collects the fetch sets, the
refusal overlays, the audit decisions and the complexity counts that
:func:`build_plan` puts into a :class:`~gateway.planning.plan.RequestPlan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)

from gateway.audit.model import Decision, FieldDecision
from gateway.domain import REGISTRY_OF_FIELD
from gateway.errors import Code, GatewayError
from gateway.planning.plan import (
    INTROSPECTION_ROOTS,
    PERSON_TYPE,
    Grant,
    Overlay,
    RequestPlan,
    RootPlan,
    select_operation,
)


class PlanBuilder:
    """Walks one operation of a document for one grant; its fields are the plan's parts."""

    def __init__(
        self,
        document: DocumentNode,
        coordinates: Mapping[str, str],
        grant: Grant,
        variables: Mapping[str, Any] | None,
    ) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.coordinates = coordinates
        self.grant = grant
        self.variables = variables or {}
        self.fetch: dict[str, set[str]] = {}
        self.overlay = Overlay()
        self.aliases = 0
        self.fields = 0
        self.depth = 0
        self.refusals: dict[str, GatewayError] = {}

    def included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            value: Any = None
            for argument in directive.arguments or ():
                if argument.name.value == "if":
                    value = self.literal(argument.value)
            if (name == "skip" and value is True) or (name == "include" and value is not True):
                return False
        return True

    def literal(self, node: ValueNode) -> Any:
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value)
        if isinstance(node, BooleanValueNode):
            return node.value
        return value_from_ast_untyped(node, dict(self.variables))

    def collect(
        self, selection_set: SelectionSetNode | None, visited: set[str] | None = None
    ) -> list[FieldNode]:
        """The field nodes of a selection set, fragments flattened, directives applied.

        A named fragment is expanded once per selection set, as graphql-core collects fields:
        spreading it again adds nothing, and expanding it again would let a small document of
        fragments that spread each other twice cost exponential work.
        """
        found: list[FieldNode] = []
        if selection_set is None:
            return found
        visited = set() if visited is None else visited
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if self.included(selection):
                    found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self.included(selection):
                    found.extend(self.collect(selection.selection_set, visited))
            elif isinstance(selection, FragmentSpreadNode) and self.included(selection):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in visited:
                    visited.add(name)
                    found.extend(self.collect(fragment.selection_set, visited))
        return found

    def refusal(self, coordinate: str, reason: str) -> GatewayError:
        error = self.refusals.get(coordinate)
        if error is None:
            error = GatewayError(
                Code.FIELD_NOT_PERMITTED,
                f"{coordinate} is not permitted for purpose {self.grant.purpose_id}.",
                coordinate=coordinate,
                doelbinding=self.grant.purpose_id,
            )
            self.refusals[coordinate] = error
        return error

    def walk(
        self,
        selection_set: SelectionSetNode | None,
        type_name: str,
        path: str,
        fetch_path: str,
        registry: str | None,
        overlay: Overlay,
        depth: int,
        out: list[FieldDecision],
    ) -> int:
        """Walk one selection set; return how many registry leaves it asks for."""
        self.depth = max(self.depth, depth)
        leaves = 0
        for node in self.collect(selection_set):
            name = node.name.value
            self.fields += 1
            if node.alias is not None:
                self.aliases += 1
            if name == "__typename":
                continue
            coordinate = f"{type_name}.{name}"
            child_type = self.coordinates.get(coordinate)
            if child_type is None:  # validation already refused unknown fields
                continue
            field_registry = registry
            if type_name == PERSON_TYPE:
                # The V-nummer is the key the caller gave: no registry hands it out.
                field_registry = None if name == "vnummer" else REGISTRY_OF_FIELD.get(name)
            child_path = f"{path}.{name}"
            allowed, rule = self.grant.decide(coordinate)
            if not allowed:
                out.append(
                    FieldDecision(
                        coordinate,
                        child_path,
                        Decision.REFUSED,
                        f"{Code.FIELD_NOT_PERMITTED}:{rule}",
                        field_registry,
                    )
                )
                overlay.markers[name] = self.refusal(coordinate, rule)
                continue
            out.append(FieldDecision(coordinate, child_path, Decision.GIVEN, rule, field_registry))
            child_fetch = f"{fetch_path}.{name}" if fetch_path else name
            if node.selection_set is None:
                if field_registry is not None and child_fetch != "vnummer":
                    self.fetch.setdefault(field_registry, set()).add(child_fetch)
                    leaves += 1
                continue
            child_overlay = overlay.children.get(name) or Overlay()
            below = self.walk(
                node.selection_set,
                child_type,
                child_path,
                child_fetch,
                field_registry,
                child_overlay,
                depth + 1,
                out,
            )
            if below == 0 and field_registry is not None:
                # An object asked for, but none of its fields (only __typename, skipped or
                # refused ones): ask the registry whether it is there, and nothing more.
                self.fetch.setdefault(field_registry, set()).add(f"{child_fetch}.__typename")
                below = 1
            leaves += below
            if child_overlay.markers or child_overlay.children:
                overlay.children[name] = child_overlay
        return leaves

    def root(self, node: FieldNode, operation_type: str) -> RootPlan:
        name = node.name.value
        key = node.alias.value if node.alias else name
        coordinate = f"{operation_type}.{name}"
        arguments = tuple((arg.name.value, arg.value) for arg in node.arguments or ())
        allowed, rule = self.grant.decide(coordinate)
        if not allowed:
            # A refused root names nobody in the trail: the caller may not ask about persons
            # through it, so no data subject is recorded for what it names (only the request).
            refused = FieldDecision(
                coordinate, key, Decision.REFUSED, f"{Code.FIELD_NOT_PERMITTED}:{rule}", None
            )
            return RootPlan(
                key, name, coordinate, self.refusal(coordinate, rule), arguments,
                decisions=(), out_of_scope=(), not_found=(), request_decisions=(refused,),
            )  # fmt: skip
        decisions: list[FieldDecision] = [
            FieldDecision(coordinate, key, Decision.GIVEN, rule, None)
        ]
        result_type = self.coordinates[coordinate]
        overlay = self.overlay if result_type == PERSON_TYPE else Overlay()
        self.walk(node.selection_set, result_type, key, "", None, overlay, 1, decisions)
        if result_type != PERSON_TYPE:  # names and returns no person: recorded per request
            return RootPlan(
                key, name, coordinate, None, arguments,
                decisions=(), out_of_scope=(), not_found=(),
                request_decisions=tuple(decisions), overlay=overlay,
            )  # fmt: skip
        return RootPlan(
            key, name, coordinate, None, arguments,
            decisions=tuple(decisions),
            out_of_scope=(
                FieldDecision(coordinate, key, Decision.REFUSED, Code.SUBJECT_OUT_OF_SCOPE, "BVV"),
            ),
            not_found=(FieldDecision(coordinate, key, Decision.GIVEN, "NOT_FOUND", None),),
            request_decisions=(),
        )  # fmt: skip


def build_plan(
    document: DocumentNode,
    operation_name: str | None,
    coordinates: Mapping[str, str],
    grant: Grant,
    variables: Mapping[str, Any] | None = None,
) -> RequestPlan:
    """Plan an operation for a grant. Pure: same inputs, same plan."""
    operation = select_operation(document, operation_name)
    builder = PlanBuilder(document, coordinates, grant, variables)
    operation_type = operation.operation.value.capitalize()
    roots: dict[str, RootPlan] = {}
    introspection = False
    for node in builder.collect(operation.selection_set):
        builder.fields += 1
        if node.alias is not None:
            builder.aliases += 1
        if node.name.value == "__typename":
            continue
        if node.name.value in INTROSPECTION_ROOTS:
            introspection = True
            continue
        plan = builder.root(node, operation_type)
        key = plan.key
        if key in roots:  # the same response key twice: graphql merges them; so do we
            previous = roots[key]
            plan = replace(
                plan,
                refusal=plan.refusal or previous.refusal,
                decisions=tuple(dict.fromkeys(previous.decisions + plan.decisions)),
                request_decisions=tuple(
                    dict.fromkeys(previous.request_decisions + plan.request_decisions)
                ),
            )
        roots[key] = plan
    return RequestPlan(
        roots=roots,
        fetch={registry: frozenset(paths) for registry, paths in builder.fetch.items()},
        overlay=builder.overlay,
        depth=builder.depth,
        aliases=builder.aliases,
        fields=builder.fields,
        introspection=introspection,
    )
