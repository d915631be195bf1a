"""PostgreSQL store: retention purges and the Merkle log's reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from gateway.audit.chain import (
    PreparedBatch,
)
from gateway.audit.log_pages import EntryPage, entry_page
from gateway.audit.logcheck import LogCheck, LogReads, check_log
from gateway.audit.merkle import Node
from gateway.audit.note import Checkpoint
from gateway.audit.postgres_base import PostgresBase
from gateway.audit.postgres_sql import (
    ACQUIRE_TIMEOUT,
    ENTRIES_NAMED,
    EXPIRED,
    HASH_OF,
    LOG_ENTRIES,
    LOG_LEAVES,
    LOG_PURGED,
    PREFIX_PURPOSES,
    SELECT_SETS,
    SUBJECTS_NAMED,
)
from gateway.audit.querying import EntryRows
from gateway.audit.store import AuditUnavailable
from gateway.audit.tree import (
    PURGED_TABLE,
    SELECT_LEAVES,
    SELECT_NODES,
    SELECT_PURGED,
    node_map,
    node_params,
)
from gateway.audit.writer import (
    PurgeRefused,
    refusal,
)

T = TypeVar("T")


class PostgresLog(PostgresBase):
    """Retention purges and the Merkle log's reads (docs/audit-log.md)."""

    async def _purge(
        self,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            # The record names the new anchor, so its decision set is new: written if absent.
            head, now = await self._lock_head(conn, [])
            anchor_seq, anchor_hash = head["anchor_seq"], head["anchor_hash"]
            deleted = 0
            try:
                cutoff: dt.datetime | None = now - older_than
            except OverflowError:
                cutoff = None  # older than the calendar: nothing qualifies
            if cutoff is not None:
                young = await conn.fetchval(
                    "SELECT min(seq) FROM audit_entry WHERE recorded_at >= $1", cutoff
                )
                # Only a prefix of the chain may go: the anchor must be one hash.
                last_gone = head["seq"] if young is None else young - 1
                if last_gone > anchor_seq:
                    for purpose, youngest in await conn.fetch(PREFIX_PURPOSES, last_gone):
                        keep = protect.get(purpose)
                        if keep is not None and youngest > now - keep:
                            raise PurgeRefused(refusal(purpose, keep))
                    kept = await conn.fetchval(HASH_OF, last_gone)
                    if kept is None:
                        raise RuntimeError(
                            f"audit entry {last_gone} is missing; run verify before purging"
                        )
                    deleted = await conn.fetchval(
                        "SELECT coalesce(sum(record_count), 0) FROM audit_entry WHERE seq <= $1",
                        last_gone,
                    )
                    await conn.execute(
                        "DELETE FROM audit_entry_subject WHERE entry_seq <= $1", last_gone
                    )
                    await conn.execute("DELETE FROM audit_entry WHERE seq <= $1", last_gone)
                    anchor_seq, anchor_hash = last_gone, kept
            record = make_record(anchor_seq)
            kept = await self._append(
                conn, [record], head=head, now=now, anchor=(anchor_seq, anchor_hash)
            )
        self._tip.keep(*kept)  # committed
        return int(deleted)

    async def _purge_expired(
        self,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            head, now = await self._lock_head(conn, [])
            gone: list[Any] = []
            for purpose, cutoff in cutoffs.items():
                gone += await conn.fetch(EXPIRED, purpose, cutoff)
            seqs = sorted(int(row[0]) for row in gone)
            await conn.execute("DELETE FROM audit_entry_subject WHERE entry_seq = ANY($1)", seqs)
            await conn.execute("DELETE FROM audit_entry WHERE seq = ANY($1)", seqs)
            purge_seq = int(head["seq"]) + 1
            await conn.copy_records_to_table(
                PURGED_TABLE,
                records=[(int(row[0]), row[1], purge_seq) for row in gone],
                columns=("seq", "hash", "purge_seq"),
            )
            kept = await self._append(
                conn,
                [make_record(seqs)],
                head=head,
                now=now,
                anchor=(head["anchor_seq"], head["anchor_hash"]),
            )
        self._tip.keep(*kept)  # committed
        return sum(int(row[2]) for row in gone)

    # ---- the Merkle log (docs/audit-log.md) ---------------------------------------------------

    async def _tree_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        if not nodes:
            return {}
        pool = self._require_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            rows = await conn.fetch(SELECT_NODES["postgresql"], *node_params(nodes, "postgresql"))
        return node_map(rows)

    async def _tree_size(self) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            seq = await conn.fetchval("SELECT seq FROM audit_chain_head WHERE id = 1")
        if seq is None:
            raise RuntimeError("audit chain head row is missing")
        return int(seq)

    async def _check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await conn.fetchrow("SELECT seq, anchor_seq FROM audit_chain_head WHERE id = 1")
            if head is None:
                return LogCheck(False, "audit chain head row is missing")

            pages = self._page_reads(conn)

            async def leaves_after(idx: int, n: int) -> list[Any]:
                rows: list[Any] = await conn.fetch(SELECT_LEAVES["postgresql"], idx, n)
                return rows

            reads = LogReads(
                head_seq=int(head["seq"]),
                anchor_seq=int(head["anchor_seq"]),
                entries_after=pages.entries_after,
                subjects_between=pages.subjects_between,
                sets_named=pages.sets_named,
                leaves_after=leaves_after,
                purged=list(await conn.fetch(SELECT_PURGED)),
            )
            return await check_log(reads, checkpoints)

    async def _entries(self, seqs: list[int]) -> EntryRows:
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            entries = await conn.fetch(ENTRIES_NAMED, seqs)
            subjects = await conn.fetch(SUBJECTS_NAMED, seqs)
            set_ids = sorted({row[3] for row in subjects})
            sets = await conn.fetch(SELECT_SETS, set_ids)
        return EntryRows(list(entries), list(subjects), {str(r[0]): bytes(r[1]) for r in sets})

    # ---- the log's content pages (gateway.audit.log_pages) -----------------------------------

    async def _page(self, read: Callable[[Any], Awaitable[T]]) -> T:
        """``read`` in one read-only repeatable-read transaction; AuditUnavailable on failure."""
        pool = self._require_pool()
        try:
            async with (
                pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await read(conn)
        except Exception as exc:
            raise AuditUnavailable(f"audit log page read failed ({type(exc).__name__})") from exc

    async def log_leaves(self, start: int, limit: int, size: int) -> list[Any]:
        """Leaf hashes ``(idx, hash)`` with ``start <= idx < size``, at most ``limit``."""

        async def read(conn: Any) -> list[Any]:
            return list(await conn.fetch(LOG_LEAVES, start, size, limit))

        return await self._page(read)

    async def log_entries(self, after: int, limit: int, size: int) -> EntryPage:
        """Entry rows ``after < seq <= size`` (at most ``limit``), with their seq range's
        subject rows and the decision sets those name, from one snapshot."""

        async def read(conn: Any) -> EntryPage:
            entries = list(await conn.fetch(LOG_ENTRIES, after, size, limit))
            return await entry_page(entries, after, self._page_reads(conn))

        return await self._page(read)

    async def log_purged(self, after: int, limit: int, size: int) -> list[Any]:
        """``audit_purged`` rows ``(seq, hash, purge_seq)`` with ``after < seq <= size``."""

        async def read(conn: Any) -> list[Any]:
            return list(await conn.fetch(LOG_PURGED, after, size, limit))

        return await self._page(read)
