"""The embedded audit store: one SQLite file in WAL mode (DESIGN "Stores and scale").

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
import contextlib
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite

from gateway.audit.chain import (
    ENTRY_COLUMNS,
    GENESIS_HASH,
    SUBJECT_COLUMNS,
    ChainHead,
    PreparedBatch,
    VerifyResult,
    link,
    ts,
    walk_chain,
)
from gateway.audit.logcheck import LogCheck, LogReads, check_log
from gateway.audit.merkle import Node
from gateway.audit.model import AuditQuery, AuditRecord
from gateway.audit.note import Checkpoint
from gateway.audit.store import AuditUnavailable
from gateway.audit.tree import (
    COUNT_LEAVES,
    INSERT_NODE_SQLITE,
    PURGED_TABLE,
    SELECT_LEAVES,
    SELECT_PURGED,
    backfill,
    purged_schema,
    select_nodes_sql,
    sqlite_append,
    sqlite_params,
    tree_schema,
)
from gateway.audit.writer import (
    OLD_TABLE,
    SEARCH_SELECT,
    TABLES,
    EntryRows,
    Expander,
    GroupCommitStore,
    PurgeRefused,
    build_where,
    old_layout_message,
    refusal,
)
from gateway.internals import run_on_sqlite_thread

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entry (
    seq                    INTEGER PRIMARY KEY,
    trace_id               TEXT NOT NULL,
    span_id                TEXT NOT NULL,
    parent_span_id         TEXT,
    start_time             TEXT NOT NULL,
    end_time               TEXT NOT NULL,
    processing_activity_id TEXT,
    organisation_oin       TEXT NOT NULL,
    organisation           TEXT NOT NULL,
    officer                TEXT NOT NULL,
    authenticated_as       TEXT NOT NULL,
    roles                  TEXT NOT NULL,
    purpose                TEXT,
    legal_basis            TEXT,
    policy_version         TEXT NOT NULL,
    subject_count          INTEGER NOT NULL,
    record_count           INTEGER NOT NULL,
    subjects_hash          TEXT NOT NULL,
    recorded_at            TEXT NOT NULL,
    prev_hash              TEXT NOT NULL,
    hash                   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_entry_subject (
    entry_seq    INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    subject      TEXT,
    decision_set TEXT NOT NULL,
    PRIMARY KEY (entry_seq, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_decision_set (
    id       TEXT PRIMARY KEY,
    encoding BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_chain_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    recorded_at TEXT,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entry_officer ON audit_entry (officer, seq);
CREATE INDEX IF NOT EXISTS audit_entry_org ON audit_entry (organisation, seq);
CREATE INDEX IF NOT EXISTS audit_entry_oin ON audit_entry (organisation_oin, seq);
CREATE INDEX IF NOT EXISTS audit_entry_purpose ON audit_entry (purpose, seq);
CREATE INDEX IF NOT EXISTS audit_entry_trace ON audit_entry (trace_id);
CREATE INDEX IF NOT EXISTS audit_entry_start ON audit_entry (start_time);
CREATE INDEX IF NOT EXISTS audit_entry_recorded ON audit_entry (recorded_at);
CREATE INDEX IF NOT EXISTS audit_entry_subject_subject ON audit_entry_subject (subject, entry_seq);
"""


_INSERT_ENTRY = (
    f"INSERT INTO audit_entry ({', '.join(ENTRY_COLUMNS)}) "  # noqa: S608 (constant columns)
    f"VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})"
)
_INSERT_SUBJECT = (
    f"INSERT INTO audit_entry_subject ({', '.join(SUBJECT_COLUMNS)}) "  # noqa: S608
    "VALUES (?, ?, ?, ?)"
)
_INSERT_SET = "INSERT INTO audit_decision_set (id, encoding) VALUES (?, ?) ON CONFLICT DO NOTHING"
# The head, and which of the given decision sets exist (under the write lock: stable).
_HEAD_AND_SETS = (
    "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash, "
    "(SELECT json_group_array(id) FROM audit_decision_set "
    " WHERE id IN (SELECT value FROM json_each(?))) "
    "FROM audit_chain_head WHERE id = 1"
)
_HEAD = "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash FROM audit_chain_head WHERE id = 1"
_SELECT_ENTRIES = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq > ? ORDER BY seq LIMIT ?"
)
_SELECT_SUBJECTS = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq > ? AND entry_seq <= ? ORDER BY entry_seq, position"
)
_SELECT_SETS = (
    "SELECT id, encoding FROM audit_decision_set WHERE id IN (SELECT value FROM json_each(?))"
)
_ENTRIES_NAMED = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq"
)
_SUBJECTS_NAMED = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq IN (SELECT value FROM json_each(?)) ORDER BY entry_seq, position"
)
# The purposes of a prefix about to be purged, each with its youngest entry.
_PREFIX_PURPOSES = (
    "SELECT purpose, max(recorded_at) FROM audit_entry WHERE seq <= ? AND purpose IS NOT NULL "
    "GROUP BY purpose"
)
# The hash of an entry, also when a retention purge removed it.
_HASH_OF = (
    "SELECT hash FROM audit_entry WHERE seq = ? "
    "UNION ALL SELECT hash FROM audit_purged WHERE seq = ? LIMIT 1"
)
_EXPIRED = "SELECT seq, hash, record_count FROM audit_entry WHERE purpose = ? AND recorded_at < ?"
_STRAY_SUBJECTS = "SELECT count(*) FROM audit_entry_subject WHERE entry_seq <= ? OR entry_seq > ?"
_PING = (
    "SELECT (SELECT seq FROM audit_chain_head WHERE id = 1), "
    "(SELECT 1 FROM audit_entry WHERE seq = 0), "
    "(SELECT 1 FROM audit_entry_subject WHERE entry_seq = 0 LIMIT 1), "
    "(SELECT 1 FROM audit_decision_set WHERE id = '')"
)
_SEARCH_CHUNK = 500
T = TypeVar("T")
#: How long the writer waits for SQLite's write lock (another process, a checkpoint) before its
#: group commit fails with AUDIT_UNAVAILABLE: a locked store answers 503 within about this,
#: never holds requests for long.
WRITE_BUSY_TIMEOUT_MS = 1_000
#: Below this much free space on the store's file system the store reports itself not ready.
MIN_FREE_BYTES = 1 << 20
#: How long the readiness probe waits for the write lock.
_PROBE_BUSY_TIMEOUT_MS = 100
#: How long a read waits for a lock (WAL readers rarely wait at all).
READ_BUSY_TIMEOUT_MS = 2_000
#: Transient read failures (a WAL index being rebuilt, a lock) are retried this often, with a
#: short pause, within the search deadline of :class:`GroupCommitStore`.
_READ_RETRIES = 3
_TRANSIENT = ("locked", "busy", "locking protocol")


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
                await conn.executescript(_SCHEMA + tree_schema("sqlite") + purged_schema("sqlite"))
                await conn.execute("BEGIN IMMEDIATE")
                if await self._one(conn, _HEAD) is None:
                    if await self._one(conn, "SELECT 1 FROM audit_entry LIMIT 1") is not None:
                        raise AuditUnavailable(
                            "audit chain head is missing while entries exist "
                            "(damage or tampering): run `ketenpoort audit verify`"
                        )
                    await conn.execute(
                        "INSERT INTO audit_chain_head VALUES (1, 0, ?, NULL, 0, ?)",
                        (GENESIS_HASH, GENESIS_HASH),
                    )
                head = await self._one(conn, _HEAD)
                count = await self._one(conn, COUNT_LEAVES)
                try:
                    rows = await backfill(
                        head[0],
                        head[3],
                        count[0],
                        lambda: self._all(conn, _SELECT_ENTRIES, (0, head[0] + 1)),
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
        head = db.execute(_HEAD_AND_SETS, (json.dumps(list(set_ids)),)).fetchone()
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
    ) -> None:
        """Write the missing decision sets, the linked entries and subject rows, the head."""
        missing = {
            set_id: encoding
            for prepared in batches
            for set_id, encoding in prepared.sets.items()
            if set_id not in present
        }
        if missing:
            db.executemany(_INSERT_SET, missing.items())
        now_text = ts(now)
        linked = link(
            batches,
            head_seq=head[0],
            head_hash=head[1],
            recorded_at=now_text,
            recorded_at_text=now_text,
        )
        db.executemany(_INSERT_ENTRY, linked.entries)
        db.executemany(_INSERT_SUBJECT, linked.subjects)
        sqlite_append(db, head[0], linked.leaves)
        cursor = db.execute(
            "UPDATE audit_chain_head SET seq = ?, hash = ?, recorded_at = ?, anchor_seq = ?, "
            "anchor_hash = ? WHERE id = 1",
            (linked.seq, linked.hash, now_text, *anchor),
        )
        if cursor.rowcount != 1:
            raise RuntimeError("audit chain head row is missing")

    @staticmethod
    def _set_ids(batches: list[PreparedBatch]) -> list[str]:
        return list({set_id: None for prepared in batches for set_id in prepared.sets})

    @classmethod
    def _write_transaction(cls, db: sqlite3.Connection, batches: list[PreparedBatch]) -> None:
        try:
            head, now, present = cls._begin_write(db, cls._set_ids(batches))
            cls._append(db, batches, head=head, now=now, present=present, anchor=(head[3], head[4]))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def _write(self, batches: list[PreparedBatch]) -> None:
        async with self._wlock:
            await self._in_writer_thread(self._write_transaction, batches)

    @classmethod
    def _purge_transaction(
        cls,
        db: sqlite3.Connection,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        try:
            # The record names the new anchor, so its decision set is new: written if absent.
            head, now, present = cls._begin_write(db, [])
            head_seq, anchor_seq, anchor_hash = head[0], head[3], head[4]
            try:
                cutoff: str | None = ts(now - older_than)
            except OverflowError:
                cutoff = None  # older than the calendar: nothing qualifies
            deleted = 0
            if cutoff is not None:
                young = db.execute(
                    "SELECT min(seq) FROM audit_entry WHERE recorded_at >= ?", (cutoff,)
                ).fetchone()
                # Only a prefix of the chain may go: the anchor must be one hash.
                last_gone = head_seq if young[0] is None else young[0] - 1
                if last_gone > anchor_seq:
                    for purpose, youngest in db.execute(_PREFIX_PURPOSES, (last_gone,)):
                        keep = protect.get(purpose)
                        if keep is not None and youngest > ts(now - keep):
                            raise PurgeRefused(refusal(purpose, keep))
                    kept = db.execute(_HASH_OF, (last_gone, last_gone)).fetchone()
                    if kept is None:
                        raise RuntimeError(
                            f"audit entry {last_gone} is missing; run verify before purging"
                        )
                    counted = db.execute(
                        "SELECT coalesce(sum(record_count), 0) FROM audit_entry WHERE seq <= ?",
                        (last_gone,),
                    ).fetchone()
                    deleted = int(counted[0])
                    db.execute("DELETE FROM audit_entry_subject WHERE entry_seq <= ?", (last_gone,))
                    db.execute("DELETE FROM audit_entry WHERE seq <= ?", (last_gone,))
                    anchor_seq, anchor_hash = last_gone, kept[0]
            cls._append(
                db,
                [make_record(anchor_seq)],
                head=head,
                now=now,
                present=present,
                anchor=(anchor_seq, anchor_hash),
            )
            db.execute("COMMIT")
            return deleted
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def _purge(
        self,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        async with self._wlock:
            return await self._in_writer_thread(
                self._purge_transaction, older_than, make_record, protect
            )

    @classmethod
    def _purge_expired_transaction(
        cls,
        db: sqlite3.Connection,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        try:
            head, now, present = cls._begin_write(db, [])
            gone: list[tuple[int, str, int]] = []
            for purpose, cutoff in cutoffs.items():
                gone += db.execute(_EXPIRED, (purpose, ts(cutoff))).fetchall()
            seqs = sorted(int(row[0]) for row in gone)
            listed = json.dumps(seqs)
            db.execute(
                "DELETE FROM audit_entry_subject WHERE entry_seq IN "
                "(SELECT value FROM json_each(?))",
                (listed,),
            )
            db.execute(
                "DELETE FROM audit_entry WHERE seq IN (SELECT value FROM json_each(?))", (listed,)
            )
            purge_seq = int(head[0]) + 1
            db.executemany(
                f"INSERT INTO {PURGED_TABLE} (seq, hash, purge_seq) VALUES (?, ?, ?)",  # noqa: S608
                [(int(row[0]), row[1], purge_seq) for row in gone],
            )
            cls._append(
                db,
                [make_record(seqs)],
                head=head,
                now=now,
                present=present,
                anchor=(head[3], head[4]),
            )
            db.execute("COMMIT")
            return sum(int(row[2]) for row in gone)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def _purge_expired(
        self,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        async with self._wlock:
            return await self._in_writer_thread(
                self._purge_expired_transaction, cutoffs, make_record
            )

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        where, params = build_where(q, lambda _n: "?")
        params = [ts(p) if isinstance(p, dt.datetime) else p for p in params]
        # Each subject row yields at least one record: q.limit rows are always enough.
        sql = f"{SEARCH_SELECT}{where} ORDER BY e.seq, s.position LIMIT ?"
        for attempt in range(_READ_RETRIES + 1):
            try:
                return await self._search_once(sql, [*params, q.limit], q.limit)
            except sqlite3.OperationalError as exc:
                # A reader under write load can meet a lock or a WAL index being rebuilt: a
                # fresh snapshot a moment later reads fine. Anything else fails at once.
                transient = any(word in str(exc).lower() for word in _TRANSIENT)
                if not transient or attempt == _READ_RETRIES:
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
                        while chunk := await cursor.fetchmany(_SEARCH_CHUNK):
                            wanted = expander.missing(chunk)
                            if wanted:
                                found = await self._all(conn, _SELECT_SETS, (json.dumps(wanted),))
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
                head = await self._one(conn, _HEAD)
                if head is None:
                    return VerifyResult(False, 0, None, "audit chain head row is missing")

                async def entries_after(after: int, n: int) -> list[Any]:
                    return await self._all(conn, _SELECT_ENTRIES, (after, n))

                async def subjects_between(lo: int, hi: int) -> list[Any]:
                    return await self._all(conn, _SELECT_SUBJECTS, (lo, hi))

                async def sets_named(ids: list[str]) -> list[Any]:
                    return await self._all(conn, _SELECT_SETS, (json.dumps(ids),))

                async def stray(anchor: int, head_seq: int) -> int:
                    row = await self._one(conn, _STRAY_SUBJECTS, (anchor, head_seq))
                    return int(row[0])

                purged = await self._all(conn, SELECT_PURGED)
                return await walk_chain(
                    ChainHead(seq=head[0], hash=head[1], anchor_seq=head[3], anchor_hash=head[4]),
                    entries_after=entries_after,
                    subjects_between=subjects_between,
                    sets_named=sets_named,
                    stray_subject_rows=stray,
                    purged={int(r[0]): r[1] for r in purged},
                )
            finally:
                await self._rollback(conn)

    async def _ping(self) -> None:
        async with self._rlock:
            conn = await self._reader_conn()
            row = await self._one(conn, _PING)
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
        db.execute(f"PRAGMA busy_timeout = {_PROBE_BUSY_TIMEOUT_MS}")
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.execute(f"PRAGMA busy_timeout = {WRITE_BUSY_TIMEOUT_MS}")

    # ---- the Merkle log (docs/audit-log.md) ---------------------------------------------------

    async def _tree_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        if not nodes:
            return {}
        sql = select_nodes_sql(len(nodes), "sqlite")
        async with self._rlock:
            conn = await self._reader_conn()
            rows = await self._all(conn, sql, sqlite_params(nodes))
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}

    async def _tree_size(self) -> int:
        async with self._rlock:
            conn = await self._reader_conn()
            row = await self._one(conn, _HEAD)
        if row is None:
            raise RuntimeError("audit chain head row is missing")
        return int(row[0])

    async def _check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                await conn.execute("BEGIN")  # one WAL snapshot for every page
                head = await self._one(conn, _HEAD)
                if head is None:
                    return LogCheck(False, "audit chain head row is missing")

                async def entries_after(after: int, n: int) -> list[Any]:
                    return await self._all(conn, _SELECT_ENTRIES, (after, n))

                async def subjects_between(lo: int, hi: int) -> list[Any]:
                    return await self._all(conn, _SELECT_SUBJECTS, (lo, hi))

                async def sets_named(ids: list[str]) -> list[Any]:
                    return await self._all(conn, _SELECT_SETS, (json.dumps(ids),))

                async def leaves_after(idx: int, n: int) -> list[Any]:
                    return await self._all(conn, SELECT_LEAVES["sqlite"], (idx, n))

                reads = LogReads(
                    head_seq=int(head[0]),
                    anchor_seq=int(head[3]),
                    entries_after=entries_after,
                    subjects_between=subjects_between,
                    sets_named=sets_named,
                    leaves_after=leaves_after,
                    purged=await self._all(conn, SELECT_PURGED),
                )
                return await check_log(reads, checkpoints)
            finally:
                await self._rollback(conn)

    async def _entries(self, seqs: list[int]) -> EntryRows:
        ids = json.dumps(seqs)
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                await conn.execute("BEGIN")
                entries = await self._all(conn, _ENTRIES_NAMED, (ids,))
                subjects = await self._all(conn, _SUBJECTS_NAMED, (ids,))
                set_ids = sorted({row[3] for row in subjects})
                sets = await self._all(conn, _SELECT_SETS, (json.dumps(set_ids),))
            finally:
                await self._rollback(conn)
        return EntryRows(entries, subjects, {str(k): bytes(v) for k, v in sets})
