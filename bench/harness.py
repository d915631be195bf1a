"""What the soak and chaos runs share: gateway and mock processes, ports, addresses.

Everything is loopback and bounded: processes are started with a deadline for readiness and
stopped with SIGTERM, then SIGKILL after a grace period. What the runs measure (samples, the
trail, the tally) is in :mod:`bench.observe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
#: KETENPOORT_SHUTDOWN_GRACE of the gateways the runs start (the default).
SHUTDOWN_GRACE_S = 10.0
POSTGRES_URL = os.environ.get(
    "KETENPOORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("KETENPOORT_TEST_REDIS", "redis://127.0.0.1:6379/0")


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


@dataclass(frozen=True, slots=True)
class Mocks:
    """The mock registries' process: its base URL and pid (for CPU accounting)."""

    url: str
    pid: int


@contextlib.asynccontextmanager
async def mocks_process(log: Path) -> AsyncIterator[Mocks]:
    """The mock registries in their own process, for the run's duration."""
    port = free_port()
    process = start_mocks(port, log)
    try:
        if not await wait_http(f"http://127.0.0.1:{port}/health"):
            raise RuntimeError(f"the mock registries did not start; see {log}")
        yield Mocks(f"http://127.0.0.1:{port}", process.pid)
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


def terminate_all(gateways: Iterable[Gateway]) -> None:
    for gw in gateways:
        with contextlib.suppress(Exception):
            gw.stop(grace=10)


def kill(gw: Gateway) -> None:
    gw.signal(signal.SIGKILL)
    if gw.process is not None:
        gw.process.wait(timeout=10)
