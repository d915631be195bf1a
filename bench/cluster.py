"""Several gateway processes side by side, as behind a load balancer: one module for
``make serve-scaled`` (:func:`main`), the scale-out tests and the soak and chaos runs.

The processes serve on loopback and share:

* Redis for the record cache and the daily quotas;
* PostgreSQL for the audit trail: one hash chain, written by all;
* one state directory with the development signing key and the pseudonym key (created before
  the processes start, so they never race to create them), so a token from ``ketenpoort token``
  is accepted by all and a V-nummer has one pseudonym.

See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
import redis.asyncio as aioredis

from bench.harness import POSTGRES_URL, REDIS_URL, Gateway, free_port, gateway_env
from gateway.admission.tokens import load_or_create_dev_key
from gateway.observability.pseudonym import load_or_create_key

READY_TIMEOUT_S = 60.0
DEFAULT_REDIS = REDIS_URL
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/ketenpoort"
#: The server whose ``postgres`` database creates and drops the throw-away ones.
ADMIN_POSTGRES = POSTGRES_URL


class ClusterError(Exception):
    """A process died or did not become ready; the message carries the logs' tails."""


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return urlunparse(parsed._replace(netloc=netloc))
    return url


@dataclass
class Cluster:
    """Running gateway processes and what they share."""

    gateways: list[Gateway]
    state: Path
    audit_url: str

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    @classmethod
    def start(
        cls,
        base: Path,
        *,
        ports: Sequence[int],
        audit_url: str,
        redis_url: str,
        registries: str = "embedded",
        traces: str = "none",
        state: Path | None = None,
    ) -> Cluster:
        """Start one ``ketenpoort serve`` per port (not waiting for readiness)."""
        state = (state or base / "state").resolve()
        load_or_create_dev_key(state)
        load_or_create_key(state)
        env = gateway_env(
            state,
            mode="development",
            audit_store=audit_url,
            quota_store=redis_url,
            cache=redis_url,
            traces=traces,
            registries=registries,
        )
        cluster = cls([Gateway(p, env, base / f"gateway-{p}.log") for p in ports], state, audit_url)
        for gateway in cluster.gateways:
            gateway.start()
        return cluster

    def log_tail(self, chars: int = 2000) -> str:
        return "\n".join(
            f"--- {g.log.name} ---\n{g.log.read_text(errors='replace')[-chars:]}"
            for g in self.gateways
            if g.log.exists()
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll every process's /readyz (bounded); :class:`ClusterError` if one dies or stalls."""
        deadline = time.monotonic() + timeout
        pending = {g.url for g in self.gateways}
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for g in self.gateways:
                    if not g.alive():
                        raise ClusterError(
                            f"a gateway process exited with {g.process and g.process.returncode}"
                            f"\n{self.log_tail()}"
                        )
                for url in sorted(pending):
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{url}/readyz").status_code == 200:
                            pending.discard(url)
                if pending and time.monotonic() > deadline:
                    raise ClusterError(
                        f"not ready within {timeout:.0f} s: {sorted(pending)}\n{self.log_tail()}"
                    )
                if pending:
                    time.sleep(0.2)

    def stop(self, grace: float = 10.0) -> None:
        for g in self.gateways:
            g.signal(signal.SIGTERM)
        for g in self.gateways:
            g.stop(grace)

    @classmethod
    @contextlib.asynccontextmanager
    async def started(
        cls,
        base: Path,
        *,
        processes: int = 2,
        postgres_port: int | None = None,
        redis_port: int | None = None,
        registries: str = "embedded",
    ) -> AsyncIterator[Cluster]:
        """A running cluster on a fresh PostgreSQL database (dropped afterwards) and the
        local Redis; ``postgres_port`` / ``redis_port`` reach them through proxies instead."""
        await check_redis(DEFAULT_REDIS)
        name = f"ketenpoort_run_{secrets.token_hex(5)}"
        await create_database(ADMIN_POSTGRES, name)
        admin = urlparse(ADMIN_POSTGRES)
        netloc = admin.netloc
        if postgres_port is not None:
            netloc = f"{admin.username or 'postgres'}@127.0.0.1:{postgres_port}"
        audit_url = urlunparse(admin._replace(netloc=netloc, path=f"/{name}"))
        redis_url = DEFAULT_REDIS if redis_port is None else f"redis://127.0.0.1:{redis_port}/0"
        await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True)
        cluster = cls.start(
            base,
            ports=[free_port() for _ in range(processes)],
            audit_url=audit_url,
            redis_url=redis_url,
            registries=registries,
        )
        try:
            await asyncio.to_thread(cluster.wait_ready)
            yield cluster
        finally:
            await asyncio.to_thread(cluster.stop)
            await drop_database(ADMIN_POSTGRES, name)


async def check_redis(url: str) -> None:
    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        raise ClusterError(f"Redis is not reachable at {redacted(url)} ({exc})") from exc
    finally:
        await client.aclose()


async def _admin(url: str) -> asyncpg.Connection:
    admin_url = urlunparse(urlparse(url)._replace(path="/postgres"))
    try:
        return await asyncio.wait_for(asyncpg.connect(admin_url), 5)
    except Exception as exc:
        raise ClusterError(f"PostgreSQL is not reachable at {redacted(admin_url)} ({exc})") from exc


async def create_database(server: str, name: str) -> None:
    admin = await _admin(server)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
    finally:
        await admin.close()


async def drop_database(server: str, name: str) -> None:
    admin = await _admin(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name.replace(chr(34), "")}" WITH (FORCE)')
    finally:
        await admin.close()


# ---- make serve-scaled ---------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="serve-scaled", description="Run gateway processes side by side (make serve-scaled)."
    )
    parser.add_argument("--ports", default="8001,8002", help="Comma-separated ports.")
    parser.add_argument(
        "--state",
        type=Path,
        default=Path(os.environ.get("KETENPOORT_STATE", "var")),
        help="Shared state directory (default: $KETENPOORT_STATE or ./var).",
    )
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (cache and quotas).")
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help="Audit database URL; created if missing."
    )
    parser.add_argument("--traces", default="none", help="KETENPOORT_TRACES for all.")
    args = parser.parse_args(argv)
    try:
        args.ports = [int(p) for p in args.ports.split(",") if p.strip()]
    except ValueError:
        parser.error("--ports must be comma-separated numbers")
    if not args.ports or len(set(args.ports)) != len(args.ports):
        parser.error("--ports must name distinct ports")
    return args


def main(argv: list[str] | None = None) -> int:
    """``make serve-scaled``: run until Ctrl-C or SIGTERM; if one process exits, stop all."""
    args = parse_args(argv)
    try:
        asyncio.run(check_redis(args.redis))
        name = urlparse(args.postgres).path.lstrip("/")
        if not name:
            raise ClusterError("--postgres must name a database")
        asyncio.run(create_database(args.postgres, name))
    except ClusterError as exc:
        print(f"serve-scaled: {exc}", file=sys.stderr)
        return 1
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    state = args.state.resolve()
    cluster = Cluster.start(
        state / "logs",
        ports=args.ports,
        audit_url=args.postgres,
        redis_url=args.redis,
        traces=args.traces,
        state=state,
    )
    try:
        try:
            cluster.wait_ready()
        except ClusterError as exc:
            print(f"serve-scaled: {exc}", file=sys.stderr)
            return 1
        print(
            "serve-scaled: ready —",
            ", ".join(u + "/graphql" for u in cluster.urls),
            file=sys.stderr,
        )
        print(
            f"serve-scaled: audit {redacted(args.postgres)}, cache and quotas "
            f"{redacted(args.redis)}, state {state}, logs {state / 'logs'}",
            file=sys.stderr,
        )
        print(
            f"serve-scaled: token: KETENPOORT_STATE={state} ketenpoort token --org NVIK "
            "--role analist --doelbinding TOEZICHT_VW; Ctrl-C stops all",
            file=sys.stderr,
        )
        while not stopping:
            exited = [g for g in cluster.gateways if not g.alive()]
            if exited:
                code = exited[0].process.returncode if exited[0].process else 1
                print(
                    f"serve-scaled: a gateway exited ({code}); stopping the rest", file=sys.stderr
                )
                return code or 1
            time.sleep(0.5)
        return 0
    finally:
        cluster.stop()
