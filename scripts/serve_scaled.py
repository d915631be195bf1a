"""Run two gateway processes side by side, as behind a load balancer (``make serve-scaled``).

Both processes serve on loopback (default ports 8001 and 8002) and share:

* Redis (default ``redis://127.0.0.1:6379/0``) for the record cache and the daily quotas;
* PostgreSQL (default database ``ketenpoort`` on 127.0.0.1:5432, created if missing) for the
  audit trail: one hash chain, written by both;
* one state directory (default ``./var``) with the development signing key and the pseudonym key,
  so a token from ``ketenpoort token`` is accepted by both and a V-nummer has one pseudonym.

Stop with Ctrl-C: both processes are terminated. If one exits, the other is stopped too.
See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse, urlunparse

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: import the gateway from the repo
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from gateway.admission.tokens import load_or_create_dev_key  # noqa: E402
from gateway.observability.pseudonym import load_or_create_key  # noqa: E402

READY_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ports", default="8001,8002", help="Comma-separated ports (default 8001,8002)."
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=Path(os.environ.get("KETENPOORT_STATE", "var")),
        help="Shared state directory (default: $KETENPOORT_STATE or ./var).",
    )
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="Redis URL (cache and quotas)."
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/ketenpoort",
        help="Audit database URL; the database is created if missing.",
    )
    parser.add_argument(
        "--traces", default="none", help="KETENPOORT_TRACES for both (default none)."
    )
    args = parser.parse_args(argv)
    try:
        args.ports = [int(p) for p in args.ports.split(",") if p.strip()]
    except ValueError:
        parser.error("--ports must be comma-separated numbers")
    if not args.ports or len(set(args.ports)) != len(args.ports):
        parser.error("--ports must name distinct ports")
    return args


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return urlunparse(parsed._replace(netloc=netloc))
    return url


async def check_redis(url: str) -> None:
    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        raise SystemExit(
            f"serve-scaled: Redis is not reachable at {redacted(url)} ({exc})"
        ) from exc
    finally:
        await client.aclose()


async def ensure_database(url: str) -> None:
    """Create the audit database if it does not exist (via the server's ``postgres`` database)."""
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if not name:
        raise SystemExit("serve-scaled: --postgres must name a database")
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    try:
        admin = await asyncio.wait_for(asyncpg.connect(admin_url), 5)
    except Exception as exc:
        raise SystemExit(
            f"serve-scaled: PostgreSQL is not reachable at {redacted(admin_url)} ({exc})"
        ) from exc
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = '"' + name.replace('"', '""') + '"'
            await admin.execute(f"CREATE DATABASE {quoted}")
            print(f"serve-scaled: created database {name}", file=sys.stderr)
    finally:
        await admin.close()


def start(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "gateway.cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(argv, cwd=REPO, env=env)  # noqa: S603 - fixed argv, no user input


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_ready(processes: list[subprocess.Popen[bytes]], ports: list[int]) -> bool:
    """Poll each process's /readyz until all are ready (bounded); False if one died or stalled."""
    pending = set(ports)
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while pending:
            if any(p.poll() is not None for p in processes):
                return False
            for port in sorted(pending):
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        pending.discard(port)
                except httpx.HTTPError:
                    pass
            if pending:
                if time.monotonic() > deadline:
                    print(
                        f"serve-scaled: not ready after {READY_TIMEOUT_S:.0f} s: ports "
                        f"{sorted(pending)} (see /readyz)",
                        file=sys.stderr,
                    )
                    return False
                time.sleep(0.25)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(check_redis(args.redis))
    asyncio.run(ensure_database(args.postgres))
    # Both processes must use the same keys: create them now, before they could race for them.
    state = args.state.resolve()
    load_or_create_dev_key(state)
    load_or_create_key(state)

    env = dict(os.environ)
    env.update(
        KETENPOORT_STATE=str(state),
        KETENPOORT_AUDIT_STORE=args.postgres,
        KETENPOORT_CACHE=args.redis,
        KETENPOORT_QUOTA_STORE=args.redis,
        KETENPOORT_TRACES=args.traces,
    )
    env.setdefault("KETENPOORT_MODE", "development")

    processes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for port in args.ports:
            processes.append(start(port, env))
        if not wait_ready(processes, args.ports):
            return 1
        print(
            "serve-scaled: ready —",
            ", ".join(f"http://127.0.0.1:{p}/graphql" for p in args.ports),
            file=sys.stderr,
        )
        print(
            f"serve-scaled: audit {redacted(args.postgres)}, "
            f"cache and quotas {redacted(args.redis)}, state {state}",
            file=sys.stderr,
        )
        print(
            f"serve-scaled: token: KETENPOORT_STATE={state} ketenpoort token --org NVIK "
            "--role analist --doelbinding TOEZICHT_VW; Ctrl-C stops both",
            file=sys.stderr,
        )
        while not stopping:
            exited = [p for p in processes if p.poll() is not None]
            if exited:
                print(
                    f"serve-scaled: a gateway exited ({exited[0].returncode}); stopping the rest",
                    file=sys.stderr,
                )
                return exited[0].returncode or 1
            time.sleep(0.5)
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
