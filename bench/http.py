"""Over HTTP: uvicorn (one worker, loopback), load from a second process.

``python -m bench.http serve ...`` runs one server (``bare`` or the real ``ketenpoort`` app);
``python -m bench.http load`` is the load driver (httpx, bounded in count and time) when
``wrk`` is not on PATH. The orchestrator (:func:`run_http`) starts the servers, checks that each
answers the same data, warms them, then runs load phases round-robin over the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from bench.common import count_fields, median, payload, percentile

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class HttpCounts:
    rounds: int
    phase_seconds: float
    max_requests: int
    concurrency: int
    warmup: int


FULL_HTTP = HttpCounts(rounds=3, phase_seconds=4.0, max_requests=50_000, concurrency=8, warmup=30)
QUICK_HTTP = HttpCounts(rounds=1, phase_seconds=0.3, max_requests=40, concurrency=2, warmup=2)


# --- the servers (child processes) ---------------------------------------------------------------


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bench.common import dataset
    from bench.variants import bare_schema, encode
    from gateway.pipeline.answer import Answer
    from mocks import Population

    schema = bare_schema(dataset(Population(), 100).records)

    async def graphql_post(request: Request) -> Response:
        body = json.loads(await request.body())
        result = await schema.execute(
            body["query"],
            variable_values=body.get("variables"),
            operation_name=body.get("operationName"),
        )
        # The gateway's encoding (Answer.encode), so only the work in between differs.
        data = Answer(200, encode(result)).encode()
        return Response(data, media_type="application/json")

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/graphql", graphql_post, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def _ketenpoort_app(state: Path, policy: Path, store: str) -> Any:
    from bench.variants import MemoryAuditStore, NullExporter, state_settings
    from gateway.http.app import create_app

    if store == "memory":  # diagnostic: everything real except the audit store
        settings = state_settings(state, policy)
        return create_app(settings, exporter=NullExporter(), audit_store=MemoryAuditStore(keep=64))
    settings = state_settings(state, policy, audit_store=store)
    return create_app(settings, exporter=NullExporter())


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http serve")
    parser.add_argument("--variant", choices=("bare", "ketenpoort"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--policy", type=Path)
    parser.add_argument("--store", default="")
    args = parser.parse_args(argv)
    import uvicorn

    if args.variant == "bare":
        app = _bare_app()
    else:
        app = _ketenpoort_app(args.state, args.policy, args.store)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# --- the httpx load driver (child process) -------------------------------------------------------


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


async def _drive() -> None:
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


# --- orchestration (the benchmark process) -------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"server {self.name} not ready in {timeout}s: {self.log.read_text()[-2000:]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(
    name: str, variant: str, work: Path, headers: dict[str, str], **options: str
) -> Server:
    port = free_port()
    log = work / f"server-{name}.log"
    command = [
        sys.executable,
        "-m",
        "bench.http",
        "serve",
        "--variant",
        variant,
        "--port",
        str(port),
    ]
    for key, value in options.items():
        command += [f"--{key}", value]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env
        )
    return Server(name, port, process, log, headers)


class HttpxLoad:
    """The httpx driver in a second process, kept for all phases (warm connections)."""

    name = "httpx"

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.http", "load"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def phase(self, server: Server, body: str, counts: HttpCounts) -> dict[str, Any]:
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

    def phase(self, server: Server, body: str, counts: HttpCounts) -> dict[str, Any]:
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


def _check(server: Server, body: str) -> tuple[int, Any]:
    response = httpx.post(
        server.url,
        content=body.encode(),
        headers={"content-type": "application/json", **server.headers},
        timeout=30,
    )
    answer = response.json()
    if response.status_code != 200 or "errors" in answer:
        raise RuntimeError(f"{server.name} answered {response.status_code}: {str(answer)[:500]}")
    return count_fields(answer["data"]), answer["data"]


def _warm(server: Server, body: str, n: int) -> None:
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            client.post(
                server.url,
                content=body.encode(),
                headers={"content-type": "application/json", **server.headers},
            )


def summarise(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of req/s and of the percentiles."""

    def med(key: str) -> float | None:
        values = [p[key] for p in phases if p.get(key) is not None]
        return round(median(values), 2) if values else None

    shares = [p["client_cpu"] for p in phases if p.get("client_cpu") is not None]
    return {
        "rps": med("rps"),
        "client_cpu_max": max(shares) if shares else None,
        "generator_saturated": bool(shares) and max(shares) >= SATURATED,
        "p50_ms": med("p50_ms"),
        "p90_ms": med("p90_ms"),
        "p99_ms": med("p99_ms"),
        "client_cpu": med("client_cpu"),
        "requests": sum(p["requests"] for p in phases),
        "errors": sum(p["errors"] for p in phases),
        "rounds": [
            {k: (round(v, 2) if isinstance(v, float) else v) for k, v in p.items()} for p in phases
        ],
    }


@contextmanager
def _servers(
    specs: list[tuple[str, str, dict[str, str], dict[str, str]]], work: Path
) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for name, variant, headers, options in specs:
            started.append(start_server(name, variant, work, headers, **options))
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def run_http(
    *,
    work: Path,
    policy: Path,
    query: str,
    sizes: Mapping[str, list[str]],
    counts: HttpCounts,
    client: str,
    postgres_url: str | None,
) -> dict[str, Any]:
    """Run bare / ketenpoort (SQLite) / ketenpoort (PostgreSQL) side by side over HTTP.

    A fourth server, ``ketenpoort_memstore``, is the real app with the audit store replaced by
    an in-memory list: a diagnostic that separates the store's share from the rest.
    """
    from bench.common import ORGANISATION, PURPOSE, ROLES, load_bench_policy
    from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
    from gateway.config import Settings

    loaded = load_bench_policy(policy)
    oin = loaded.organisations[ORGANISATION].oin
    activity = loaded.purposes[PURPOSE].processing_activities[0]

    def token_headers(state: Path) -> dict[str, str]:
        state.mkdir(parents=True, exist_ok=True)
        base = Settings()
        token = mint_dev_token(
            load_or_create_dev_key(state),
            issuer=base.issuer,
            audience=base.audience,
            subject="regievoerder-http",
            oin=oin,
            organisation=ORGANISATION,
            roles=list(ROLES),
            purposes=[PURPOSE],
            ttl=6 * 3600,
        )
        return {
            "authorization": f"Bearer {token}",
            "x-doelbinding": PURPOSE,
            "x-verwerking": activity,
        }

    specs: list[tuple[str, str, dict[str, str], dict[str, str]]] = [("bare", "bare", {}, {})]
    state = work / "state-http-sqlite"
    specs.append(
        (
            "ketenpoort",
            "ketenpoort",
            token_headers(state),
            {
                "state": str(state),
                "policy": str(policy),
                "store": f"sqlite:///{state / 'audit.db'}",
            },
        )
    )
    state_mem = work / "state-http-memstore"
    specs.append(
        (
            "ketenpoort_memstore",
            "ketenpoort",
            token_headers(state_mem),
            {"state": str(state_mem), "policy": str(policy), "store": "memory"},
        )
    )
    if postgres_url is not None:
        state_pg = work / "state-http-pg"
        specs.append(
            (
                "ketenpoort_pg",
                "ketenpoort",
                token_headers(state_pg),
                {"state": str(state_pg), "policy": str(policy), "store": postgres_url},
            )
        )
    wrk = ensure_wrk() if client in ("wrk", "auto") else None
    if client == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed and could not be installed with apt-get")
    load: HttpxLoad | WrkLoad = WrkLoad(work, wrk) if wrk is not None else HttpxLoad()
    results: dict[str, Any] = {"client": load.name, "concurrency": counts.concurrency}
    try:
        with _servers(specs, work) as servers:
            bodies = {
                size: json.dumps(payload(query, vnummers)) for size, vnummers in sizes.items()
            }
            fields: dict[str, int] = {}
            for size, body in bodies.items():
                reference = None
                for server in servers:
                    n, data = _check(server, body)
                    if reference is None:
                        reference = data
                    elif data != reference:
                        raise RuntimeError(f"{server.name} answers other data than bare over HTTP")
                    fields[size] = n
                    _warm(server, body, counts.warmup)
            for size, body in bodies.items():
                phases: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
                for index in range(counts.rounds):
                    shift = index % len(servers)
                    for server in servers[shift:] + servers[:shift]:
                        phases[server.name].append(load.phase(server, body, counts))
                results[size] = {
                    "persons": len(sizes[size]),
                    "fields": fields[size],
                    **{name: summarise(p) for name, p in phases.items()},
                }
    finally:
        load.close()
    return results


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("serve", "load"):
        raise SystemExit("usage: python -m bench.http serve|load ...")
    if argv[0] == "serve":
        serve(argv[1:])
    else:
        asyncio.run(_drive())


if __name__ == "__main__":
    main(sys.argv[1:])


__all__ = ["FULL_HTTP", "QUICK_HTTP", "HttpCounts", "parse_wrk", "run_http"]
