"""Differential proof: compiled answers are strawberry's answers, and record the same trail.

Hypothesis generates batches of documents over the person roots — aliases, named and inline
fragments, ``@skip``/``@include`` with literals and variables, merged response keys, nested
lists, ``__typename``, persons in scope, out of scope and unknown, literal and variable
V-nummers — and runs every document for every principal the default policy names (each
organisation, role and purpose it grants; the two whose purpose is forbidden or suspended are
refused at admission, before anything executes, so they have nothing to compare), with and
without injected registry faults (BVV, COA or IND down). Each request goes through the
gateway twice: once with the compiled builders switched off (strawberry's execution: the
oracle) and once with them on. The answers must be the same JSON text (``json.dumps``, key
order kept) with the same status and headers, the audit batches the same records, and the
span must say how the request was executed. The compiler's own output is never the reference.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission.tokens import Principal
from gateway.assembly.runtime import Running, start_gateway
from gateway.audit.model import AuditBatch
from gateway.audit.tree import TreeReader
from gateway.execution.cache import open_cache
from mocks import Registries
from tests.support import settings_for
from tests.test_authorization import PERSON, is_object, object_type, unwrap
from tests.test_property_authorization import ALIASES, FLAGS, GRANTED, POLICY, Case, person_pool

#: Examples x documents per example = documents; each runs for every admitted principal (13),
#: twice: 2,000 documents, 26,000 comparisons.
EXAMPLES = 100
DOCUMENTS_PER_EXAMPLE = 20
FAULTS = (None, None, None, None, "BVV", "COA", "IND")
#: Documents the compiler must leave to strawberry (counted as fallbacks, still compared).
ODD_DOCUMENTS = (
    "{ __schema { queryType { name } } }",
    'query { zoekVreemdelingen(geslachtsnaam: "Jansen", geboortedatum: "1990-01-01") { vnummer } }',
)


@st.composite
def documents(draw: st.DrawFn, persons: list[str]) -> Case:
    """A document over the person roots, small enough to run 2,000 of them for every principal
    through strawberry: aliases (also colliding with field names), merged response keys,
    named and inline fragments (with and without a type condition, nested), ``@skip`` and
    ``@include`` with literals and a variable, ``__typename``, nested objects and lists,
    V-nummers as literals, variables and lists mixing both."""
    fragments: list[str] = []
    variables: dict[str, Any] = {}
    definitions: dict[str, str] = {}

    def flag() -> str:
        chosen = draw(st.sampled_from(FLAGS))
        if "$yes" in chosen:
            definitions["yes"] = "Boolean!"
            variables.setdefault("yes", draw(st.booleans()))
        return chosen

    def selection(type_name: str, depth: int) -> str:
        fields = object_type(type_name).fields
        names = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=4, unique=True))
        parts: list[str] = []
        for name in names:
            alias = draw(st.sampled_from(ALIASES)) if draw(st.integers(0, 4)) == 0 else None
            text = f"{alias}: {name}" if alias else name
            text += f" {flag()}"
            named = unwrap(fields[name].type)[0].name
            if is_object(named):
                text += f" {{ {selection(named, depth + 1)} }}"
            wrap = draw(st.sampled_from(("plain", "plain", "inline", "bare-inline", "named")))
            if wrap == "inline":
                text = f"... on {type_name} {flag()} {{ {text} }}"
            elif wrap == "bare-inline":
                text = f"... {{ {text} }}"
            elif wrap == "named":
                fragment = f"F{len(fragments)}"
                fragments.append(f"fragment {fragment} on {type_name} {{ {text} }}")
                text = f"...{fragment} {flag()}"
            parts.append(text)
        if draw(st.integers(0, 3)) == 0:
            parts.append("__typename")
        if draw(st.integers(0, 4)) == 0:
            parts.append(draw(st.sampled_from(parts)))  # the same selection twice: merged
        return " ".join(parts)

    roots: list[str] = []
    for i in range(draw(st.integers(1, 2))):
        key = "" if i == 0 and draw(st.booleans()) else f"{draw(st.sampled_from(ALIASES))}{i}: "
        if draw(st.booleans()):
            vnummer = draw(st.sampled_from(persons))
            if draw(st.booleans()):
                definitions[f"v{i}"] = "ID!"
                variables[f"v{i}"] = vnummer
                argument = f"$v{i}"
            else:
                argument = json.dumps(vnummer)
            root = f"{key}vreemdeling(vnummer: {argument})"
        else:
            vnummers = draw(st.lists(st.sampled_from(persons), max_size=3))
            mode = draw(st.sampled_from(("literal", "variable", "mixed")))
            if mode == "variable":
                definitions[f"vs{i}"] = "[ID!]!"
                variables[f"vs{i}"] = vnummers
                argument = f"$vs{i}"
            elif mode == "mixed":
                items = []
                for j, vnummer in enumerate(vnummers):
                    if j % 2:
                        definitions[f"m{i}_{j}"] = "ID!"
                        variables[f"m{i}_{j}"] = vnummer
                        items.append(f"$m{i}_{j}")
                    else:
                        items.append(json.dumps(vnummer))
                argument = f"[{', '.join(items)}]"
            else:
                argument = json.dumps(vnummers)
            root = f"{key}vreemdelingen(vnummers: {argument})"
        root += f" {flag()} {{ {selection(PERSON, 1)} }}"
        if draw(st.integers(0, 5)) == 0:
            fragment = f"Q{i}"
            fragments.append(f"fragment {fragment} on Query {{ {root} }}")
            root = f"...{fragment}"
        roots.append(root)
    if draw(st.integers(0, 5)) == 0:
        roots.append("__typename")
    header = ", ".join(f"${name}: {type_}" for name, type_ in definitions.items())
    operation = f"query Q{'(' + header + ')' if header else ''} {{ {' '.join(roots)} }}"
    return Case(" ".join([operation, *fragments]), variables)


class CapturingStore:
    """An audit store that keeps the batches it is given (the gateway's real batches)."""

    def __init__(self) -> None:
        self.batches: list[AuditBatch] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit(self, batch: AuditBatch) -> None:
        self.batches.append(batch)

    async def search(self, q: Any) -> list[Any]:
        return []

    async def verify(self) -> Any:
        raise NotImplementedError

    async def purge(self, older_than: Any, context: Any) -> int:
        return 0

    async def ready(self) -> bool:
        return True

    # The Merkle log's side of the protocol: an empty log (the gateway signs its checkpoint).
    on_append: Any = None

    def tree(self) -> TreeReader:
        async def nodes(wanted: list[Any]) -> dict[Any, bytes]:
            return {}

        async def size() -> int:
            return 0

        return TreeReader(nodes, size)

    async def purge_expired(self, retention: Any, context: Any, now: Any = None) -> int:
        return 0

    async def check_log(self, checkpoints: Any) -> Any:
        raise NotImplementedError

    async def entries(self, seqs: Any) -> Any:
        raise NotImplementedError


def comparable(batch: AuditBatch | None) -> Any:
    """A batch without what differs per request by design (trace, span, clock)."""
    if batch is None:
        return None
    context = dataclasses.replace(
        batch.context, trace_id="", span_id="", parent_span_id=None, start_time=None
    )
    return (context, batch.subjects, batch.request_decisions)


@dataclasses.dataclass(frozen=True)
class Who:
    principal: Principal
    purpose: str
    activity: str


def principals() -> list[Who]:
    """Every (organisation, role, purpose) the default policy grants (and admits: active)."""
    out = []
    for org, role, purpose in GRANTED:
        principal = Principal(
            subject=f"{org}-{role}",
            oin=POLICY.organisations[org].oin,
            organisation=org,
            roles=(role,),
            purposes=frozenset({purpose}),
        )
        if POLICY.purposes[purpose].active:
            out.append(Who(principal, purpose, POLICY.purposes[purpose].processing_activities[0]))
    return out


async def twice(
    running: Running, store: CapturingStore, who: Who, case: Case, n: int
) -> tuple[str, str | None]:
    """Run one document for one principal through strawberry, then compiled; compare. Returns
    the answer and how the compiled run was executed (its span's ``ketenpoort.execution``)."""
    gateway = running.gateway
    principal = dataclasses.replace(who.principal, subject=f"{who.principal.subject}-{n}")
    headers = {"x-doelbinding": who.purpose, "x-verwerking": who.activity}
    payload: dict[str, Any] = {"query": case.query}
    if case.variables:
        payload["variables"] = case.variables
    answers = []
    for compiled in (False, True):
        gateway.compiled.enabled = compiled
        before = len(store.batches)
        started = datetime.now(UTC)
        with gateway.request_span({}) as span:
            grant, activity, officer = gateway.admit(principal, headers)
            answer = await gateway.execute(
                principal, officer, grant, activity, payload, span, started
            )
        batch = store.batches[-1] if len(store.batches) > before else None
        execution = span.attributes.get("ketenpoort.execution")
        answers.append(
            (answer.status, answer.headers, json.dumps(answer.body), comparable(batch), execution)
        )
    gateway.compiled.enabled = True
    (status_s, headers_s, body_s, batch_s, off), (status_c, headers_c, body_c, batch_c, on) = (
        answers
    )
    assert body_c == body_s, f"{who}\n{case}\nstrawberry: {body_s}\ncompiled:   {body_c}"
    assert (status_c, headers_c) == (status_s, headers_s)
    assert batch_c == batch_s, f"{who}\n{case}\naudit batches differ"
    assert off is None  # switched off: strawberry, and no compiled-path attribute
    return body_s, str(on) if on is not None else None


# About 45 s of CPU on an idle machine; the bound leaves room for a shared, busy one.
@pytest.mark.timeout(600)
def test_compiled_answers_equal_strawberry(mock_registries: Registries, tmp_path: Path) -> None:
    mocks = mock_registries
    persons = person_pool(mocks.population)
    store = CapturingStore()
    stats: Counter[str] = Counter()
    loop = asyncio.new_event_loop()
    mocks.reset()
    running = loop.run_until_complete(
        start_gateway(settings_for(tmp_path / "state"), mocks=mocks, audit_store=store)
    )
    gateway = running.gateway
    everyone = principals()
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            cases=st.lists(
                documents(persons),
                min_size=DOCUMENTS_PER_EXAMPLE,
                max_size=DOCUMENTS_PER_EXAMPLE,
            ),
            fault=st.sampled_from(FAULTS),
        )
        def check(cases: list[Case], fault: str | None) -> None:
            stats["examples"] += 1
            # Both kinds of builder, against the oracle: generated source and closures.
            # (Mostly closures, the first tier: source takes longer to build, and in this test
            # every request brings a new plan.)
            gateway.compiled.backend = "source" if stats["examples"] % 4 == 1 else "closures"
            for registry in mocks.all:
                registry.faults.clear()
            if fault is not None:
                # A fresh cache, so the fault is met instead of a cached answer.
                gateway.cache = open_cache("memory", 60.0)
                next(r for r in mocks.all if r.name == fault).faults.status = 503
            store.batches.clear()
            for case in cases:
                stats["documents"] += 1
                for who in everyone:
                    stats["requests"] += 1
                    body, execution = loop.run_until_complete(
                        twice(running, store, who, case, stats["requests"])
                    )
                    stats[f"span:{execution}"] += 1
                    if '"REGISTRY_UNAVAILABLE"' in body:
                        stats["with registry errors"] += 1
            for registry in mocks.all:
                registry.faults.clear()

        check()
        # Tiered: closures first, generated source once the plan is hot; same answers throughout.
        gateway.compiled.backend = "tiered"
        hot = Case(
            "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } "
            "religie opvang { locatie { naam } } } }",
            {"v": persons[0]},
        )
        for _ in range(gateway.compiled.promote_after + 2):
            for who in everyone:
                stats["requests"] += 1
                _, execution = loop.run_until_complete(
                    twice(running, store, who, hot, stats["requests"])
                )
                stats[f"span:{execution}"] += 1
        for query in ODD_DOCUMENTS:
            for who in everyone:
                stats["requests"] += 1
                _, execution = loop.run_until_complete(
                    twice(running, store, who, Case(query, {}), stats["requests"])
                )
                stats[f"span:{execution}"] += 1
    finally:
        loop.run_until_complete(running.close())
        loop.close()
        mocks.reset()
    compiled = gateway.compiled.stats
    print(dict(stats), dict(compiled))
    assert stats["documents"] >= 2000 or EXAMPLES < 100
    assert stats["with registry errors"] > 0
    # The proof is about compiled answers: most requests must have been compiled.
    assert compiled["compiled"] > stats["requests"] // 2, dict(compiled)
    assert compiled["fallback:introspection"] > 0
    assert compiled["compiles:source"] > 0 and compiled["compiles:closures"] > 0
    # More plans than the builder cache holds went through it: it stayed within its bound.
    assert compiled["compiles:closures"] > gateway.compiled.size >= len(gateway.compiled)
    # Every compiled answer and every fallback is on its request's span.
    assert stats["span:compiled"] == compiled["compiled"]
    assert stats["span:fallback"] == compiled["fallback"]
