"""PostgreSQL store: its pool and the group-commit write transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.audit.chain import (
    PreparedBatch,
    link,
    ts,
)
from gateway.audit.merkle import Frontier
from gateway.audit.postgres_sql import (
    ACQUIRE_TIMEOUT,
    APPEND,
    ENTRY_TYPES,
    HEAD_FOR_UPDATE,
    SELECT_ENTRIES,
    SELECT_SETS,
    SELECT_SUBJECTS,
    SUBJECT_TYPES,
    columns,
)
from gateway.audit.querying import PageReads
from gateway.audit.store import AuditUnavailable
from gateway.audit.tables import set_ids
from gateway.audit.tree import (
    TreeTip,
    postgres_append,
)
from gateway.audit.writer import (
    GroupCommitStore,
)


class PostgresBase(GroupCommitStore):
    """:class:`~gateway.audit.store.AuditStore` on PostgreSQL (``postgresql://...``)."""

    text_timestamps = False

    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        super().__init__()
        self._dsn = dsn
        self._max = max_connections
        self._pool: Any = None  # asyncpg.Pool (asyncpg ships no type stubs)
        #: The tree's right frontier after this process's last commit (used by the writer).
        self._tip = TreeTip()

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise AuditUnavailable("audit store is not open")
        return self._pool

    @staticmethod
    def _page_reads(conn: Any) -> PageReads:
        """The chain's paged reads on ``conn`` (in the caller's read transaction)."""

        async def entries_after(after: int, n: int) -> list[Any]:
            rows: list[Any] = await conn.fetch(SELECT_ENTRIES, after, n)
            return rows

        async def subjects_between(lo: int, hi: int) -> list[Any]:
            rows: list[Any] = await conn.fetch(SELECT_SUBJECTS, lo, hi)
            return rows

        async def sets_named(ids: list[str]) -> list[Any]:
            rows: list[Any] = await conn.fetch(SELECT_SETS, ids)
            return rows

        return PageReads(entries_after, subjects_between, sets_named)

    @staticmethod
    async def _lock_head(conn: Any, set_ids: list[str]) -> tuple[Any, dt.datetime]:
        head = await conn.fetchrow(HEAD_FOR_UPDATE, set_ids)
        if head is None:
            raise RuntimeError("audit chain head row is missing")
        now: dt.datetime = head["now"]
        if head["recorded_at"] is not None and now < head["recorded_at"]:
            now = head["recorded_at"]  # keep recorded_at monotonic: purges delete prefixes
        return head, now

    async def _append(
        self,
        conn: Any,
        batches: list[PreparedBatch],
        *,
        head: Any,
        now: dt.datetime,
        anchor: tuple[int, str],
    ) -> tuple[str, Frontier]:
        """Write the missing decision sets, the linked entries and subject rows, their tree
        nodes, the head. Returns the new head hash and the tree's frontier there: for
        ``self._tip.keep`` once the transaction committed."""
        present = set(head["present"])
        missing = {
            set_id: encoding
            for prepared in batches
            for set_id, encoding in prepared.sets.items()
            if set_id not in present
        }
        linked = link(
            batches,
            head_seq=head["seq"],
            head_hash=head["hash"],
            recorded_at=now,
            recorded_at_text=ts(now),
        )
        # The tree's new nodes need its right frontier: this process's copy if the head is
        # where it left it, else read under the head's lock (see TreeTip).
        tree, nodes = await postgres_append(
            conn, self._tip, head["seq"], head["hash"], linked.leaves
        )
        # One statement, one round trip: a commit waits for every round trip of its group, and
        # on a busy machine each one waits for the server process to be scheduled.
        await conn.execute(
            APPEND,
            list(missing),
            list(missing.values()),
            *columns(linked.entries, len(ENTRY_TYPES)),
            *columns(linked.subjects, len(SUBJECT_TYPES)),
            linked.seq,
            linked.hash,
            now,
            *anchor,
            *columns(nodes, 3),
        )
        return linked.hash, tree

    async def _write(self, batches: list[PreparedBatch]) -> None:
        pool = self._require_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            head, now = await self._lock_head(conn, set_ids(batches))
            kept = await self._append(
                conn, batches, head=head, now=now, anchor=(head["anchor_seq"], head["anchor_hash"])
            )
        self._tip.keep(*kept)  # committed
