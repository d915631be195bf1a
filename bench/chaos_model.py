"""Chaos run: its plan, the stacks and faults it works with, and how a phase is judged."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import harness, observe
from bench.proxy import TcpProxy
from bench.traffic import Load, Outcome

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


@dataclass
class Fault:
    name: str
    dependency: str  # a /readyz check name, or "" when readiness cannot see this fault
    expected: set[str]
    inject: Callable[[Stack], Awaitable[None]]
    restore: Callable[[Stack], Awaitable[None]]
    stack: str = "sqlite"


def load_started(load: Load) -> float:
    return getattr(load, "started", time.monotonic())


async def stack_ready(stack: Stack) -> bool:
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
    counts = observe.tally(outcomes, after_trail)
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
        "phases": {name: phase_counts(items) for name, items in phases.items()},
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


def phase_counts(items: list[Outcome]) -> dict[str, Any]:
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
        "p50_ms": _ms(observe.percentile(lat, 0.5)),
        "p99_ms": _ms(observe.percentile(lat, 0.99)),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


# ---- the faults ----------------------------------------------------------------------------
