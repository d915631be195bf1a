"""The embedded audit store: one SQLite file in WAL mode (DESIGN "Stores and scale").

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
import contextlib
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from gateway.audit.chain import (
    GENESIS_HASH,
    RECORD_COLUMNS,
    ROW_COLUMNS,
    ChainWalker,
    PreparedBatch,
    VerifyResult,
    link,
    to_record,
    ts,
)
from gateway.audit.model import AuditQuery, AuditRecord
from gateway.audit.store import AuditUnavailable
from gateway.audit.writer import GroupCommitStore, build_where

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_record (
    seq                    INTEGER PRIMARY KEY,
    trace_id               TEXT NOT NULL,
    span_id                TEXT NOT NULL,
    parent_span_id         TEXT,
    start_time             TEXT NOT NULL,
    end_time               TEXT NOT NULL,
    status                 TEXT NOT NULL,
    processing_activity_id TEXT,
    data_subject_id        TEXT,
    data_subject_id_type   TEXT,
    organisation_oin       TEXT NOT NULL,
    organisation           TEXT NOT NULL,
    officer                TEXT NOT NULL,
    roles                  TEXT NOT NULL,
    purpose                TEXT,
    legal_basis            TEXT,
    coordinate             TEXT NOT NULL,
    path                   TEXT NOT NULL,
    decision               TEXT NOT NULL,
    reason                 TEXT NOT NULL,
    registry               TEXT,
    policy_version         TEXT NOT NULL,
    recorded_at            TEXT NOT NULL,
    prev_hash              TEXT NOT NULL,
    hash                   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_chain_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    recorded_at TEXT,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_record_subject ON audit_record (data_subject_id, seq);
CREATE INDEX IF NOT EXISTS audit_record_officer ON audit_record (officer, seq);
CREATE INDEX IF NOT EXISTS audit_record_org ON audit_record (organisation, seq);
CREATE INDEX IF NOT EXISTS audit_record_oin ON audit_record (organisation_oin, seq);
CREATE INDEX IF NOT EXISTS audit_record_purpose ON audit_record (purpose, seq);
CREATE INDEX IF NOT EXISTS audit_record_trace ON audit_record (trace_id);
CREATE INDEX IF NOT EXISTS audit_record_start ON audit_record (start_time);
CREATE INDEX IF NOT EXISTS audit_record_recorded ON audit_record (recorded_at);
"""

_INSERT = (
    f"INSERT INTO audit_record ({', '.join(ROW_COLUMNS)}) "  # noqa: S608 (constant columns)
    f"VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
)
_SELECT = f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_record"  # noqa: S608
_HEAD = "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash FROM audit_chain_head WHERE id = 1"
_VERIFY_PAGE = 5_000
_BUSY_TIMEOUT_MS = 10_000


class SQLiteAuditStore(GroupCommitStore):
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

    # ---- connections ---------------------------------------------------------------------

    async def _connect(self, *, create: bool) -> aiosqlite.Connection:
        if self._memory:
            conn = await aiosqlite.connect(":memory:", isolation_level=None)
        else:
            # mode=rw after open(): a vanished file must fail, not come back empty.
            mode = "rwc" if create else "rw"
            uri = f"file:{quote(str(self._file))}?mode={mode}"
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not self._memory:
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _writer_conn(self) -> aiosqlite.Connection:
        if self._wconn is None:
            self._wconn = await self._connect(create=False)
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

    # ---- backend hooks -------------------------------------------------------------------

    async def _open_backend(self) -> None:
        if self._file is not None:
            await asyncio.to_thread(self._file.parent.mkdir, parents=True, exist_ok=True)
        async with self._wlock:
            if self._wconn is None:
                self._wconn = await self._connect(create=True)
                if self._memory:
                    self._rconn = self._wconn
            conn = self._wconn
            try:
                await self._refuse_missing_records_table(conn)
                await conn.executescript(_SCHEMA)
                await conn.execute("BEGIN IMMEDIATE")
                if await self._one(conn, _HEAD) is None:
                    if await self._one(conn, "SELECT 1 FROM audit_record LIMIT 1") is not None:
                        raise AuditUnavailable(
                            "audit chain head is missing while records exist "
                            "(damage or tampering): run `ketenpoort audit verify`"
                        )
                    await conn.execute(
                        "INSERT INTO audit_chain_head VALUES (1, 0, ?, NULL, 0, ?)",
                        (GENESIS_HASH, GENESIS_HASH),
                    )
                await conn.execute("COMMIT")
            except BaseException:
                await self._rollback(conn)
                raise

    async def _refuse_missing_records_table(self, conn: aiosqlite.Connection) -> None:
        """Migration must not paper over a records table that vanished from a used chain."""
        async with conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name IN ('audit_record', 'audit_chain_head')"
        ) as cursor:
            tables = {row[0] for row in await cursor.fetchall()}
        if "audit_chain_head" in tables and "audit_record" not in tables:
            head = await self._one(conn, "SELECT seq FROM audit_chain_head WHERE id = 1")
            if head is not None and head[0] > 0:
                raise AuditUnavailable(
                    f"audit_record table is missing but the chain head records seq {head[0]} "
                    "(damage or tampering); not recreating it"
                )

    async def _close_backend(self) -> None:
        for conn in {id(c): c for c in (self._wconn, self._rconn) if c is not None}.values():
            await conn.close()
        self._wconn = self._rconn = None

    async def _begin_write(self, conn: aiosqlite.Connection) -> tuple[Any, dt.datetime]:
        """Take the write lock, read the head; the monotonic ``recorded_at`` for this tx."""
        await conn.execute("BEGIN IMMEDIATE")
        head = await self._one(conn, _HEAD)
        if head is None:
            raise RuntimeError("audit chain head row is missing")
        now = dt.datetime.now(dt.UTC)
        if head[2] is not None and ts(now) < head[2]:
            # The wall clock stepped back: keep recorded_at monotonic so purges stay prefixes.
            now = dt.datetime.fromisoformat(head[2])
        return head, now

    async def _write(self, batches: list[PreparedBatch]) -> None:
        async with self._wlock:
            conn = await self._writer_conn()
            try:
                head, now = await self._begin_write(conn)
                now_text = ts(now)
                rows, seq, last = link(
                    batches,
                    head_seq=head[0],
                    head_hash=head[1],
                    recorded_at=now_text,
                    recorded_at_text=now_text,
                )
                await conn.executemany(_INSERT, rows)
                await self._set_head(conn, seq, last, now_text, head[3], head[4])
                await conn.execute("COMMIT")
            except BaseException:
                await self._rollback(conn)
                raise

    async def _set_head(
        self,
        conn: aiosqlite.Connection,
        seq: int,
        hash_: str,
        recorded_at: str,
        anchor_seq: int,
        anchor_hash: str,
    ) -> None:
        async with conn.execute(
            "UPDATE audit_chain_head SET seq = ?, hash = ?, recorded_at = ?, anchor_seq = ?, "
            "anchor_hash = ? WHERE id = 1",
            (seq, hash_, recorded_at, anchor_seq, anchor_hash),
        ) as cursor:
            if cursor.rowcount != 1:
                raise RuntimeError("audit chain head row is missing")

    async def _purge(self, older_than: dt.timedelta, record: PreparedBatch) -> int:
        async with self._wlock:
            conn = await self._writer_conn()
            try:
                head, now = await self._begin_write(conn)
                head_seq, head_hash, _, anchor_seq, anchor_hash = head
                try:
                    cutoff: str | None = ts(now - older_than)
                except OverflowError:
                    cutoff = None  # older than the calendar: nothing qualifies
                deleted = 0
                if cutoff is not None:
                    young = await self._one(
                        conn,
                        "SELECT min(seq) FROM audit_record WHERE recorded_at >= ?",
                        (cutoff,),
                    )
                    # Only a prefix of the chain may go: the anchor must be one hash.
                    last_gone = head_seq if young[0] is None else young[0] - 1
                    if last_gone > anchor_seq:
                        kept = await self._one(
                            conn, "SELECT hash FROM audit_record WHERE seq = ?", (last_gone,)
                        )
                        if kept is None:
                            raise RuntimeError(
                                f"audit record {last_gone} is missing; run verify before purging"
                            )
                        async with conn.execute(
                            "DELETE FROM audit_record WHERE seq <= ?", (last_gone,)
                        ) as cursor:
                            deleted = cursor.rowcount
                        anchor_seq, anchor_hash = last_gone, kept[0]
                now_text = ts(now)
                rows, seq, last = link(
                    [record],
                    head_seq=head_seq,
                    head_hash=head_hash,
                    recorded_at=now_text,
                    recorded_at_text=now_text,
                )
                await conn.executemany(_INSERT, rows)
                await self._set_head(conn, seq, last, now_text, anchor_seq, anchor_hash)
                await conn.execute("COMMIT")
                return deleted
            except BaseException:
                await self._rollback(conn)
                raise

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        where, params = build_where(q, lambda _n: "?")
        params = [ts(p) if isinstance(p, dt.datetime) else p for p in params]
        sql = f"{_SELECT}{where} ORDER BY seq LIMIT ?"
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                async with conn.execute(sql, (*params, q.limit)) as cursor:
                    rows = await cursor.fetchall()
            except sqlite3.DatabaseError:
                await self._drop(conn)  # reconnect next time: the file may have been replaced
                raise
        return [to_record(row) for row in rows]

    async def _verify(self) -> VerifyResult:
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                # One read transaction: one WAL snapshot for the head and every page.
                await conn.execute("BEGIN")
                head = await self._one(conn, _HEAD)
                if head is None:
                    return VerifyResult(False, 0, None, "audit chain head row is missing")
                walker = ChainWalker(
                    anchor_seq=head[3], anchor_hash=head[4], head_seq=head[0], head_hash=head[1]
                )
                after = -(2**63)
                while True:
                    async with conn.execute(
                        f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after, _VERIFY_PAGE)
                    ) as cursor:
                        rows = list(await cursor.fetchall())
                    if not rows:
                        return walker.finish()
                    broken = walker.feed(rows)
                    if broken is not None:
                        return broken
                    after = rows[-1][0]
            finally:
                await self._rollback(conn)

    async def _ping(self) -> None:
        async with self._rlock:
            conn = await self._reader_conn()
            if await self._one(conn, "SELECT seq FROM audit_chain_head WHERE id = 1") is None:
                raise RuntimeError("audit chain head row is missing")
            await self._one(conn, "SELECT 1 FROM audit_record WHERE seq = 0")
