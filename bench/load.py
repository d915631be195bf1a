"""Load generators for the HTTP benchmark: ``wrk`` (one thread), or an httpx driver.

Both are bounded in count and time and report, per phase, requests, req/s, percentiles, errors
and the generator's own CPU share, so a saturated generator is seen rather than mistaken for a
slow server. ``python -m bench.load`` is the httpx driver's child process: one JSON command per
line on stdin, one JSON result per line on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

from bench.common import percentile

ROOT = Path(__file__).resolve().parent.parent


class Target(Protocol):
    """A server under load: its name, URL and the headers every request carries."""

    name: str
    headers: dict[str, str]

    @property
    def url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class HttpCounts:
    rounds: int
    phase_seconds: float
    max_requests: int
    concurrency: int
    warmup: int


async def _phase(
    clients: dict[str, httpx.AsyncClient], command: Mapping[str, Any]
) -> dict[str, Any]:
    url: str = command["url"]
    concurrency: int = command["concurrency"]
    client = clients.get(url)
    if client is None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        client = clients[url] = httpx.AsyncClient(limits=limits, timeout=30.0)
    body = command["body"].encode()
    headers = {"content-type": "application/json", **command["headers"]}
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + command["seconds"]
    budget = command["max_requests"]

    async def worker() -> None:
        nonlocal errors, issued
        while issued < budget and time.perf_counter() < deadline:
            issued += 1
            start = time.perf_counter_ns()
            response = await client.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter_ns() - start) / 1e6)
            if response.status_code != 200 or b'"errors"' in response.content:
                errors += 1

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "client_cpu": round(cpu / elapsed, 3) if elapsed else None,
    }


async def drive() -> None:
    """Read one JSON command per line on stdin, answer one JSON result per line on stdout."""
    clients: dict[str, httpx.AsyncClient] = {}
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            result = await _phase(clients, json.loads(line))
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        for client in clients.values():
            await client.aclose()


class HttpxLoad:
    """The httpx driver in a second process, kept for all phases (warm connections)."""

    name = "httpx"

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.load"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def phase(self, server: Target, body: str, counts: HttpCounts) -> dict[str, Any]:
        command = {
            "url": server.url,
            "headers": server.headers,
            "body": body,
            "concurrency": counts.concurrency,
            "seconds": counts.phase_seconds,
            "max_requests": counts.max_requests,
        }
        stdin: IO[str] | None = self.process.stdin
        stdout: IO[str] | None = self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError("the load driver exited")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests, req/s, percentiles and non-2xx from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    percentiles = {
        int(m.group(1)): _wrk_ms(m.group(2))
        for m in re.finditer(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {
        "requests": int(total.group(1)),
        "errors": errors,
        "seconds": _wrk_ms(total.group(2) + total.group(3)) / 1000,
        "rps": float(rps.group(1)),
        "p50_ms": percentiles.get(50),
        "p90_ms": percentiles.get(90),
        "p99_ms": percentiles.get(99),
        "client_cpu": None,
    }


#: A generator using this share of its one thread's core (CPU time / wall time) or more may be
#: what limits the rate: its phase gives no ratio.
SATURATED = 0.9


def ensure_wrk() -> str | None:
    """``wrk`` on PATH, installed with apt (Debian package ``wrk``) when missing and possible;
    ``None`` when it cannot be had (the httpx driver is used then, and the summary says so)."""
    found = shutil.which("wrk")
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        return None
    sudo: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(
            [*sudo, *command], capture_output=True, timeout=600, check=False, env=env
        )
        if done.returncode != 0:
            return None
    return shutil.which("wrk")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class WrkLoad:
    """``wrk`` (one thread) per phase: bounded by ``-d`` and a subprocess timeout. The
    generator's CPU share is its CPU time (user + system, from the children's rusage) over
    the phase's wall time."""

    name = "wrk"

    def __init__(self, work: Path, binary: str) -> None:
        self.work = work
        self.binary = binary

    def phase(self, server: Target, body: str, counts: HttpCounts) -> dict[str, Any]:
        script = self.work / f"wrk-{server.name}.lua"
        lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
        for key, value in {"content-type": "application/json", **server.headers}.items():
            lines.append(f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}")
        script.write_text("\n".join(lines) + "\n")
        seconds = max(1, round(counts.phase_seconds))
        cpu_before, wall_before = _children_cpu(), time.perf_counter()
        completed = subprocess.run(
            [
                self.binary,
                "-t1",
                f"-c{counts.concurrency}",
                f"-d{seconds}s",
                "--timeout",
                "30s",
                "--latency",
                "-s",
                str(script),
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        wall = time.perf_counter() - wall_before
        cpu = _children_cpu() - cpu_before
        if completed.returncode != 0:
            raise RuntimeError(f"wrk failed: {completed.stderr or completed.stdout}")
        result = parse_wrk(completed.stdout)
        result["client_cpu"] = round(cpu / wall, 3) if wall else None
        return result

    def close(self) -> None:
        return None


if __name__ == "__main__":
    asyncio.run(drive())
