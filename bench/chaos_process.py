"""Chaos run: the process faults, SIGTERM (graceful stop) and SIGKILL (crash) under load."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

from bench import harness, observe
from bench.chaos_model import (
    ChaosPlan,
    Stack,
    load_started,
    phase_counts,
)
from bench.traffic import Load, Outcome
from bench.traffic_mix import build_mix


async def sigterm_run(stack: Stack, plan: ChaosPlan, grace: float) -> dict[str, Any]:
    """SIGTERM under traffic: in-flight answered and recorded, new refused, exit in grace;
    then a restart and traffic again."""
    gw = stack.gateways[0]
    mix = build_mix(stack.state, int(plan.rate * 60) + 50)
    total = plan.before + plan.during
    load = Load(
        [gw.url + "/graphql"],
        mix,
        plan.rate,
        total,
        int(plan.rate * total * 1.1) + 10,
        concurrency=plan.concurrency,
        timeout=30.0,
    )
    task = asyncio.create_task(load.run())
    await asyncio.sleep(plan.before)
    t_term = time.monotonic() - load_started(load)
    gw.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert gw.process is not None
    exit_code = await asyncio.to_thread(_wait_exit, gw.process, grace + 5)
    exit_s = time.monotonic() - t0
    outcomes = list(await task)
    t1 = time.monotonic()
    gw.start()
    ready = await gw.wait_ready()
    restart_s = time.monotonic() - t1
    again = Load(
        [gw.url + "/graphql"],
        mix,
        plan.rate,
        plan.after,
        int(plan.rate * plan.after * 1.1) + 10,
        concurrency=plan.concurrency,
    )
    after = await again.run()
    trail = await observe.trail_entries(stack.store_url)
    counts = observe.tally([*outcomes, *after], trail)
    # In flight: sent well before the signal (50 ms: the request had reached the server).
    in_flight = [o for o in outcomes if o.t < t_term - 0.05 and o.t + o.latency > t_term]
    dropped = [o for o in in_flight if o.status == 0]
    answered_late = [o for o in outcomes if o.t > t_term + exit_s and o.status != 0]
    good_after = [o.t + o.latency for o in after if o.status == 200]
    ok, line = await observe.verify(stack.store_url)
    result = {
        "fault": "SIGTERM during traffic",
        "stack": "sqlite",
        "requests": counts["requests"],
        "phases": {"until exit": phase_counts(outcomes), "after restart": phase_counts(after)},
        "in_flight_at_signal": len(in_flight),
        "in_flight_dropped": len(dropped),
        "answered_while_stopped": len(answered_late),
        "exit_code": exit_code,
        "exit_s": round(exit_s, 2),
        "grace_s": grace,
        "restart_to_ready_s": round(restart_s, 2) if ready else None,
        "recovery_s": round(restart_s + min(good_after), 2) if ready and good_after else None,
        "unrecorded": counts["unrecorded"],
        "lost": counts["unrecorded"],
        "leaks": counts["leaks"],
        "undocumented_5xx": counts["undocumented_5xx"],
        "audit_verify": {"ok": ok, "detail": line},
    }
    result["pass"] = bool(
        not dropped
        and not answered_late
        and exit_code is not None
        and exit_s <= grace
        and counts["unrecorded"] == 0
        and counts["leaks"] == 0
        and ok
        and counts["undocumented_5xx"] == 0
        and result["recovery_s"] is not None
    )
    return result


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


async def sigkill_run(stack: Stack, plan: ChaosPlan, kills: int) -> dict[str, Any]:
    """SIGKILL under load (group commits in flight), restart; every answer the client got is
    in the trail and the chain verifies."""
    gw = stack.gateways[0]
    rate = plan.rate * 3  # enough concurrent requests that a group commit is in progress
    per = plan.before + plan.during
    mix = build_mix(stack.state, int(rate * per * kills) + 100)
    outcomes: list[Outcome] = []
    restarts: list[float] = []
    for _ in range(kills):
        load = Load(
            [gw.url + "/graphql"],
            mix,
            rate,
            per,
            int(rate * per) + 10,
            concurrency=plan.concurrency * 2,
            timeout=30.0,
        )
        task = asyncio.create_task(load.run())
        await asyncio.sleep(plan.before)
        harness.kill(gw)
        outcomes.extend(await task)
        t0 = time.monotonic()
        gw.start()
        if await gw.wait_ready():
            restarts.append(time.monotonic() - t0)
    trail = await observe.trail_entries(stack.store_url)
    counts = observe.tally(outcomes, trail)
    received = [o for o in outcomes if o.status == 200]
    missing = [o for o in received if o.has_data and o.trace_id not in trail]
    ok, line = await observe.verify(stack.store_url)
    result = {
        "fault": "SIGKILL during group commits",
        "stack": "sqlite",
        "kills": kills,
        "requests": counts["requests"],
        "phases": {"all": phase_counts(outcomes)},
        "answers_received_with_data": sum(1 for o in received if o.has_data),
        "restart_to_ready_s": [round(r, 2) for r in restarts],
        "recovery_s": round(max(restarts), 2) if restarts else None,
        "unrecorded": counts["unrecorded"],
        "lost": len(missing),
        "leaks": counts["leaks"],
        "undocumented_5xx": counts["undocumented_5xx"],
        "audit_verify": {"ok": ok, "detail": line},
    }
    result["pass"] = bool(
        not missing
        and counts["unrecorded"] == 0
        and counts["leaks"] == 0
        and ok
        and counts["undocumented_5xx"] == 0
        and len(restarts) == kills
    )
    return result


# ---- the run -------------------------------------------------------------------------------
