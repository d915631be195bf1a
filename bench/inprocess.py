"""In-process timing: the variants side by side, round-robin, medians over rounds.

Each round runs every variant for about the same wall time (a slice), in an order that rotates
from round to round, so a burst of machine noise lands on all variants alike. The per-request
time of a round is the slice's mean; the reported value is the median over rounds.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import re
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import count_fields, median, payload, percentile

Runner = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Counts:
    """How much to measure; ``quick`` for the smoke test, ``full`` for ``make bench``."""

    rounds: int
    slice_ms: float
    warmup: int
    growth_rounds: int
    growth_slice_ms: float
    memory_samples: int
    profile_seconds: float


FULL = Counts(
    rounds=21,
    slice_ms=150.0,
    warmup=20,
    growth_rounds=7,
    growth_slice_ms=100.0,
    memory_samples=5,
    profile_seconds=3.0,
)
QUICK = Counts(
    rounds=3,
    slice_ms=5.0,
    warmup=2,
    growth_rounds=2,
    growth_slice_ms=5.0,
    memory_samples=1,
    profile_seconds=0.2,
)


@dataclass(slots=True)
class Series:
    """Per-round means (µs per request) of one variant at one size."""

    rounds: list[float] = field(default_factory=list)
    requests: int = 0

    def summary(self) -> dict[str, float | int]:
        return {
            "median_us": round(median(self.rounds), 1),
            "min_us": round(min(self.rounds), 1) if self.rounds else float("nan"),
            "p25_us": round(percentile(self.rounds, 25), 1),
            "p75_us": round(percentile(self.rounds, 75), 1),
            "rounds": len(self.rounds),
            "requests": self.requests,
        }


async def _time(run: Runner, body: Mapping[str, Any], iterations: int) -> float:
    """Mean µs per request over ``iterations`` back-to-back requests."""
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(iterations):
        await run(body)
    return (clock() - start) / iterations / 1000


async def interleaved(
    runners: Mapping[str, Runner],
    body: Mapping[str, Any],
    *,
    rounds: int,
    slice_ms: float,
    warmup: int,
) -> dict[str, Series]:
    """Round-robin over the variants; every variant gets about ``slice_ms`` per round."""
    for run in runners.values():
        for _ in range(warmup):
            await run(body)
    # Calibrate: iterations per slice from a short timing of each variant.
    iterations: dict[str, int] = {}
    for name, run in runners.items():
        estimate = await _time(run, body, max(1, warmup // 2))
        iterations[name] = max(1, round(slice_ms * 1000 / max(estimate, 1.0)))
    gc.collect()
    series = {name: Series() for name in runners}
    names = list(runners)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            n = iterations[name]
            series[name].rounds.append(await _time(runners[name], body, n))
            series[name].requests += n
    return series


async def check_same_answers(runners: Mapping[str, Runner], body: Mapping[str, Any]) -> int:
    """All variants must answer the same data without errors; returns the resolved fields."""
    answers = {name: await run(body) for name, run in runners.items()}
    reference_name, reference = next(iter(answers.items()))
    for name, answer in answers.items():
        if "errors" in answer:
            raise RuntimeError(f"{name} answered errors: {answer['errors'][:3]}")
        if answer["data"] != reference["data"]:
            raise RuntimeError(f"{name} answers other data than {reference_name}: not comparable")
    return count_fields(reference["data"])


async def compare(
    runners: Mapping[str, Runner], query: str, vnummers: list[str], counts: Counts
) -> dict[str, Any]:
    """One size: fields, per-variant series, µs per request and per field."""
    body = payload(query, vnummers)
    fields = await check_same_answers(runners, body)
    series = await interleaved(
        runners, body, rounds=counts.rounds, slice_ms=counts.slice_ms, warmup=counts.warmup
    )
    result: dict[str, Any] = {"persons": len(vnummers), "fields": fields}
    for name, s in series.items():
        us = median(s.rounds)
        result[f"{name}_us"] = round(us, 1)
        result[f"{name}_us_per_field"] = round(us / fields, 3) if fields else None
    result["paired"] = paired_ratios(series)
    result["series"] = {name: s.summary() for name, s in series.items()}
    return result


def paired_ratios(series: Mapping[str, Series]) -> dict[str, float]:
    """Median over rounds of the ratio within each round (adjacent slices share the noise)."""
    pairs = (("ketenpoort", "bare"), ("naive", "ketenpoort"), ("naive", "bare"))
    out: dict[str, float] = {}
    for a, b in pairs:
        if a in series and b in series:
            ratios = [x / y for x, y in zip(series[a].rounds, series[b].rounds, strict=True)]
            out[f"{a}_over_{b}"] = round(median(ratios), 3)
    return out


async def growth(
    runners: Mapping[str, Runner], query: str, vnummers: list[str], sizes: list[int], counts: Counts
) -> dict[str, Any]:
    """How the cost grows with the persons per request (interleaved per size)."""
    points: dict[str, Any] = {}
    for size in sizes:
        body = payload(query, vnummers[:size])
        fields = await check_same_answers(runners, body)
        series = await interleaved(
            runners,
            body,
            rounds=counts.growth_rounds,
            slice_ms=counts.growth_slice_ms,
            warmup=max(1, counts.warmup // 4),
        )
        point: dict[str, Any] = {"fields": fields}
        for name, s in series.items():
            point[f"{name}_us"] = round(median(s.rounds), 1)
        if "bare" in series and "ketenpoort" in series:
            point["ketenpoort_over_bare"] = round(point["ketenpoort_us"] / point["bare_us"], 3)
            point["ketenpoort_extra_us_per_person"] = round(
                (point["ketenpoort_us"] - point["bare_us"]) / size, 1
            )
        points[str(size)] = point
    return points


async def memory(
    runners: Mapping[str, Runner], query: str, vnummers: list[str], samples: int
) -> dict[str, Any]:
    """tracemalloc peak (bytes above the level before the request) of one request, median."""
    body = payload(query, vnummers)
    result: dict[str, Any] = {"persons": len(vnummers)}
    for name, run in runners.items():
        await run(body)  # warm: caches, plans, lazily built state
        peaks: list[float] = []
        gc.collect()
        tracemalloc.start()
        try:
            for _ in range(samples):
                tracemalloc.reset_peak()
                before, _ = tracemalloc.get_traced_memory()
                await run(body)
                _, peak = tracemalloc.get_traced_memory()
                peaks.append(peak - before)
        finally:
            tracemalloc.stop()
        result[f"{name}_peak_bytes"] = int(median(peaks))
        result[f"{name}_peak_kib"] = round(median(peaks) / 1024, 1)
    return result


async def profile(
    run: Runner, query: str, vnummers: list[str], seconds: float, top: int = 25
) -> dict[str, Any]:
    """cProfile of the ketenpoort path (what to look at when a target is missed)."""
    body = payload(query, vnummers)
    await run(body)
    profiler = cProfile.Profile()
    requests = 0
    deadline = time.perf_counter() + seconds
    profiler.enable()
    try:
        while time.perf_counter() < deadline:
            await run(body)
            requests += 1
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries: list[dict[str, Any]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, function), (cc, nc, tt, ct, _) in raw.items():
        entries.append(
            {
                "function": f"{_short(filename)}:{line}({function})",
                "calls_per_request": round(nc / max(requests, 1), 2),
                "primitive_calls": cc,
                "tottime_us_per_request": round(tt / max(requests, 1) * 1e6, 1),
                "cumtime_us_per_request": round(ct / max(requests, 1) * 1e6, 1),
            }
        )
    by_total = sorted(entries, key=lambda e: e["tottime_us_per_request"], reverse=True)[:top]
    ours = [e for e in entries if e["function"].startswith(("gateway/", "resolvers/"))]
    by_cumulative = sorted(ours, key=lambda e: e["cumtime_us_per_request"], reverse=True)[:top]
    return {
        "persons": len(vnummers),
        "requests": requests,
        "note": "cProfile inflates small calls; read shares, not absolute µs",
        "top_tottime": by_total,
        "gateway_cumulative": by_cumulative,
    }


_ROOT = str(Path(__file__).resolve().parent.parent) + "/"


_STDLIB = re.compile(r"^.*/lib/python3\.\d+/")


def _short(filename: str) -> str:
    for marker in ("site-packages/", _ROOT):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return _STDLIB.sub("", filename)


async def compiled_builders(
    run: Any, query: str, vnummers: list[str], counts: Counts, builds: int = 40
) -> dict[str, Any]:
    """The compiled answer builders of the ketenpoort variant: what building one costs per
    document for each kind (closures, generated source), and what each kind costs per request
    at 1 and 50 persons (interleaved, as the variants are).

    ``run`` is the :class:`~bench.variants.KetenpoortRunner`; each kind gets a builder cache
    of its own (swapped in per request), the gateway's own is put back afterwards.
    """
    from gateway.execution.compiled import CompiledAnswers

    gateway = run.gateway
    own = gateway.compiled
    kinds = {
        kind: CompiledAnswers(gateway.core_schema, backend=kind) for kind in ("closures", "source")
    }
    out: dict[str, Any] = {"default": own.backend, "promote_after": own.promote_after}
    try:
        for kind, compiled in kinds.items():
            gateway.compiled = compiled
            for _ in range(builds if counts is FULL else 3):
                compiled.clear()  # the benchmark times a cold build
                await run(payload(query, vnummers[:1]))
            out[f"build_{kind}_us"] = round(median(compiled.compile_times[kind]), 1)

        def runner(compiled: CompiledAnswers) -> Runner:
            async def one(body: Mapping[str, Any]) -> dict[str, Any]:
                gateway.compiled = compiled
                return dict(await run(body))

            return one

        for size in (1, 50):
            series = await interleaved(
                {kind: runner(compiled) for kind, compiled in kinds.items()},
                payload(query, vnummers[:size]),
                rounds=max(3, counts.rounds // 3),
                slice_ms=counts.slice_ms,
                warmup=counts.warmup,
            )
            for kind, s in series.items():
                out[f"run_{kind}_{size}_us"] = round(median(s.rounds), 1)
    finally:
        gateway.compiled = own
    return out
