"""Compiled execution of planned documents: answers without graphql-core's per-field execution.

For each plan (document, operation, grant, directive variables) an answer builder is compiled
once (:mod:`.answer_shape`, :mod:`.answer_builders`) and kept in a bounded LRU beside the
plan cache. At run time the builder reads the persons fetched before execution and writes the
response ``data`` and ``errors`` exactly as strawberry's execution would, noting the same
accesses for the audit batch as the root resolvers (:mod:`.fields`) do. Whatever it does not
answer — introspection, other root fields, constructs it does not know, data it does not
expect — goes to strawberry: ``answer`` returns ``None``, and the reason is counted
(:attr:`CompiledAnswers.stats`) and set on the request span (``ketenpoort.execution``,
``ketenpoort.fallback``). Never a wrong answer: a fallback is only a slower one.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from graphql import DocumentNode, FragmentDefinitionNode, GraphQLSchema

from gateway.audit.model import FieldDecision
from gateway.errors import GatewayError
from gateway.execution.answer_builders import Builder, Fallback, Null, closures, generate, located
from gateway.execution.answer_shape import RootShape, ShapeBuilder, Unsupported
from gateway.execution.context import Access, RequestState
from gateway.execution.fields import nothing_given, out_of_scope_error, scope_unchecked_error
from gateway.planning.plan import RequestPlan, select_operation

Backend = Literal["tiered", "source", "closures"]
Answered = tuple[dict[str, Any] | None, list[dict[str, Any]]]


@dataclass(slots=True)
class _Root:
    shape: RootShape
    build: Builder | None


@dataclass(slots=True)
class Compiled:
    """One plan's answer builders (or why there are none), and how often they ran."""

    roots: list[_Root] | None
    reason: str | None
    compile_us: float
    uses: int = 0
    tier: Literal["closures", "source"] = "closures"


class CompiledAnswers:
    """Compiles, caches (LRU, ``size`` plans) and runs answer builders.

    ``tiered`` (the default) builds closures at a plan's first request — cheap to build, so a
    flood of distinct documents costs little — and generated source once the plan has answered
    ``promote_after`` requests: it runs faster but takes longer to compile (bench/ reports both).
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        size: int = 1024,
        backend: Backend = "tiered",
        promote_after: int = 8,
    ) -> None:
        self.schema = schema
        self.size = size
        self.backend = backend
        self.promote_after = promote_after
        self.enabled = True
        self._compiled: OrderedDict[int, tuple[RequestPlan, Compiled]] = OrderedDict()
        #: "compiled", "fallback" and "fallback:<reason>" per request; "compiles" per build.
        self.stats: Counter[str] = Counter()
        #: Build times (µs) per tier of the last plans built (bounded), for the benchmark.
        self.compile_times: dict[str, list[float]] = {"closures": [], "source": []}

    def __len__(self) -> int:
        """Plans whose builders are kept (at most ``size``)."""
        return len(self._compiled)

    def clear(self) -> None:
        """Forget every builder (the next request of each plan builds again)."""
        self._compiled.clear()

    def _timed(self, tier: str, started: int) -> float:
        elapsed = (time.perf_counter_ns() - started) / 1000
        times = self.compile_times[tier]
        if len(times) >= 4096:
            del times[:2048]
        times.append(elapsed)
        self.stats[f"compiles:{tier}"] += 1
        return elapsed

    def compiled(
        self,
        plan: RequestPlan,
        document: DocumentNode,
        operation_name: str | None,
        state: RequestState,
        variables: Mapping[str, Any],
    ) -> Compiled:
        """The plan's builders: from the LRU, promoted if hot, or built now."""
        key = id(plan)
        entry = self._compiled.get(key)
        if entry is not None and entry[0] is plan:
            self._compiled.move_to_end(key)
            compiled = entry[1]
            compiled.uses += 1
            if (
                compiled.tier == "closures"
                and compiled.roots is not None
                and (self.backend == "tiered" and compiled.uses > self.promote_after)
            ):
                started = time.perf_counter_ns()
                compiled.roots = _built([r.shape for r in compiled.roots], "source")
                compiled.tier = "source"
                self._timed("source", started)
            return compiled
        tier: Literal["closures", "source"] = "source" if self.backend == "source" else "closures"
        started = time.perf_counter_ns()
        try:
            operation = select_operation(document, operation_name)
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            builder = ShapeBuilder(self.schema, fragments, variables, state.grant)
            roots: list[_Root] | None = _built(builder.roots(operation, plan), tier)
            reason = None
        except Unsupported as unsupported:
            roots, reason = None, str(unsupported)
        compiled = Compiled(roots, reason, self._timed(tier, started), 1, tier)
        self._compiled[key] = (plan, compiled)
        if len(self._compiled) > self.size:
            self._compiled.popitem(last=False)
        return compiled

    def answer(
        self,
        state: RequestState,
        plan: RequestPlan,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any],
        span_attributes: dict[str, Any],
    ) -> Answered | None:
        """``(data, errors)`` as strawberry would answer, accesses noted on ``state``; or
        ``None``: strawberry must answer this request (the reason is counted)."""
        if not self.enabled:
            return None
        reason: str
        if plan.introspection:
            reason = "introspection"
        else:
            compiled = self.compiled(plan, document, operation_name, state, variables)
            if compiled.roots is not None:
                try:
                    data, errors, accesses, decisions = _run(compiled.roots, plan, state, variables)
                except (Fallback, KeyError, TypeError, ValueError, AttributeError) as odd:
                    # A record of a shape the builder does not expect (a key missing, a value
                    # of another kind): strawberry answers it, with whatever error it gives.
                    reason = f"data:{type(odd).__name__}"
                else:
                    state.accesses.extend(accesses)
                    state.request_decisions.extend(decisions)
                    self.stats["compiled"] += 1
                    span_attributes["ketenpoort.execution"] = "compiled"
                    return data, errors
            else:
                reason = compiled.reason or "unsupported"
        self.stats["fallback"] += 1
        self.stats[f"fallback:{reason}"] += 1
        span_attributes["ketenpoort.execution"] = "fallback"
        span_attributes["ketenpoort.fallback"] = reason
        return None


def _built(shapes: list[RootShape], tier: str) -> list[_Root]:
    """Builders for the person roots of ``shapes``: generated source or closures."""
    persons = [shape.person for shape in shapes if shape.person is not None]
    if tier == "source":
        builds = iter(generate(persons)[0] if persons else [])
    else:
        builds = iter([closures(person) for person in persons])
    return [_Root(s, next(builds) if s.person is not None else None) for s in shapes]


def _run(
    roots: list[_Root], request: RequestPlan, state: RequestState, variables: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[Access], list[FieldDecision]]:
    """The root fields, as :mod:`.fields`' ``one``/``many`` and graphql-core do them."""
    data: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    accesses: list[Access] = []
    request_decisions: list[FieldDecision] = []
    persons = state.persons
    for root in roots:
        shape = root.shape
        key = shape.key
        if shape.kind == "typename":
            data[key] = "Query"
            continue
        plan = shape.plan
        assert plan is not None
        if plan.refusal is not None:  # recorded for the request: it names nobody in the trail
            request_decisions.extend(plan.request_decisions)
            errors.append(located(plan.refusal, shape.locations, (None, key)))
            if shape.kind == "many":  # a non-null list: the whole data is null
                return None, errors, accesses, request_decisions
            data[key] = None
            continue
        build = root.build
        assert build is not None
        value = plan.argument_values(variables).get(shape.argument)
        if shape.kind == "one":
            if type(value) is not str:
                raise Fallback
            names = [value]
        else:
            if type(value) is not list or any(type(v) is not str for v in value):
                raise Fallback
            names = value
        results: list[Any] = []
        for v in names:
            outcome = persons.get(v)
            if outcome is None:
                raise Fallback
            if outcome.value is not None:
                decisions = request.decisions_with_failures(plan, outcome.failed)
                accesses.append(Access(plan, v, decisions))
                results.append(outcome.value)
            elif outcome.out_of_scope:
                accesses.append(Access(plan, v, plan.out_of_scope))
                results.append(out_of_scope_error(state.purpose.id))
            elif outcome.failed:
                accesses.append(Access(plan, v, nothing_given(plan.decisions)))
                results.append(scope_unchecked_error())
            else:
                accesses.append(Access(plan, v, plan.not_found))
                results.append(None)
        if shape.kind == "one":
            result = results[0]
            if type(result) is dict:
                try:
                    data[key] = build(result, (None, key), errors)
                except Null:
                    data[key] = None
            elif isinstance(result, GatewayError):
                errors.append(located(result, shape.locations, (None, key)))
                data[key] = None
            else:
                data[key] = None
            continue
        path = (None, key)
        items: list[Any] = []
        for index, result in enumerate(results):
            if type(result) is dict:
                try:
                    items.append(build(result, (path, index), errors))
                except Null:
                    items.append(None)
            elif isinstance(result, GatewayError):
                errors.append(located(result, shape.locations, (path, index)))
                items.append(None)
            else:
                items.append(None)
        data[key] = items
    return data, errors, accesses, request_decisions
