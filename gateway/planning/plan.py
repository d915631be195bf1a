"""The plan of one operation for one grant: what is asked, what is allowed, what is fetched.

Computed once per (document, operation, grant, directive variables) and cached, so the per-field
run-time cost of authorization is nil: resolvers read plain registry objects in which every
refused field has already been replaced by its error. The plan also carries, per root field, the
audit decisions that apply to each person it returns, so records are built from the plan and the
returned subjects, never per field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)

from gateway.audit.model import Decision, FieldDecision
from gateway.errors import Code, GatewayError

#: The type of a person: a root field returning it (one, a list, a search) is recorded per data
#: subject, read off the schema, so a new root field needs no row here. How each root field is
#: counted against caps and quotas is the one table
#: :data:`gateway.proportionality.counting.ROOT_COUNTING`.
PERSON_TYPE = "Vreemdeling"
INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


class Grant(Protocol):
    """What the plan needs of a policy grant: a decision per coordinate, with its reason."""

    @property
    def purpose_id(self) -> str: ...

    def decide(self, coordinate: str) -> tuple[bool, str]:
        """(allowed, the id of the rule or refusal reason that decided it)."""
        ...


@dataclass(slots=True)
class Overlay:
    """Refusal markers to lay over registry objects of one type, and the same for children."""

    markers: dict[str, GatewayError] = field(default_factory=dict)
    children: dict[str, Overlay] = field(default_factory=dict)

    def apply(self, value: Any) -> Any:
        """A copy of ``value`` (dict or list of dicts) with the markers laid over; never mutates."""
        if value is None or isinstance(value, BaseException):
            return value
        if isinstance(value, list):
            return [self.apply(item) for item in value]
        return self.apply_to_own(dict(value))

    def apply_to_own(self, value: dict[str, Any]) -> dict[str, Any]:
        """Lay the markers over ``value`` in place: only for a dict the caller just built and
        owns (the person object of this request); objects below it are copied by :meth:`apply`,
        since they may be shared with the cache."""
        if self.markers:
            # The executor raises an error value it resolves, and a raised exception keeps the
            # frames it passed through: each request gets copies, so the cached plan's own
            # markers never hold a request's frames (GatewayError.fresh).
            value.update({name: marker.fresh() for name, marker in self.markers.items()})
        for name, child in self.children.items():
            if name not in self.markers:
                value[name] = child.apply(value.get(name))
        return value


@dataclass(frozen=True, slots=True)
class RootPlan:
    """One root field (by response key) of the operation."""

    key: str
    field_name: str
    coordinate: str
    refusal: GatewayError | None
    #: The arguments as written: literals, variables, or lists mixing both. Evaluated per
    #: request (:meth:`argument_values`), since the plan is shared by requests with other
    #: variable values.
    arguments: tuple[tuple[str, ValueNode], ...]
    #: Decisions recorded for each person this root field returns (registry failures aside).
    decisions: tuple[FieldDecision, ...]
    #: The decision recorded for a person outside the purpose's row scope.
    out_of_scope: tuple[FieldDecision, ...]
    #: The decision recorded for a V-nummer no registry knows: its absence was disclosed.
    not_found: tuple[FieldDecision, ...]
    #: Decisions recorded once, without a data subject (aggregates, admin searches, refusals).
    request_decisions: tuple[FieldDecision, ...]
    #: Refusals to lay over the objects of a root that returns no persons.
    overlay: Overlay | None = None

    def argument_values(self, variables: Mapping[str, Any] | None) -> dict[str, Any]:
        """The arguments' values for one request (variables already coerced by graphql)."""
        given = dict(variables or {})
        values: dict[str, Any] = {}
        for name, node in self.arguments:
            if isinstance(node, VariableNode):
                if node.name.value in given:  # an unset variable is an absent argument
                    values[name] = given[node.name.value]
            else:
                values[name] = value_from_ast_untyped(node, given)
        return values


@dataclass(slots=True)
class RequestPlan:
    """The whole operation: root plans, fetch sets per registry, overlays, complexity."""

    roots: dict[str, RootPlan]
    fetch: dict[str, frozenset[str]]
    overlay: Overlay
    depth: int
    aliases: int
    fields: int
    introspection: bool
    _error_decisions: dict[tuple[str, frozenset[str]], tuple[FieldDecision, ...]] = field(
        default_factory=dict
    )
    _top_fields: dict[str, frozenset[str]] | None = None

    @property
    def top_fields(self) -> dict[str, frozenset[str]]:
        """Per registry, the person fields it gives (they become errors when it fails)."""
        if self._top_fields is None:
            self._top_fields = {
                registry: frozenset(path.split(".", 1)[0] for path in paths)
                for registry, paths in self.fetch.items()
            }
        return self._top_fields

    def decisions_with_failures(
        self, root: RootPlan, failed: frozenset[str]
    ) -> tuple[FieldDecision, ...]:
        """The root's decisions when the registries in ``failed`` did not answer (cached)."""
        if not failed:
            return root.decisions
        key = (root.key, failed)
        cached = self._error_decisions.get(key)
        if cached is None:
            cached = tuple(
                FieldDecision(
                    d.coordinate, d.path, Decision.ERROR, Code.REGISTRY_UNAVAILABLE, d.registry
                )
                if d.registry in failed and d.decision is Decision.GIVEN
                else d
                for d in root.decisions
            )
            self._error_decisions[key] = cached
        return cached


def select_operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    """The operation to run (validation has made sure it exists and is unambiguous)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for operation in operations:
        if operation_name is None or (operation.name and operation.name.value == operation_name):
            return operation
    raise GatewayError(Code.BAD_USER_INPUT, f"Unknown operation {operation_name!r}.")


def directive_variables(document: DocumentNode) -> tuple[str, ...]:
    """Names of variables used by ``@skip``/``@include``: they change the plan, so they key it."""
    names: list[str] = []

    def visit(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                if directive.name.value in ("skip", "include"):
                    for argument in directive.arguments or ():
                        if isinstance(argument.value, VariableNode):
                            names.append(argument.value.name.value)
            visit(getattr(selection, "selection_set", None))

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            visit(definition.selection_set)
    return tuple(sorted(set(names)))
