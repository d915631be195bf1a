"""Reliability under faults: a locked or full store answers fast and says so, searches are
bounded, a start failure is one line, and the short soak and chaos runs lose nothing.

The short runs (``python -m bench.soak --short``, ``python -m bench.chaos --short``) start real
gateway processes on loopback; their counters are the acceptance criteria of ``make soak`` and
``make chaos`` in miniature.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench import chaos, soak
from bench.harness import ROOT, free_port, gateway_env
from gateway.audit import writer
from gateway.audit.model import AuditQuery
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.audit.store import AuditUnavailable
from tests.test_audit_store import batch


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteAuditStore]:
    store = SQLiteAuditStore(str(tmp_path / "audit.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_locked_store_is_unready_and_refuses_within_seconds(
    sqlite_store: SQLiteAuditStore, tmp_path: Path
) -> None:
    await sqlite_store.commit(batch())
    assert await sqlite_store.ready()
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert not await sqlite_store.ready()
        started = time.monotonic()
        with pytest.raises(AuditUnavailable) as caught:
            await sqlite_store.commit(batch())
        assert time.monotonic() - started < 3.0, "a locked store held the request"
        assert "Error" not in caught.value.message, "an internal exception class was named"
    finally:
        other.execute("ROLLBACK")
        other.close()
    await sqlite_store.commit(batch())  # the lock is gone: the next commit succeeds
    assert await sqlite_store.ready()
    records = await sqlite_store.search(AuditQuery(limit=1000))
    assert {r.seq for r in records} == {1, 2}, "the refused batch must not be in the trail"


async def test_a_search_is_bounded_and_its_error_names_no_class(
    sqlite_store: SQLiteAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck(_q: AuditQuery) -> list[object]:
        await asyncio.sleep(30)
        return []

    monkeypatch.setattr(writer, "SEARCH_TIMEOUT_S", 0.2)
    monkeypatch.setattr(sqlite_store, "_search", stuck)
    started = time.monotonic()
    with pytest.raises(AuditUnavailable, match="took longer"):
        await sqlite_store.search(AuditQuery(limit=10))
    assert time.monotonic() - started < 2.0

    async def broken(_q: AuditQuery) -> list[object]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store, "_search", broken)
    with pytest.raises(AuditUnavailable) as caught:
        await sqlite_store.search(AuditQuery(limit=10))
    assert caught.value.message == "the audit trail could not be searched"


async def test_a_transient_read_lock_is_retried(
    sqlite_store: SQLiteAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sqlite_store.commit(batch())
    real = sqlite_store._search_once
    failures = iter([sqlite3.OperationalError("database is locked")])

    async def flaky(sql: str, params: list[object], limit: int) -> list[object]:
        error = next(failures, None)
        if error is not None:
            raise error
        return await real(sql, params, limit)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_store, "_search_once", flaky)
    assert await sqlite_store.search(AuditQuery(limit=100))


def test_serve_with_postgres_unreachable_says_so_in_one_line(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    env = gateway_env(tmp_path, audit_store=f"postgresql://postgres@127.0.0.1:{closed}/none")
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ketenpoort: cannot start: audit store cannot be opened")
    assert str(closed) in lines[0]


@pytest.mark.timeout(240)
async def test_short_soak_and_chaos_lose_nothing(tmp_path: Path) -> None:
    soaked = await soak.run(soak.SHORT, ["sqlite", "scaled"], tmp_path / "soak")
    for scenario in soaked["scenarios"]:
        name = scenario["scenario"]
        assert scenario["requests"] > 0, name
        assert scenario["unrecorded"] == 0, name
        assert scenario["leaks"] == 0, name
        assert scenario["undocumented_5xx"] == 0, name
        assert scenario["no_answer"] == 0, name
        assert scenario["audit_verify"]["ok"], (name, scenario["audit_verify"])
        assert not scenario["server_log_errors"], (name, scenario["server_log_errors"])
    shaken = await chaos.run(chaos.SHORT, None, tmp_path / "chaos", kills=1)
    for fault in shaken["faults"]:
        name = fault["fault"]
        assert fault["unrecorded"] == 0, name
        assert fault["lost"] == 0, name
        assert fault["leaks"] == 0, name
        assert fault["undocumented_5xx"] == 0, name
        assert fault["recovery_s"] is not None, f"{name}: no good answer after the restore"
        assert fault.get("readyz_reported_down") in (None, True), f"{name}: /readyz said ready"
        assert not fault.get("unexpected_during"), (name, fault.get("unexpected_during"))
    assert all("FAILED" not in note for note in shaken["notes"]), shaken["notes"]
