"""``make soak``: sustained mixed traffic against the gateway, counted against the trail.

Two scenarios: ``sqlite`` (one ``ketenpoort serve`` with the embedded SQLite store) and
``scaled`` (two processes sharing PostgreSQL and Redis, as ``make serve-scaled`` runs them).
Each runs the mix of :mod:`bench.traffic_mix` at a target rate for a bounded time, samples req/s,
latency and the processes' RSS, descriptors and sockets every second, then counts every answer
with data against the trail, runs ``ketenpoort audit verify`` and scans the server logs.
Results: ``bench/results/soak.{json,md,png}``. Measures; asserts nothing (the short mode's test
does the asserting).

``python -m bench.soak [--short] [--duration S] [--rate R] [--scenario sqlite|scaled]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness, observe
from bench.traffic import Load, Outcome
from bench.traffic_mix import build_mix

RESULTS = harness.ROOT / "bench" / "results"


@dataclass(frozen=True, slots=True)
class SoakPlan:
    duration: float
    rate: float
    warmup: float
    concurrency: int

    @property
    def max_requests(self) -> int:
        return int(self.duration * self.rate * 1.05) + 10


FULL = SoakPlan(duration=600.0, rate=200.0, warmup=60.0, concurrency=64)
SHORT = SoakPlan(duration=6.0, rate=30.0, warmup=2.0, concurrency=16)


async def soak_gateways(
    name: str,
    gateways: list[harness.Gateway],
    store_url: str,
    state: Path,
    plan: SoakPlan,
    mocks: harness.Mocks,
) -> dict[str, Any]:
    """Run the mix against running gateways; count, verify, scan. One scenario's result.

    CPU seconds of the gateways, the mocks, this process (the load generator with its
    sampling) and, on PostgreSQL, the server processes serving the gateways' connections are
    taken over the run and divided by the requests sent: a figure that, unlike req/s, does not
    move with whatever else the machine is doing."""
    mix = build_mix(state, plan.max_requests)
    load = Load(
        [g.url + "/graphql" for g in gateways],
        mix,
        plan.rate,
        plan.duration,
        plan.max_requests,
        concurrency=plan.concurrency,
    )
    processes = {
        "gateway": [g.pid for g in gateways],
        "mocks": [mocks.pid],
        "generator": [os.getpid()],
    }
    if store_url.startswith("postgresql"):
        processes["postgres"] = await observe.postgres_backends(store_url)
    cpu = observe.CpuMeter(processes)
    started = time.monotonic()
    sampler = observe.Sampler([g.pid for g in gateways], load.outcomes, started)
    sampler.sample()
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    trimming = asyncio.create_task(harness.trim_mocks(mocks.url, stop))
    cpu.start()
    await load.run()
    joined = {}
    if "postgres" in processes:
        joined["postgres"] = await observe.postgres_backends(store_url)
    cpu.stop(joined)
    elapsed = time.monotonic() - started
    stop.set()
    await sampling
    await trimming
    outcomes = load.outcomes
    trail = await observe.trail_entries(store_url)
    counts = observe.tally(outcomes, trail, documented_503=frozenset())  # no fault injected
    ok, verify_line = await observe.verify(store_url)
    samples = sampler.samples
    after_warmup = [s for s in samples if s["t"] >= plan.warmup] or samples
    rss_warm = after_warmup[0]["rss_kib"]
    rss_end = samples[-1]["rss_kib"]
    latencies = [o.latency for o in outcomes if o.status]
    result: dict[str, Any] = {
        "scenario": name,
        "processes": len(gateways),
        "store": store_url.split("://")[0],
        "target_rate": plan.rate,
        "duration_s": round(elapsed, 1),
        "achieved_rate": round(len(outcomes) / elapsed, 1) if elapsed else 0.0,
        "cpu_ms_per_request": cpu.per_request_ms(len(outcomes)),
        "load_average": _load_average(),
        "latency_ms": {
            "p50": _ms(observe.percentile(latencies, 0.50)),
            "p99": _ms(observe.percentile(latencies, 0.99)),
            "max": _ms(max(latencies) if latencies else None),
        },
        "latency_ms_by_kind": _by_kind(outcomes),
        **counts,
        "trail_entries": len(trail),
        "trail_records": sum(trail.values()),
        "lost": 0,  # nothing was injected: every answer with data is counted by `unrecorded`
        "audit_verify": {"ok": ok, "detail": verify_line},
        "rss_kib": {
            "start": samples[0]["rss_kib"],
            "after_warmup": rss_warm,
            "end": rss_end,
            "peak": max(s["rss_kib"] for s in samples),
            "growth_after_warmup_pct": round((rss_end - rss_warm) / rss_warm * 100, 1)
            if rss_warm
            else None,
        },
        "fds": {"start": samples[0]["fds"], "end": samples[-1]["fds"]},
        "sockets": {"start": samples[0]["sockets"], "end": samples[-1]["sockets"]},
        "server_log_errors": observe.log_errors(g.log for g in gateways)[:20],
        "samples": samples,
    }
    result["pass"] = passed(result)
    return result


def passed(r: dict[str, Any]) -> bool:
    growth = r["rss_kib"]["growth_after_warmup_pct"]
    return bool(
        r["unrecorded"] == 0
        and r["leaks"] == 0
        and r["lost"] == 0
        and r["undocumented_5xx"] == 0
        and r["no_answer"] == 0
        and r["audit_verify"]["ok"]
        and not r["server_log_errors"]
        and (growth is None or growth < 10.0)
    )


def _by_kind(outcomes: list[Outcome]) -> dict[str, dict[str, float | None]]:
    """p50 and p99 latency of each kind of request (lookup, multi, refused, search)."""
    kinds: dict[str, list[float]] = {}
    for o in outcomes:
        if o.status:
            kinds.setdefault(o.kind, []).append(o.latency)
    return {
        kind: {
            "p50": _ms(observe.percentile(values, 0.50)),
            "p99": _ms(observe.percentile(values, 0.99)),
        }
        for kind, values in sorted(kinds.items())
    }


def _load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages at the end of the run."""
    return [round(x, 2) for x in os.getloadavg()]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


async def sqlite_scenario(work: Path, plan: SoakPlan, mocks: harness.Mocks) -> dict[str, Any]:
    """One ``ketenpoort serve`` with the SQLite store in its state directory."""
    state = work / "sqlite"
    store_url = f"sqlite:///{state / 'audit.db'}"
    env = harness.gateway_env(state, registries=harness.registries_setting(mocks.url))
    gw = harness.Gateway(harness.free_port(), env, work / "sqlite.log")
    gw.start()
    try:
        if not await gw.wait_ready():
            raise RuntimeError(f"gateway did not become ready; see {gw.log}")
        return await soak_gateways("sqlite", [gw], store_url, state, plan, mocks)
    finally:
        gw.stop()


async def scaled_scenario(work: Path, plan: SoakPlan, mocks: harness.Mocks) -> dict[str, Any]:
    """Two processes on PostgreSQL (a fresh database) and Redis (make serve-scaled)."""
    from bench.cluster import Cluster

    async with Cluster.started(
        work / "scaled", processes=2, registries=harness.registries_setting(mocks.url)
    ) as cluster:
        return await soak_gateways(
            "scaled", cluster.gateways, cluster.audit_url, cluster.state, plan, mocks
        )


def totals(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests", "with_data", "unrecorded", "lost", "leaks", "undocumented_5xx")
    out: dict[str, Any] = {k: sum(s[k] for s in scenarios) for k in keys}
    out["pass"] = all(s["pass"] for s in scenarios)
    return out


async def run(plan: SoakPlan, scenarios: list[str], work: Path) -> dict[str, Any]:
    results = []
    async with harness.mocks_process(work / "mocks.log") as mocks:
        for name in scenarios:
            fn = sqlite_scenario if name == "sqlite" else scaled_scenario
            results.append(await fn(work, plan, mocks))
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "plan": {
            "duration_s": plan.duration,
            "rate": plan.rate,
            "warmup_s": plan.warmup,
            "concurrency": plan.concurrency,
        },
        "scenarios": results,
        "total": totals(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--short", action="store_true", help="The short variant (seconds).")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--scenario", action="append", choices=("sqlite", "scaled"))
    parser.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    if args.duration or args.rate:
        plan = SoakPlan(
            args.duration or plan.duration,
            args.rate or plan.rate,
            min(plan.warmup, (args.duration or plan.duration) / 5),
            plan.concurrency,
        )
    out = args.out or (Path(tempfile.gettempdir()) / "ketenpoort-soak" if args.short else RESULTS)
    with tempfile.TemporaryDirectory(prefix="ketenpoort-soak-") as tmp:
        result = asyncio.run(run(plan, args.scenario or ["sqlite", "scaled"], Path(tmp)))
    from bench.reliability_report import write_soak

    write_soak(result, out)
    total = result["total"]
    print(
        f"soak: {total['requests']} requests, {total['unrecorded']} unrecorded, "
        f"{total['leaks']} leaks, {total['undocumented_5xx']} undocumented 5xx — "
        f"{'PASS' if total['pass'] else 'FAIL'} ({out / 'soak.md'})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
