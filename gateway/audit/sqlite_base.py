"""SQLite store: its connections and the group-commit write transaction."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from gateway.audit.chain import (
    PreparedBatch,
    link,
    ts,
)
from gateway.audit.merkle import Frontier
from gateway.audit.querying import PageReads
from gateway.audit.sqlite_sql import (
    HEAD_AND_SETS,
    INSERT_ENTRY,
    INSERT_SET,
    INSERT_SUBJECT,
    READ_BUSY_TIMEOUT_MS,
    SELECT_ENTRIES,
    SELECT_SETS,
    SELECT_SUBJECTS,
    WRITE_BUSY_TIMEOUT_MS,
    T,
)
from gateway.audit.tables import set_ids
from gateway.audit.tree import (
    TreeTip,
    sqlite_append,
)
from gateway.audit.writer import (
    GroupCommitStore,
)
from gateway.internals import run_on_sqlite_thread


class SQLiteBase(GroupCommitStore):
    """:class:`~gateway.audit.store.AuditStore` on one SQLite file (or ``:memory:``)."""

    text_timestamps = True

    def __init__(self, path: str) -> None:
        super().__init__()
        self._memory = path == ":memory:"
        # Resolved once: a later chdir must not move the trail.
        self._file = None if self._memory else Path(path).resolve()
        self._wconn: aiosqlite.Connection | None = None
        self._rconn: aiosqlite.Connection | None = None
        self._wlock = asyncio.Lock()
        self._rlock = self._wlock if self._memory else asyncio.Lock()
        #: The tree's right frontier after this process's last commit (used under _wlock).
        self._tip = TreeTip()

    # ---- connections ---------------------------------------------------------------------

    async def _connect(self, *, create: bool, writer: bool = False) -> aiosqlite.Connection:
        if self._memory:
            conn = await aiosqlite.connect(":memory:", isolation_level=None)
        else:
            # mode=rw after open(): a vanished file must fail, not come back empty.
            mode = "rwc" if create else "rw"
            uri = f"file:{quote(str(self._file))}?mode={mode}"
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            busy = WRITE_BUSY_TIMEOUT_MS if writer or self._memory else READ_BUSY_TIMEOUT_MS
            await conn.execute(f"PRAGMA busy_timeout = {busy}")
            if not self._memory:
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _writer_conn(self) -> aiosqlite.Connection:
        if self._wconn is None:
            self._wconn = await self._connect(create=False, writer=True)
            if self._memory:
                self._rconn = self._wconn
        return self._wconn

    async def _reader_conn(self) -> aiosqlite.Connection:
        if self._memory:
            return await self._writer_conn()
        if self._rconn is None:
            self._rconn = await self._connect(create=False)
        return self._rconn

    async def _drop(self, conn: aiosqlite.Connection) -> None:
        """Forget a connection in an unknown state; the next use reconnects.

        Not in ``:memory:`` mode: there the connection *is* the database.
        """
        if self._memory:
            return
        if conn is self._wconn:
            self._wconn = None
        if conn is self._rconn:
            self._rconn = None
        with contextlib.suppress(Exception):  # being discarded; its error is already reported
            await conn.close()

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            await conn.execute("ROLLBACK")
        except Exception:
            await self._drop(conn)

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Any = ()) -> Any:
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    @staticmethod
    async def _all(conn: aiosqlite.Connection, sql: str, params: Any = ()) -> list[Any]:
        async with conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    @classmethod
    def _page_reads(cls, conn: aiosqlite.Connection) -> PageReads:
        """The chain's paged reads on ``conn`` (in the caller's read transaction)."""

        async def entries_after(after: int, n: int) -> list[Any]:
            return await cls._all(conn, SELECT_ENTRIES, (after, n))

        async def subjects_between(lo: int, hi: int) -> list[Any]:
            return await cls._all(conn, SELECT_SUBJECTS, (lo, hi))

        async def sets_named(ids: list[str]) -> list[Any]:
            return await cls._all(conn, SELECT_SETS, (json.dumps(ids),))

        return PageReads(entries_after, subjects_between, sets_named)

    # ---- writes: each transaction is one call on the connection's thread --------------------
    #
    # aiosqlite runs every statement on its connection's thread and hands each result back to
    # the event loop. A write transaction is about seven statements, and under load each hand-
    # back waits for a busy loop, so every statement's latency stacked up while the requests of
    # the group waited for their commit. The transaction therefore runs as one function on that
    # thread (:func:`gateway.internals.run_on_sqlite_thread`), with the thread's ``sqlite3``
    # connection: one hand-back per group commit.

    async def _in_writer_thread(self, fn: Callable[..., T], *args: Any) -> T:
        conn = await self._writer_conn()
        try:
            return await run_on_sqlite_thread(conn, fn, *args)
        except BaseException:
            await self._rollback(conn)  # normally done on the thread already; this is a backstop
            raise

    @staticmethod
    def _begin_write(
        db: sqlite3.Connection, set_ids: Sequence[str]
    ) -> tuple[Any, dt.datetime, set[str]]:
        """Take the write lock, read the head and which of ``set_ids`` exist; the monotonic
        ``recorded_at`` for this transaction."""
        db.execute("BEGIN IMMEDIATE")
        head = db.execute(HEAD_AND_SETS, (json.dumps(list(set_ids)),)).fetchone()
        if head is None:
            raise RuntimeError("audit chain head row is missing")
        now = dt.datetime.now(dt.UTC)
        if head[2] is not None and ts(now) < head[2]:
            # The wall clock stepped back: keep recorded_at monotonic so purges stay prefixes.
            now = dt.datetime.fromisoformat(head[2])
        return head, now, set(json.loads(head[5]))

    @staticmethod
    def _append(
        db: sqlite3.Connection,
        batches: list[PreparedBatch],
        *,
        head: Any,
        now: dt.datetime,
        present: set[str],
        anchor: tuple[int, str],
        tip: TreeTip,
    ) -> tuple[str, Frontier]:
        """Write the missing decision sets, the linked entries and subject rows, their tree
        nodes, the head. Returns the new head hash and the tree's frontier there: for
        ``tip.keep`` once the transaction committed."""
        missing = {
            set_id: encoding
            for prepared in batches
            for set_id, encoding in prepared.sets.items()
            if set_id not in present
        }
        if missing:
            db.executemany(INSERT_SET, missing.items())
        now_text = ts(now)
        linked = link(
            batches,
            head_seq=head[0],
            head_hash=head[1],
            recorded_at=now_text,
            recorded_at_text=now_text,
        )
        db.executemany(INSERT_ENTRY, linked.entries)
        db.executemany(INSERT_SUBJECT, linked.subjects)
        tree = sqlite_append(db, tip, head[0], head[1], linked.leaves)
        cursor = db.execute(
            "UPDATE audit_chain_head SET seq = ?, hash = ?, recorded_at = ?, anchor_seq = ?, "
            "anchor_hash = ? WHERE id = 1",
            (linked.seq, linked.hash, now_text, *anchor),
        )
        if cursor.rowcount != 1:
            raise RuntimeError("audit chain head row is missing")
        return linked.hash, tree

    @classmethod
    def _write_transaction(
        cls, db: sqlite3.Connection, batches: list[PreparedBatch], tip: TreeTip
    ) -> None:
        try:
            head, now, present = cls._begin_write(db, set_ids(batches))
            kept = cls._append(
                db, batches, head=head, now=now, present=present, anchor=(head[3], head[4]), tip=tip
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        tip.keep(*kept)

    async def _write(self, batches: list[PreparedBatch]) -> None:
        async with self._wlock:
            await self._in_writer_thread(self._write_transaction, batches, self._tip)
