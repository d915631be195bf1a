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
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.proxy import TcpProxy
from bench.traffic import Load, Outcome, build_mix

RESULTS = harness.ROOT / "bench" / "results"
#: How long after restoring a dependency the run waits for /readyz to say ready again.
READY_LIMIT_S = 30.0


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    before: float
    during: float
    after: float
    rate: float
    concurrency: int


FULL = ChaosPlan(before=10.0, during=20.0, after=20.0, rate=40.0, concurrency=32)
SHORT = ChaosPlan(before=0.7, during=2.0, after=1.5, rate=20.0, concurrency=8)

#: Codes each fault may answer with while it lasts (README "Error codes").
EXPECTED = {
    "registry": {"REGISTRY_UNAVAILABLE"},
    "audit": {"AUDIT_UNAVAILABLE"},
    "quota": {"QUOTA_UNAVAILABLE"},
}
#: Codes of a healthy answer (policy refusals are part of the mix).
NORMAL = {
    "FIELD_NOT_PERMITTED",
    "SUBJECT_OUT_OF_SCOPE",
    "PURPOSE_SUSPENDED",
    "PURPOSE_NOT_GRANTED",
    "PURPOSE_FORBIDDEN",
    "TOO_MANY_SUBJECTS",
}


@dataclass
class Stack:
    """Running gateways and what they depend on."""

    gateways: list[harness.Gateway]
    store_url: str
    state: Path
    mocks: subprocess.Popen[bytes]
    mocks_url: str
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    mount: Path | None = None

    async def faults(self, **faults: Any) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            await client.put(self.mocks_url + "/_faults", json={"registry": "all", **faults})

    async def trim(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=5) as client:
                await client.post(self.mocks_url + "/_trim")


# ---- one fault -----------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    dependency: str  # a /readyz check name, or "" when readiness cannot see this fault
    expected: set[str]
    inject: Callable[[Stack], Awaitable[None]]
    restore: Callable[[Stack], Awaitable[None]]
    stack: str = "sqlite"


async def run_fault(stack: Stack, fault: Fault, plan: ChaosPlan) -> dict[str, Any]:
    before_trail = await harness.trail_entries(stack.store_url)
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
    t_inject = time.monotonic() - _started(load)
    await fault.inject(stack)
    ready_seen: list[dict[str, Any]] = []
    end_fault = time.monotonic() + plan.during
    while time.monotonic() < end_fault:
        ready_seen.append(await stack.gateways[0].readyz())
        await asyncio.sleep(min(0.5, max(0.0, end_fault - time.monotonic())))
    t_restore = time.monotonic() - _started(load)
    await fault.restore(stack)
    recovered_ready = await harness.until(lambda: _ready(stack), READY_LIMIT_S, step=0.2)
    outcomes = await task
    if recovered_ready is None:
        ready_seen.append({"after_restore": await stack.gateways[0].readyz()})
    after_trail = await harness.trail_entries(stack.store_url)
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


def _started(load: Load) -> float:
    return getattr(load, "started", time.monotonic())


async def _ready(stack: Stack) -> bool:
    answers = [await g.readyz() for g in stack.gateways]
    return all(a["status"] == 200 for a in answers)


def judge_fault(
    fault: Fault,
    outcomes: list[Outcome],
    before_trail: dict[str, int],
    after_trail: dict[str, int],
    t_inject: float,
    t_restore: float,
    ready_seen: list[dict[str, Any]],
    recovered_ready: float | None,
    stack: Stack,
) -> dict[str, Any]:
    phases: dict[str, list[Outcome]] = {"before": [], "during": [], "after": []}
    for o in outcomes:
        phase = "before" if o.t < t_inject else "during" if o.t < t_restore else "after"
        phases[phase].append(o)
    counts = harness.tally(outcomes, after_trail)
    lost = sum(1 for trace, n in before_trail.items() if after_trail.get(trace, 0) < n)
    during = phases["during"]
    unexpected = Counter(
        code
        for o in during
        for code in (o.codes or ("-",))
        if code not in fault.expected | NORMAL | {"-"}
    )
    unexpected.update(f"transport:{o.error}" for o in during if o.status == 0)
    # First good answer (data, none of the fault's codes) sent after the restore.
    good_after = [
        o.t + o.latency - t_restore
        for o in phases["after"]
        if o.status == 200 and not (set(o.codes) & fault.expected)
    ]
    dep = fault.dependency
    down_seen = None
    if dep:
        down_seen = any(
            r.get("status") == 503 and r.get("checks", {}).get(dep) is False for r in ready_seen
        )
    result = {
        "fault": fault.name,
        "stack": fault.stack,
        "requests": counts["requests"],
        "phases": {name: _phase_counts(items) for name, items in phases.items()},
        "unexpected_during": dict(unexpected),
        "readyz_reported_down": down_seen,
        "readyz_dependency": dep or None,
        "recovery_s": round(min(good_after), 2) if good_after else None,
        "ready_again_s": round(recovered_ready, 2) if recovered_ready is not None else None,
        "unrecorded": counts["unrecorded"],
        "lost": lost,
        "leaks": counts["leaks"],
        "undocumented_5xx": counts["undocumented_5xx"],
        "max_latency_during_s": round(max((o.latency for o in during), default=0.0), 2),
        "readyz_samples": ready_seen[-3:],
    }
    result["pass"] = bool(
        result["unrecorded"] == 0
        and result["lost"] == 0
        and result["leaks"] == 0
        and result["undocumented_5xx"] == 0
        and not unexpected
        and (down_seen is None or down_seen)
        and result["recovery_s"] is not None
    )
    return result


def _phase_counts(items: list[Outcome]) -> dict[str, Any]:
    codes: Counter[str] = Counter()
    for o in items:
        key = f"{o.status} " + (",".join(o.codes) if o.codes else "ok")
        if o.status == 0:
            key = f"no answer ({o.error})"
        codes[key] += 1
    lat = [o.latency for o in items if o.status]
    return {
        "requests": len(items),
        "answers": dict(codes.most_common()),
        "p50_ms": _ms(harness.percentile(lat, 0.5)),
        "p99_ms": _ms(harness.percentile(lat, 0.99)),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


# ---- the faults ----------------------------------------------------------------------------


def registry_fault(name: str, **faults: Any) -> Fault:
    async def inject(stack: Stack) -> None:
        await stack.faults(**faults)

    async def restore(stack: Stack) -> None:
        await stack.faults()

    return Fault(name, "", EXPECTED["registry"], inject, restore)


async def _registry_reset(stack: Stack) -> None:
    await stack.proxies["registries"].reset()


async def _registry_up(stack: Stack) -> None:
    await stack.proxies["registries"].up()


@dataclass
class Locker:
    """Another process holding the SQLite write lock (``BEGIN IMMEDIATE``)."""

    process: subprocess.Popen[bytes] | None = None


_LOCKER = Locker()
_HOLD = (
    "import sqlite3, sys, time\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
    "db.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


async def _lock_sqlite(stack: Stack) -> None:
    path = stack.store_url[len("sqlite:///") :]
    process = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", _HOLD, path, "120"], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    await asyncio.to_thread(process.stdout.readline)  # holds the lock from here on
    _LOCKER.process = process


async def _unlock_sqlite(stack: Stack) -> None:
    if _LOCKER.process is not None:
        _LOCKER.process.kill()
        _LOCKER.process.wait(timeout=10)
        _LOCKER.process = None


async def _fill_disk(stack: Stack) -> None:
    assert stack.mount is not None
    filler = stack.mount / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        block = b"\0" * 65536
        while True:
            handle.write(block)
            handle.flush()


async def _free_disk(stack: Stack) -> None:
    assert stack.mount is not None
    with contextlib.suppress(FileNotFoundError):
        (stack.mount / "filler").unlink()


def proxy_fault(name: str, proxy: str, dependency: str, expected: set[str]) -> Fault:
    async def inject(stack: Stack) -> None:
        await stack.proxies[proxy].down()

    async def restore(stack: Stack) -> None:
        await stack.proxies[proxy].up()

    return Fault(name, dependency, expected, inject, restore, stack="scaled")


def faults() -> list[Fault]:
    return [
        registry_fault("registry answers 500", status=500),
        registry_fault("registry times out", timeout=True),
        Fault(
            "registry resets connections",
            "BVV",
            EXPECTED["registry"],
            _registry_reset,
            _registry_up,
        ),
        registry_fault("registry returns malformed JSON", malformed=True),
        registry_fault("registry answers in 10 s", latency=10.0),
        Fault(
            "SQLite file locked by another process",
            "audit",
            EXPECTED["audit"],
            _lock_sqlite,
            _unlock_sqlite,
        ),
        Fault("SQLite disk full", "audit", EXPECTED["audit"], _fill_disk, _free_disk),
        proxy_fault("PostgreSQL stopped and restarted", "postgres", "audit", EXPECTED["audit"]),
        proxy_fault("Redis stopped and restarted", "redis", "quota", EXPECTED["quota"]),
    ]


# ---- the stacks ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sqlite_stack(work: Path, mount: bool) -> Any:
    """One gateway on SQLite (state on a small tmpfs when it can be mounted), mocks behind a
    proxy."""
    state = work / "sqlite-state"
    state.mkdir(parents=True, exist_ok=True)
    mounted = mount and _mount_tmpfs(state, "256m")
    mocks_port = harness.free_port()
    mocks = harness.start_mocks(mocks_port, work / "mocks.log")
    proxy = TcpProxy("127.0.0.1", mocks_port)
    gateways: list[harness.Gateway] = []
    try:
        if not await harness.wait_http(f"http://127.0.0.1:{mocks_port}/health"):
            raise RuntimeError("mock registries did not start")
        await proxy.up()
        base = f"http://127.0.0.1:{proxy.port}"
        env = harness.gateway_env(state, registries=f"bvv={base}/bvv,coa={base}/coa,ind={base}/ind")
        gw = harness.Gateway(harness.free_port(), env, work / "gateway-sqlite.log")
        gateways.append(gw)
        gw.start()
        if not await gw.wait_ready():
            raise RuntimeError(f"gateway did not become ready; see {gw.log}")
        yield Stack(
            gateways,
            f"sqlite:///{state / 'audit.db'}",
            state,
            mocks,
            f"http://127.0.0.1:{mocks_port}",
            {"registries": proxy},
            state if mounted else None,
        )
    finally:
        harness.terminate_all(gateways)
        await proxy.close()
        mocks.terminate()
        mocks.wait(timeout=10)
        if mounted:
            await asyncio.to_thread(subprocess.run, ["umount", "-l", str(state)], check=False)


def _mount_tmpfs(path: Path, size: str) -> bool:
    """A small tmpfs at ``path`` (needs root); False when it cannot be mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@contextlib.asynccontextmanager
async def scaled_stack(work: Path) -> Any:
    """Two gateways; PostgreSQL (a fresh database) and Redis each behind a proxy."""
    from bench.cluster import Cluster

    pg_proxy = TcpProxy(*harness.postgres_address())
    redis_proxy = TcpProxy(*harness.redis_address())
    await pg_proxy.up()
    await redis_proxy.up()
    mocks_port = harness.free_port()
    mocks = harness.start_mocks(mocks_port, work / "mocks-scaled.log")
    try:
        if not await harness.wait_http(f"http://127.0.0.1:{mocks_port}/health"):
            raise RuntimeError("mock registries did not start")
        base = f"http://127.0.0.1:{mocks_port}"
        async with Cluster.started(
            work / "scaled",
            processes=2,
            postgres_port=pg_proxy.port,
            redis_port=redis_proxy.port,
            registries=f"bvv={base}/bvv,coa={base}/coa,ind={base}/ind",
        ) as cluster:
            yield Stack(
                cluster.gateways,
                cluster.audit_url,
                cluster.state,
                mocks,
                base,
                {"postgres": pg_proxy, "redis": redis_proxy},
            )
    finally:
        await pg_proxy.close()
        await redis_proxy.close()
        mocks.terminate()
        mocks.wait(timeout=10)


# ---- crashes -------------------------------------------------------------------------------


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
    t_term = time.monotonic() - _started(load)
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
    trail = await harness.trail_entries(stack.store_url)
    counts = harness.tally([*outcomes, *after], trail)
    # In flight: sent well before the signal (50 ms: the request had reached the server).
    in_flight = [o for o in outcomes if o.t < t_term - 0.05 and o.t + o.latency > t_term]
    dropped = [o for o in in_flight if o.status == 0]
    answered_late = [o for o in outcomes if o.t > t_term + exit_s and o.status != 0]
    good_after = [o.t + o.latency for o in after if o.status == 200]
    ok, line = await harness.verify(stack.store_url)
    result = {
        "fault": "SIGTERM during traffic",
        "stack": "sqlite",
        "requests": counts["requests"],
        "phases": {"until exit": _phase_counts(outcomes), "after restart": _phase_counts(after)},
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
    trail = await harness.trail_entries(stack.store_url)
    counts = harness.tally(outcomes, trail)
    received = [o for o in outcomes if o.status == 200]
    missing = [o for o in received if o.has_data and o.trace_id not in trail]
    ok, line = await harness.verify(stack.store_url)
    result = {
        "fault": "SIGKILL during group commits",
        "stack": "sqlite",
        "kills": kills,
        "requests": counts["requests"],
        "phases": {"all": _phase_counts(outcomes)},
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
        ok, line = await harness.verify(stack.store_url)
        notes.append(
            f"SQLite trail after every fault: audit verify {'OK' if ok else 'FAILED'}: {line}"
        )
    scaled = [f for f in all_faults if f.stack == "scaled" and wanted(f.name)]
    if scaled:
        async with scaled_stack(work) as stack:
            for fault in scaled:
                results.append(await run_fault(stack, fault, plan))
            ok, line = await harness.verify(stack.store_url)
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
