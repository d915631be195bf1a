"""Chaos run: the two stacks it starts (one SQLite process; two processes on PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos_model import (
    Stack,
)
from bench.proxy import TcpProxy


@contextlib.asynccontextmanager
async def sqlite_stack(work: Path, mount: bool) -> Any:
    """One gateway on SQLite (state on a small tmpfs when it can be mounted), mocks behind a
    proxy."""
    state = work / "sqlite-state"
    state.mkdir(parents=True, exist_ok=True)
    mounted = mount and _mount_tmpfs(state, "256m")
    mocks_port = harness.free_port()
    mocks = harness.start_mocks(mocks_port, work / "mocks.log")
    proxy = TcpProxy("127.0.0.1", mocks_port)
    gateways: list[harness.Gateway] = []
    try:
        if not await harness.wait_http(f"http://127.0.0.1:{mocks_port}/health"):
            raise RuntimeError("mock registries did not start")
        await proxy.up()
        base = f"http://127.0.0.1:{proxy.port}"
        env = harness.gateway_env(state, registries=f"bvv={base}/bvv,coa={base}/coa,ind={base}/ind")
        gw = harness.Gateway(harness.free_port(), env, work / "gateway-sqlite.log")
        gateways.append(gw)
        gw.start()
        if not await gw.wait_ready():
            raise RuntimeError(f"gateway did not become ready; see {gw.log}")
        yield Stack(
            gateways,
            f"sqlite:///{state / 'audit.db'}",
            state,
            mocks,
            f"http://127.0.0.1:{mocks_port}",
            {"registries": proxy},
            state if mounted else None,
        )
    finally:
        harness.terminate_all(gateways)
        await proxy.close()
        mocks.terminate()
        mocks.wait(timeout=10)
        if mounted:
            await asyncio.to_thread(subprocess.run, ["umount", "-l", str(state)], check=False)


def _mount_tmpfs(path: Path, size: str) -> bool:
    """A small tmpfs at ``path`` (needs root); False when it cannot be mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@contextlib.asynccontextmanager
async def scaled_stack(work: Path) -> Any:
    """Two gateways; PostgreSQL (a fresh database) and Redis each behind a proxy."""
    from bench.cluster import Cluster

    pg_proxy = TcpProxy(*harness.postgres_address())
    redis_proxy = TcpProxy(*harness.redis_address())
    await pg_proxy.up()
    await redis_proxy.up()
    mocks_port = harness.free_port()
    mocks = harness.start_mocks(mocks_port, work / "mocks-scaled.log")
    try:
        if not await harness.wait_http(f"http://127.0.0.1:{mocks_port}/health"):
            raise RuntimeError("mock registries did not start")
        base = f"http://127.0.0.1:{mocks_port}"
        async with Cluster.started(
            work / "scaled",
            processes=2,
            postgres_port=pg_proxy.port,
            redis_port=redis_proxy.port,
            registries=f"bvv={base}/bvv,coa={base}/coa,ind={base}/ind",
        ) as cluster:
            yield Stack(
                cluster.gateways,
                cluster.audit_url,
                cluster.state,
                mocks,
                base,
                {"postgres": pg_proxy, "redis": redis_proxy},
            )
    finally:
        await pg_proxy.close()
        await redis_proxy.close()
        mocks.terminate()
        mocks.wait(timeout=10)


# ---- crashes -------------------------------------------------------------------------------
