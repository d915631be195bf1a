"""SQLite store: retention purges and the Merkle log's reads."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiosqlite

from gateway.audit.chain import (
    PreparedBatch,
    ts,
)
from gateway.audit.log_pages import EntryPage, entry_page
from gateway.audit.logcheck import LogCheck, LogReads, check_log
from gateway.audit.merkle import Node
from gateway.audit.note import Checkpoint
from gateway.audit.querying import EntryRows
from gateway.audit.sqlite_base import SQLiteBase
from gateway.audit.sqlite_sql import (
    ENTRIES_NAMED,
    EXPIRED,
    HASH_OF,
    HEAD,
    LOG_ENTRIES,
    LOG_LEAVES,
    LOG_PURGED,
    PREFIX_PURPOSES,
    SELECT_SETS,
    SUBJECTS_NAMED,
    T,
)
from gateway.audit.store import AuditUnavailable
from gateway.audit.tree import (
    PURGED_TABLE,
    SELECT_LEAVES,
    SELECT_NODES,
    SELECT_PURGED,
    TreeTip,
    node_map,
    node_params,
)
from gateway.audit.writer import (
    PurgeRefused,
    refusal,
)


class SQLiteLog(SQLiteBase):
    """Retention purges and the Merkle log's reads (docs/audit-log.md)."""

    @classmethod
    def _purge_transaction(
        cls,
        db: sqlite3.Connection,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
        tip: TreeTip,
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
                    for purpose, youngest in db.execute(PREFIX_PURPOSES, (last_gone,)):
                        keep = protect.get(purpose)
                        if keep is not None and youngest > ts(now - keep):
                            raise PurgeRefused(refusal(purpose, keep))
                    kept = db.execute(HASH_OF, (last_gone, last_gone)).fetchone()
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
            kept = cls._append(
                db,
                [make_record(anchor_seq)],
                head=head,
                now=now,
                present=present,
                anchor=(anchor_seq, anchor_hash),
                tip=tip,
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        tip.keep(*kept)
        return deleted

    async def _purge(
        self,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        async with self._wlock:
            return await self._in_writer_thread(
                self._purge_transaction, older_than, make_record, protect, self._tip
            )

    @classmethod
    def _purge_expired_transaction(
        cls,
        db: sqlite3.Connection,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
        tip: TreeTip,
    ) -> int:
        try:
            head, now, present = cls._begin_write(db, [])
            gone: list[tuple[int, str, int]] = []
            for purpose, cutoff in cutoffs.items():
                gone += db.execute(EXPIRED, (purpose, ts(cutoff))).fetchall()
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
            kept = cls._append(
                db,
                [make_record(seqs)],
                head=head,
                now=now,
                present=present,
                anchor=(head[3], head[4]),
                tip=tip,
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        tip.keep(*kept)
        return sum(int(row[2]) for row in gone)

    async def _purge_expired(
        self,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        async with self._wlock:
            return await self._in_writer_thread(
                self._purge_expired_transaction, cutoffs, make_record, self._tip
            )

    # ---- the Merkle log (docs/audit-log.md) ---------------------------------------------------

    async def _tree_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        if not nodes:
            return {}
        async with self._rlock:
            conn = await self._reader_conn()
            rows = await self._all(conn, SELECT_NODES["sqlite"], node_params(nodes, "sqlite"))
        return node_map(rows)

    async def _tree_size(self) -> int:
        async with self._rlock:
            conn = await self._reader_conn()
            row = await self._one(conn, HEAD)
        if row is None:
            raise RuntimeError("audit chain head row is missing")
        return int(row[0])

    async def _check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        async with self._rlock:
            conn = await self._reader_conn()
            try:
                await conn.execute("BEGIN")  # one WAL snapshot for every page
                head = await self._one(conn, HEAD)
                if head is None:
                    return LogCheck(False, "audit chain head row is missing")

                pages = self._page_reads(conn)

                async def leaves_after(idx: int, n: int) -> list[Any]:
                    return await self._all(conn, SELECT_LEAVES["sqlite"], (idx, n))

                reads = LogReads(
                    head_seq=int(head[0]),
                    anchor_seq=int(head[3]),
                    entries_after=pages.entries_after,
                    subjects_between=pages.subjects_between,
                    sets_named=pages.sets_named,
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
                entries = await self._all(conn, ENTRIES_NAMED, (ids,))
                subjects = await self._all(conn, SUBJECTS_NAMED, (ids,))
                set_ids = sorted({row[3] for row in subjects})
                sets = await self._all(conn, SELECT_SETS, (json.dumps(set_ids),))
            finally:
                await self._rollback(conn)
        return EntryRows(entries, subjects, {str(k): bytes(v) for k, v in sets})

    # ---- the log's content pages (gateway.audit.log_pages) -----------------------------------

    async def _page(self, read: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """``read`` in one read transaction (one WAL snapshot); AuditUnavailable on failure."""
        try:
            async with self._rlock:
                conn = await self._reader_conn()
                try:
                    await conn.execute("BEGIN")
                    return await read(conn)
                finally:
                    await self._rollback(conn)
        except Exception as exc:
            raise AuditUnavailable(f"audit log page read failed ({type(exc).__name__})") from exc

    async def log_leaves(self, start: int, limit: int, size: int) -> list[Any]:
        """Leaf hashes ``(idx, hash)`` with ``start <= idx < size``, at most ``limit``."""

        async def read(conn: aiosqlite.Connection) -> list[Any]:
            return await self._all(conn, LOG_LEAVES, (start, size, limit))

        return await self._page(read)

    async def log_entries(self, after: int, limit: int, size: int) -> EntryPage:
        """Entry rows ``after < seq <= size`` (at most ``limit``), with their seq range's
        subject rows and the decision sets those name, from one snapshot."""

        async def read(conn: aiosqlite.Connection) -> EntryPage:
            entries = await self._all(conn, LOG_ENTRIES, (after, size, limit))
            return await entry_page(entries, after, self._page_reads(conn))

        return await self._page(read)

    async def log_purged(self, after: int, limit: int, size: int) -> list[Any]:
        """``audit_purged`` rows ``(seq, hash, purge_seq)`` with ``after < seq <= size``."""

        async def read(conn: aiosqlite.Connection) -> list[Any]:
            return await self._all(conn, LOG_PURGED, (after, size, limit))

        return await self._page(read)
