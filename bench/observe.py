"""What the soak and chaos runs measure: process samples, the trail, the tally, the logs.

Counting against the trail reads the ``audit_entry`` table directly (trace id and record count
of every entry), so the check does not go through the code it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.traffic import Outcome

#: Log lines that are documented refusals or injected faults, not errors of ours.
DOCUMENTED = re.compile(
    r"audit transaction of \d+ batch\(es\) failed|audit store|registry|quota store|"
    r"redis|REGISTRY_UNAVAILABLE|AUDIT_UNAVAILABLE|QUOTA_UNAVAILABLE|"
    r"Shutting down|Waiting for|Finished server process|Started server process|"
    r"Application (startup|shutdown)|Uvicorn running",
    re.IGNORECASE,
)
ERROR_LINE = re.compile(r"error|traceback|exception|critical", re.IGNORECASE)


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far (all its threads; None once gone).

    CPU time, unlike req/s or latency, does not depend on what else runs on the machine: the
    soak divides its growth over a run by the requests answered (CPU-ms per request)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces: count the fields after its ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    return None


@dataclass
class CpuMeter:
    """CPU seconds per named group of processes between :meth:`start` and :meth:`stop`.

    A process gone by the end is left out of its group; one that joined it after the start
    (:meth:`stop`'s ``joined``, e.g. a connection opened during the run) counts whole."""

    pids: Mapping[str, Sequence[int]]
    _before: dict[int, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._before = {
            pid: sec
            for pids in self.pids.values()
            for pid in pids
            if (sec := cpu_seconds(pid)) is not None
        }

    def stop(self, joined: Mapping[str, Sequence[int]] | None = None) -> None:
        self.used = {}
        for name, pids in self.pids.items():
            total = 0.0
            for pid in {*pids, *(joined or {}).get(name, ())}:
                after, before = cpu_seconds(pid), self._before.get(pid, 0.0)
                if after is not None and before is not None:
                    total += after - before
            self.used[name] = total

    def per_request_ms(self, requests: int) -> dict[str, float | None]:
        """CPU-ms per request of each named group (``None`` without requests)."""
        return {
            name: round(sec * 1000 / requests, 2) if requests else None
            for name, sec in self.used.items()
        }


async def postgres_backends(store_url: str) -> list[int]:
    """Pids of the PostgreSQL server processes serving ``store_url``'s database (local server:
    their CPU counts on this machine's cores too)."""
    import asyncpg

    conn = await asyncpg.connect(store_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(r[0]) for r in rows]


def fds(pid: int) -> tuple[int, int]:
    """Open file descriptors and, among them, sockets."""
    total = sockets = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            total += 1
            with contextlib.suppress(OSError):
                if os.readlink(entry.path).startswith("socket:"):
                    sockets += 1
    return total, sockets


@dataclass
class Sampler:
    """Once a second: req/s, p50/p99 of that second, RSS, fds and sockets of the gateways."""

    pids: Sequence[int]
    outcomes: list[Outcome]
    started: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    _seen: int = 0

    async def run(self, stop: asyncio.Event, period: float = 1.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
            self.sample()

    def sample(self) -> None:
        new = self.outcomes[self._seen :]
        self._seen = len(self.outcomes)
        lat = sorted(o.latency for o in new)
        rss = [rss_kib(p) for p in self.pids]
        fd = [fds(p) for p in self.pids]
        self.samples.append(
            {
                "t": round(time.monotonic() - self.started, 2),
                "answers": len(new),
                "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
                "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2)
                if lat
                else None,
                "rss_kib": sum(rss),
                "fds": sum(f[0] for f in fd),
                "sockets": sum(f[1] for f in fd),
            }
        )


# ---- the trail -----------------------------------------------------------------------------


async def trail_entries(store_url: str) -> dict[str, int]:
    """trace id → records (sum of ``record_count``) of every entry in the trail."""
    out: Counter[str] = Counter()
    if store_url.startswith("sqlite:///"):
        path = store_url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 5000")
            for trace_id, count in db.execute("SELECT trace_id, record_count FROM audit_entry"):
                out[trace_id] += count
        return dict(out)
    import asyncpg

    conn = await asyncpg.connect(store_url, timeout=10)
    try:
        for row in await conn.fetch("SELECT trace_id, record_count FROM audit_entry"):
            out[row[0]] += row[1]
    finally:
        await conn.close()
    return dict(out)


async def verify(store_url: str) -> tuple[bool, str]:
    """The store's chain walk — what ``ketenpoort audit verify`` runs — as (ok, one line)."""
    from bench.reliability_api import open_store

    store = open_store(store_url)
    await store.open()
    try:
        result = await store.verify()
    finally:
        await store.close()
    if result.ok:
        return True, f"OK: {result.detail}"
    where = f"entry seq {result.first_broken_seq}" if result.first_broken_seq else "head"
    return False, f"BROKEN at {where}: {result.detail} ({result.checked} entries checked)"


def log_errors(logs: Iterable[Path]) -> list[str]:
    """Lines of the server logs that look like errors and are not documented refusals."""
    found: list[str] = []
    for log in logs:
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                if ERROR_LINE.search(line) and not DOCUMENTED.search(line):
                    found.append(line.strip()[:300])
    return found


# ---- counting ------------------------------------------------------------------------------

#: 503 codes the README documents for a failing dependency.
DOCUMENTED_503 = {"AUDIT_UNAVAILABLE", "QUOTA_UNAVAILABLE"}


def tally(
    outcomes: Sequence[Outcome],
    trail: Mapping[str, int],
    documented_503: frozenset[str] = frozenset(DOCUMENTED_503),
) -> dict[str, Any]:
    """Counters of one scenario: by status and code, unrecorded, leaks, undocumented 5xx
    (any 5xx but a 503 with only ``documented_503`` codes: none at all without a fault)."""
    by_status: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    unrecorded = leaks = undocumented = transport = 0
    with_data = 0
    for o in outcomes:
        by_status[str(o.status)] += 1
        by_kind[o.kind] += 1
        for code in o.codes or ("-",):
            by_code[code] += 1
        leaks += o.leaks
        if o.status == 0:
            transport += 1
        if o.has_data:
            with_data += 1
            if o.trace_id not in trail:
                unrecorded += 1
        if o.status >= 500 and not (o.status == 503 and o.codes and set(o.codes) <= documented_503):
            undocumented += 1
    return {
        "requests": len(outcomes),
        "answered": len(outcomes) - transport,
        "no_answer": transport,
        "with_data": with_data,
        "by_status": dict(sorted(by_status.items())),
        "by_code": dict(sorted(by_code.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "unrecorded": unrecorded,
        "leaks": leaks,
        "undocumented_5xx": undocumented,
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
