"""The embedded audit store: one SQLite file in WAL mode (docs/design.md, Stores and scale).

Layout: see :mod:`gateway.audit.chain` (one ``audit_entry`` row per request, one
``audit_entry_subject`` row per data subject, content-addressed ``audit_decision_set`` rows).

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``. With WAL, ``NORMAL`` survives an
application crash but may lose the last transactions on power loss or an OS crash, because the
WAL is not fsynced at each commit. ``commit()`` promises the records are durable before the
response leaves, so every commit fsyncs the WAL; group commit amortises that fsync over all
requests waiting at that moment.

Connections: one writer connection (used only by the writer task) and one reader connection for
searches and verification, so reading never waits for a write transaction (WAL readers see a
snapshot). ``sqlite:///:memory:`` uses a single connection for both (a second connection would
see a different database); a lock keeps their statements from interleaving.

Writes start with ``BEGIN IMMEDIATE``: it takes SQLite's write lock before the chain head is
read, so several processes sharing one file still extend one linear chain.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
from typing import Any

import aiosqlite

from gateway.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    VerifyResult,
    ts,
    walk_chain,
)
from gateway.audit.model import AuditQuery, AuditRecord
from gateway.audit.querying import SEARCH_SELECT, Expander, build_where
from gateway.audit.sqlite_log import SQLiteLog
from gateway.audit.sqlite_sql import (
    HEAD,
    MIN_FREE_BYTES,
    PING,
    PROBE_BUSY_TIMEOUT_MS,
    READ_RETRIES,
    SEARCH_CHUNK,
    SELECT_ENTRIES,
    SELECT_SETS,
    STRAY_SUBJECTS,
    TRANSIENT,
    WRITE_BUSY_TIMEOUT_MS,
)
from gateway.audit.store import AuditUnavailable
from gateway.audit.tables import OLD_TABLE, TABLES, audit_schema, old_layout_message
from gateway.audit.tree import (
    COUNT_LEAVES,
    INSERT_NODE_SQLITE,
    SELECT_PURGED,
    backfill,
)


class SQLiteAuditStore(SQLiteLog):
    """:class:`~gateway.audit.store.AuditStore` on one SQLite file (or ``:memory:``)."""

    # ---- backend hooks -------------------------------------------------------------------

    async def _open_backend(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.parent.mkdir, parents=True, exist_ok=True)
        async with self._wlock:
            if self._wconn is None:
                self._wconn = await self._connect(create=True, writer=True)
                if self._memory:
                    self._rconn = self._wconn
            conn = self._wconn
            try:
                await self._refuse_foreign_or_damaged(conn)
                schema = audit_schema("sqlite")
                await conn.executescript(schema)
                await conn.execute("BEGIN IMMEDIATE")
                if await self._one(conn, HEAD) is None:
                    if await self._one(conn, "SELECT 1 FROM audit_entry LIMIT 1") is not None:
                        raise AuditUnavailable(
                            "audit chain head is missing while entries exist "
                            "(damage or tampering): run `ketenpoort audit verify`"
                        )
                    await conn.execute(
                        "INSERT INTO audit_chain_head VALUES (1, 0, ?, NULL, 0, ?)",
                        (GENESIS_HASH, GENESIS_HASH),
                    )
                head = await self._one(conn, HEAD)
                count = await self._one(conn, COUNT_LEAVES)
                try:
                    rows = await backfill(
                        head[0],
                        head[3],
                        count[0],
                        lambda: self._all(conn, SELECT_ENTRIES, (0, head[0] + 1)),
                    )
                except ValueError as exc:
                    raise AuditUnavailable(str(exc)) from exc
                if rows:
                    await conn.executemany(INSERT_NODE_SQLITE, rows)
                await conn.execute("COMMIT")
            except BaseException:
                await self._rollback(conn)
                raise

    async def _refuse_foreign_or_damaged(self, conn: aiosqlite.Connection) -> None:
        """No mixing with the old layout; no papering over tables gone from a used chain."""
        rows = await self._all(
            conn,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?, ?, ?)",
            (OLD_TABLE, "audit_chain_head", *TABLES),
        )
        tables = {row[0] for row in rows}
        if OLD_TABLE in tables:
            raise AuditUnavailable(
                old_layout_message(f"the SQLite file {self._file or ':memory:'}")
            )
        if "audit_chain_head" in tables:
            missing = [t for t in TABLES if t not in tables]
            if missing:
                head = await self._one(conn, "SELECT seq FROM audit_chain_head WHERE id = 1")
                if head is not None and head[0] > 0:
                    raise AuditUnavailable(
                        f"audit table(s) {', '.join(missing)} missing but the chain head records "
                        f"seq {head[0]} (damage or tampering); not recreating them"
                    )

    async def _close_backend(self) -> None:
        for conn in {id(c): c for c in (self._wconn, self._rconn) if c is not None}.values():
            await conn.close()
        self._wconn = self._rconn = None

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        where, params = build_where(q, lambda _n: "?")
        params = [ts(p) if isinstance(p, dt.datetime) else p for p in params]
        # Each subject row yields at least one record: q.limit rows are always enough.
        sql = f"{SEARCH_SELECT}{where} ORDER BY e.seq, s.position LIMIT ?"
        for attempt in range(READ_RETRIES + 1):
            try:
                return await self._search_once(sql, [*params, q.limit], q.limit)
            except sqlite3.OperationalError as exc:
                # A reader under write load can meet a lock or a WAL index being rebuilt: a
                # fresh snapshot a moment later reads fine. Anything else fails at once.
                transient = any(word in str(exc).lower() for word in TRANSIENT)
                if not transient or attempt == READ_RETRIES:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _search_once(self, sql: str, params: list[Any], limit: int) -> list[AuditRecord]:
        expander = Expander(self.decision_sets, limit)
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                # One read transaction: the rows and the sets they name from one snapshot.
                await conn.execute("BEGIN")
                try:
                    async with conn.execute(sql, params) as cursor:
                        while chunk := await cursor.fetchmany(SEARCH_CHUNK):
                            wanted = expander.missing(chunk)
                            if wanted:
                                found = await self._all(conn, SELECT_SETS, (json.dumps(wanted),))
                                expander.add_sets(wanted, found)
                            if expander.feed(chunk):
                                break
                except asyncio.CancelledError:
                    # The search deadline passed: stop the statement running on its thread
                    # before the rollback queues behind it.
                    await conn.interrupt()
                    raise
                finally:
                    await self._rollback(conn)
            except asyncio.CancelledError:
                await self._drop(conn)  # its state is unknown: the next search reconnects
                raise
            except sqlite3.DatabaseError:
                await self._drop(conn)  # reconnect next time: the file may have been replaced
                raise
        return expander.records

    async def _verify(self) -> VerifyResult:
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                # One read transaction: one WAL snapshot for the head and every page.
                await conn.execute("BEGIN")
                head = await self._one(conn, HEAD)
                if head is None:
                    return VerifyResult(False, 0, None, "audit chain head row is missing")

                pages = self._page_reads(conn)

                async def stray(anchor: int, head_seq: int) -> int:
                    row = await self._one(conn, STRAY_SUBJECTS, (anchor, head_seq))
                    return int(row[0])

                purged = await self._all(conn, SELECT_PURGED)
                return await walk_chain(
                    ChainHead(seq=head[0], hash=head[1], anchor_seq=head[3], anchor_hash=head[4]),
                    entries_after=pages.entries_after,
                    subjects_between=pages.subjects_between,
                    sets_named=pages.sets_named,
                    stray_subject_rows=stray,
                    purged={int(r[0]): r[1] for r in purged},
                )
            finally:
                await self._rollback(conn)

    async def _ping(self) -> None:
        async with self._rlock:
            conn = await self._reader_conn()
            row = await self._one(conn, PING)
            if row is None or row[0] is None:
                raise RuntimeError("audit chain head row is missing")
        if self._file is None:
            return
        # A full disk fails the next commit that needs a page: say so before it does.
        disk = await asyncio.to_thread(os.statvfs, self._file.parent)
        if disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
            raise RuntimeError("the audit store's file system is full")
        # Readable is not writable: another process may hold the write lock. Take it and let
        # go at once, in turn with this process's own group commits (under the writer lock),
        # waiting only briefly so that a probe never holds up the commits behind it.
        async with self._wlock:
            await self._in_writer_thread(self._probe_write_lock)

    @staticmethod
    def _probe_write_lock(db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {PROBE_BUSY_TIMEOUT_MS}")
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.execute(f"PRAGMA busy_timeout = {WRITE_BUSY_TIMEOUT_MS}")
