"""What the soak and chaos runs share: gateway processes, sampling, the trail, the verdict.

Everything is loopback and bounded: processes are started with a deadline for readiness and
stopped with SIGTERM, then SIGKILL after a grace period. Counting against the trail reads the
``audit_entry`` table directly (trace id and record count of every entry), so the check does not
go through the code it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from bench.traffic import Outcome

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
#: KETENPOORT_SHUTDOWN_GRACE of the gateways the runs start (the default).
SHUTDOWN_GRACE_S = 10.0
POSTGRES_URL = os.environ.get(
    "KETENPOORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("KETENPOORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
#: Log lines that are documented refusals or injected faults, not errors of ours.
DOCUMENTED = re.compile(
    r"audit transaction of \d+ batch\(es\) failed|audit store|registry|quota store|"
    r"redis|REGISTRY_UNAVAILABLE|AUDIT_UNAVAILABLE|QUOTA_UNAVAILABLE|"
    r"Shutting down|Waiting for|Finished server process|Started server process|"
    r"Application (startup|shutdown)|Uvicorn running",
    re.IGNORECASE,
)
ERROR_LINE = re.compile(r"error|traceback|exception|critical", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    """One ``ketenpoort serve`` child process."""

    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        argv = [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, limit: float = READY_TIMEOUT_S) -> bool:
        """Whether /readyz answers 200 within ``limit`` seconds (False if the process died)."""
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return True
                await asyncio.sleep(0.2)
        return False

    async def readyz(self) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                r = await client.get(self.url + "/readyz")
                body = r.json()
                return {"status": r.status_code, "checks": body.get("checks", {})}
        except (httpx.HTTPError, ValueError) as exc:
            return {"status": 0, "error": type(exc).__name__}

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace``; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def gateway_env(state: Path, **settings: str) -> dict[str, str]:
    """The environment of a gateway child: the repo importable, KETENPOORT_* as given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETENPOORT_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["KETENPOORT_STATE"] = str(state)
    env["KETENPOORT_TRACES"] = "none"
    for key, value in settings.items():
        env[f"KETENPOORT_{key.upper()}"] = value
    return env


# ---- the mock registries in their own process ------------------------------------------


def start_mocks(port: int, log: Path) -> subprocess.Popen[bytes]:
    """``python -m bench.fault_mocks`` on ``port`` (faults switchable over HTTP)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fault_mocks", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return process


async def wait_http(url: str, limit: float = 60.0) -> bool:
    """Whether ``url`` answers 200 within ``limit`` seconds."""
    return await until(lambda: _get_ok(url), limit) is not None


async def _get_ok(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        return (await client.get(url)).status_code == 200


async def until(
    check: Callable[[], Awaitable[bool]], limit: float, step: float = 0.1
) -> float | None:
    """Seconds until ``check()`` is true, or ``None`` after ``limit`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        with contextlib.suppress(Exception):
            if await check():
                return time.monotonic() - t0
        await asyncio.sleep(step)
    return None


def registries_setting(base: str) -> str:
    """KETENPOORT_REGISTRIES for the mocks at ``base``."""
    return f"bvv={base}/bvv,coa={base}/coa,ind={base}/ind"


@contextlib.asynccontextmanager
async def mocks_process(log: Path) -> AsyncIterator[str]:
    """The mock registries in their own process, for the run's duration; yields their URL."""
    port = free_port()
    process = start_mocks(port, log)
    try:
        if not await wait_http(f"http://127.0.0.1:{port}/health"):
            raise RuntimeError(f"the mock registries did not start; see {log}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def trim_mocks(base: str, stop: asyncio.Event, period: float = 2.0) -> None:
    """Keep the mocks' record of served calls empty (a test aid that grows without bound)."""
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                await client.post(base + "/_trim")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)


# ---- process figures -----------------------------------------------------------------------


def postgres_address() -> tuple[str, int]:
    """Host and port of the PostgreSQL server the runs use (KETENPOORT_TEST_POSTGRES)."""
    parsed = urlparse(POSTGRES_URL)
    return parsed.hostname or "127.0.0.1", parsed.port or 5432


def redis_address() -> tuple[str, int]:
    """Host and port of the Redis server the runs use (KETENPOORT_TEST_REDIS)."""
    parsed = urlparse(REDIS_URL)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


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


def terminate_all(gateways: Iterable[Gateway]) -> None:
    for gw in gateways:
        with contextlib.suppress(Exception):
            gw.stop(grace=10)


def kill(gw: Gateway) -> None:
    gw.signal(signal.SIGKILL)
    if gw.process is not None:
        gw.process.wait(timeout=10)
