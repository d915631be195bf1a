"""Prototypes behind the benchmark report's proposals: ``python -m bench.experiments``.

Not part of ``make bench``. Each prototype is patched into the running gateway (nothing in
``gateway/`` is edited) and measured against ``bare`` with the same round-robin as the main
benchmark, so a proposal's gain can be checked before anyone writes it for real:

* ``fastfetch`` — :meth:`PersonFetcher.persons` asks the cache for every registry's records in
  one ``get_many`` first, and only goes through the DataLoaders (one future per key, a dispatch
  task per loader, several event-loop turns) for what the cache does not hold.
* ``cheapspans`` — the per-subject spans are built as finished ``ReadableSpan`` objects and
  handed to the tracer's span processor, skipping sampler, attribute cleaning and locks of
  ``Tracer.start_span`` for spans whose start, end and attributes are all known at once.
* ``nospans`` — no per-subject spans at all: the lower bound, not a proposal.

The prototypes read private attributes of the gateway: they break when those change, which is
acceptable for an experiment and would not be for the gateway itself.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from bench import inprocess
from bench.common import bench_policy, dataset, full_query, load_bench_policy, payload
from bench.variants import SchemaRunner, bare_schema, start_ketenpoort, state_settings
from gateway.audit.model import AuditBatch
from gateway.cache import RecordCache
from gateway.fetch import PersonFetcher, PersonOutcome
from gateway.service import Gateway

_SCOPE = InstrumentationScope("ketenpoort")
_ORIGINAL_PERSONS = PersonFetcher.persons
_ORIGINAL_SPANS = Gateway._subject_spans


def cheap_subject_spans(self: Gateway, batch: AuditBatch, request_span: trace.Span) -> None:
    if not batch.subjects:
        return
    parent = request_span.get_span_context()
    start = int(batch.context.start_time.timestamp() * 1e9)
    end = int(batch.end_time.timestamp() * 1e9)
    activity = batch.context.processing_activity or ""
    tracer: Any = self.tracer
    processor, resource, ids = tracer.span_processor, tracer.resource, tracer.id_generator
    for subject in batch.subjects:
        given, refused = self._joined_decisions(subject.decisions)
        context = trace.SpanContext(
            parent.trace_id, ids.generate_span_id(), False, parent.trace_flags
        )
        processor.on_end(
            ReadableSpan(
                "betrokkene",
                context,
                parent,
                resource,
                {
                    "dpl.core.processing_activity_id": activity,
                    "dpl.core.data_subject_id": subject.subject,
                    "dpl.core.data_subject_id_type": "vnummer",
                    "ketenpoort.given": given,
                    "ketenpoort.refused": refused,
                },
                start_time=start,
                end_time=end,
                instrumentation_scope=_SCOPE,
            )
        )


async def fast_persons(self: PersonFetcher, vnummers: Sequence[str]) -> list[PersonOutcome]:
    wanted = list(vnummers)
    me: Any = self
    if me._scope is None and wanted:
        registries = [
            (name, digest)
            for name, digest, loader in (
                ("BVV", me._bvv_digest, me._bvv),
                ("COA", me._coa_digest, me._coa),
                ("IND", me._ind_digest, me._ind),
            )
            if loader is not None
        ]
        pseudonyms = [me._pseudonym(v) for v in wanted]
        keys = [RecordCache.key(r, d, p) for r, d in registries for p in pseudonyms]
        values = await me._cache.get_many(keys)
        if None not in values:
            n = len(wanted)
            per = {r: values[i * n : (i + 1) * n] for i, (r, _) in enumerate(registries)}
            coa = dict(zip(wanted, per["COA"], strict=True)) if "COA" in per else {}
            ind = dict(zip(wanted, per["IND"], strict=True)) if "IND" in per else {}
            bvv = per.get("BVV")
            return [me._combine(i, v, bvv, coa, ind) for i, v in enumerate(wanted)]
    return await _ORIGINAL_PERSONS(self, vnummers)


def _no_spans(self: Gateway, batch: AuditBatch, request_span: trace.Span) -> None:
    return None


SPANS: dict[str, Callable[..., None]] = {
    "orig": _ORIGINAL_SPANS,
    "cheap": cheap_subject_spans,
    "none": _no_spans,
}
PERSONS: dict[str, Any] = {"orig": _ORIGINAL_PERSONS, "fast": fast_persons}


def _patch(spans: str, persons: str) -> None:
    Gateway._subject_spans = SPANS[spans]  # type: ignore[method-assign]
    PersonFetcher.persons = PERSONS[persons]  # type: ignore[method-assign]


async def run(rounds: int) -> dict[str, Any]:
    from mocks import create_registries

    with tempfile.TemporaryDirectory(prefix="ketenpoort-experiments-") as tmp:
        work = Path(tmp)
        policy_path = bench_policy(work)
        query = full_query(load_bench_policy(policy_path))
        mocks = create_registries()
        data = dataset(mocks.population, 50)
        ketenpoort = await start_ketenpoort(state_settings(work / "state", policy_path), mocks)

        def variant(spans: str, persons: str) -> inprocess.Runner:
            async def one(body: Any) -> dict[str, Any]:
                _patch(spans, persons)
                return await ketenpoort(body)

            return one

        runners: dict[str, inprocess.Runner] = {
            "bare": SchemaRunner(bare_schema(data.records)),
            "ketenpoort": variant("orig", "orig"),
            "fastfetch": variant("orig", "fast"),
            "cheapspans": variant("cheap", "orig"),
            "fastfetch+cheapspans": variant("cheap", "fast"),
            "fastfetch+nospans": variant("none", "fast"),
        }
        results: dict[str, Any] = {}
        try:
            for size in (1, 50):
                body = payload(query, data.vnummers(size))
                await inprocess.check_same_answers(runners, body)
                series = await inprocess.interleaved(
                    runners, body, rounds=rounds, slice_ms=100, warmup=10
                )
                bare = statistics.median(series["bare"].rounds)
                results[str(size)] = {
                    name: {
                        "us": round(statistics.median(s.rounds), 1),
                        "over_bare": round(statistics.median(s.rounds) / bare, 3),
                    }
                    for name, s in series.items()
                }
        finally:
            _patch("orig", "orig")
            await ketenpoort.close()
    return results


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 15
    results = asyncio.run(run(rounds))
    for size, point in results.items():
        for name, value in point.items():
            print(f"{size:>3} person(s)  {name:<22} {value['us']:>10.1f} µs  x{value['over_bare']}")


if __name__ == "__main__":
    main(sys.argv[1:])
