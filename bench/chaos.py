"""``make chaos``: faults injected while mixed traffic runs; what was answered, lost, recovered.

Two stacks, everything on loopback: ``sqlite`` (one ``ketenpoort serve``, SQLite store, the mock
registries in their own process behind a :class:`~bench.proxy.TcpProxy`) and ``scaled`` (two
processes, PostgreSQL and Redis each behind a proxy). The machine's own servers are never
stopped: a dependency "stops" when its proxy does.

Each fault runs in three phases under traffic — before, during, after — and reports the answers
of each phase by status and code, whether ``/readyz`` named the dependency down while it was
down, the seconds from restoring it to the first good answer (``recovery_s``), answers with data
missing from the trail (``unrecorded``), values at refused paths (``leaks``) and records lost
(``lost``: trail entries present before the fault and gone after, plus, after a crash, answers
the client received that the trail does not hold).

``python -m bench.chaos [--short] [--only NAME ...]``. Results: ``bench/results/chaos.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness, observe
from bench.chaos_faults import (
    faults,
)
from bench.chaos_model import (
    FULL,
    READY_LIMIT_S,
    SHORT,
    ChaosPlan,
    Fault,
    Stack,
    judge_fault,
    load_started,
    stack_ready,
)
from bench.chaos_process import (
    sigkill_run,
    sigterm_run,
)
from bench.chaos_stacks import (
    scaled_stack,
    sqlite_stack,
)
from bench.traffic import Load
from bench.traffic_mix import build_mix

RESULTS = harness.ROOT / "bench" / "results"


async def run_fault(stack: Stack, fault: Fault, plan: ChaosPlan) -> dict[str, Any]:
    before_trail = await observe.trail_entries(stack.store_url)
    mix = build_mix(stack.state, int(plan.rate * (plan.before + plan.during + plan.after)) + 50)
    total = plan.before + plan.during + plan.after
    load = Load(
        [g.url + "/graphql" for g in stack.gateways],
        mix,
        plan.rate,
        total,
        int(plan.rate * total * 1.1) + 10,
        concurrency=plan.concurrency,
        timeout=30.0,
    )
    task = asyncio.create_task(load.run())
    await asyncio.sleep(plan.before)
    t_inject = time.monotonic() - load_started(load)
    await fault.inject(stack)
    ready_seen: list[dict[str, Any]] = []
    end_fault = time.monotonic() + plan.during
    while time.monotonic() < end_fault:
        ready_seen.append(await stack.gateways[0].readyz())
        await asyncio.sleep(min(0.5, max(0.0, end_fault - time.monotonic())))
    t_restore = time.monotonic() - load_started(load)
    await fault.restore(stack)
    recovered_ready = await harness.until(lambda: stack_ready(stack), READY_LIMIT_S, step=0.2)
    outcomes = await task
    if recovered_ready is None:
        ready_seen.append({"after_restore": await stack.gateways[0].readyz()})
    after_trail = await observe.trail_entries(stack.store_url)
    return judge_fault(
        fault,
        outcomes,
        before_trail,
        after_trail,
        t_inject,
        t_restore,
        ready_seen,
        recovered_ready,
        stack,
    )


async def run(plan: ChaosPlan, only: set[str] | None, work: Path, kills: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    notes: list[str] = []

    def wanted(name: str) -> bool:
        return only is None or any(w.lower() in name.lower() for w in only)

    all_faults = faults()
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    async with sqlite_stack(work, mount=True) as stack:
        for fault in all_faults:
            if fault.stack != "sqlite" or not wanted(fault.name):
                continue
            if fault.name == "SQLite disk full" and stack.mount is None:
                notes.append("SQLite disk full: not run (a tmpfs needs root and mount)")
                continue
            results.append(await run_fault(stack, fault, plan))
            await stack.trim()
        if wanted("SIGTERM during traffic"):
            results.append(await sigterm_run(stack, plan, grace=harness.SHUTDOWN_GRACE_S))
        if wanted("SIGKILL during group commits"):
            results.append(await sigkill_run(stack, plan, kills))
        ok, line = await observe.verify(stack.store_url)
        notes.append(
            f"SQLite trail after every fault: audit verify {'OK' if ok else 'FAILED'}: {line}"
        )
    scaled = [f for f in all_faults if f.stack == "scaled" and wanted(f.name)]
    if scaled:
        async with scaled_stack(work) as stack:
            for fault in scaled:
                results.append(await run_fault(stack, fault, plan))
            ok, line = await observe.verify(stack.store_url)
            notes.append(
                f"PostgreSQL trail after every fault: audit verify "
                f"{'OK' if ok else 'FAILED'}: {line}"
            )
    keys = ("requests", "unrecorded", "lost", "leaks", "undocumented_5xx")
    total: dict[str, Any] = {k: sum(r[k] for r in results) for k in keys}
    total["pass"] = all(r["pass"] for r in results) and all("FAILED" not in n for n in notes)
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "plan": {
            "before_s": plan.before,
            "during_s": plan.during,
            "after_s": plan.after,
            "rate": plan.rate,
            "concurrency": plan.concurrency,
            "sigkills": kills,
        },
        "faults": results,
        "notes": notes,
        "total": total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="The short variant.")
    parser.add_argument("--only", action="append", help="Run faults whose name contains this.")
    parser.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    out = args.out or (Path(tempfile.gettempdir()) / "ketenpoort-chaos" if args.short else RESULTS)
    with tempfile.TemporaryDirectory(prefix="ketenpoort-chaos-") as tmp:
        result = asyncio.run(
            run(
                plan, set(args.only) if args.only else None, Path(tmp), kills=1 if args.short else 3
            )
        )
    from bench.reliability_report import write_chaos

    write_chaos(result, out)
    total = result["total"]
    print(
        f"chaos: {len(result['faults'])} faults, {total['unrecorded']} unrecorded, "
        f"{total['lost']} lost, {total['leaks']} leaks — "
        f"{'PASS' if total['pass'] else 'FAIL'} ({out / 'chaos.md'})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
