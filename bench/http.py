"""Over HTTP: uvicorn (one worker, loopback), load from a second process.

``python -m bench.http serve ...`` runs one server (``bare`` or the real ``ketenpoort`` app);
the load comes from :mod:`bench.load` (``wrk``, or the httpx driver when ``wrk`` cannot be had).
The orchestrator (:func:`run_http`) starts the servers, checks that each
answers the same data, warms them, then runs load phases round-robin over the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import count_fields, median, payload
from bench.load import SATURATED, HttpCounts, HttpxLoad, WrkLoad, ensure_wrk

ROOT = Path(__file__).resolve().parent.parent


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
    if not argv or argv[0] != "serve":
        raise SystemExit("usage: python -m bench.http serve ...")
    serve(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])


__all__ = ["FULL_HTTP", "QUICK_HTTP", "run_http"]
