"""Chaos run: the dependency faults (registries, the SQLite lock and disk, PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from bench.chaos_model import (
    EXPECTED,
    Fault,
    Stack,
)


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
