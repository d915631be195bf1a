"""The scale-out audit store: PostgreSQL through an asyncpg pool (docs/design.md, Stores and scale).

Layout: see :mod:`gateway.audit.chain` (one ``audit_entry`` row per request, one
``audit_entry_subject`` row per data subject, content-addressed ``audit_decision_set`` rows).

Each group of batches is one transaction: lock the one-row chain head (``SELECT ... FOR
UPDATE``, which also says which of the group's decision sets exist), link the entries after
the head, then write the missing sets, the entries, the subject rows and the moved head in one
statement (one round trip). The row lock makes the chain linear across every gateway process
sharing the database; seq is the head's counter, so it has no gaps (a sequence would leave gaps
on rollback). ``recorded_at`` is the server's ``clock_timestamp()`` under that lock (one clock
for all processes), never earlier than the previous transaction's.

Every connection runs with ``synchronous_commit = on`` whatever the server's default, because
``commit()`` promises durability before the response leaves.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from gateway.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    VerifyResult,
    walk_chain,
)
from gateway.audit.model import AuditQuery, AuditRecord
from gateway.audit.postgres_log import PostgresLog
from gateway.audit.postgres_sql import (
    ACQUIRE_TIMEOUT,
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    MIGRATION_LOCK,
    PING,
    SEARCH_CHUNK,
    SELECT_ENTRIES,
    SELECT_SETS,
    STRAY_SUBJECTS,
    init_connection,
)
from gateway.audit.querying import SEARCH_SELECT, Expander, build_where
from gateway.audit.store import AuditUnavailable
from gateway.audit.tables import OLD_TABLE, TABLES, audit_schema, old_layout_message
from gateway.audit.tree import (
    COUNT_LEAVES,
    SELECT_PURGED,
    TREE_COLUMNS,
    TREE_TABLE,
    backfill,
)


class PostgresAuditStore(PostgresLog):
    """:class:`~gateway.audit.store.AuditStore` on PostgreSQL (``postgresql://...``)."""

    async def _open_backend(self) -> None:
        if self._pool is None:
            # The pool replaces broken connections on its own: after a server restart the
            # first statement on a dead connection fails (that commit gets AuditUnavailable)
            # and the next acquire connects afresh.
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max,
                command_timeout=COMMAND_TIMEOUT,
                timeout=CONNECT_TIMEOUT,
                init=init_connection,
            )
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
            # Two processes starting together must not both run CREATE TABLE.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            present = {
                row["name"]
                for row in await conn.fetch(
                    "SELECT name FROM unnest($1::text[]) AS name "
                    "WHERE to_regclass(quote_ident(name)) IS NOT NULL",
                    [OLD_TABLE, "audit_chain_head", *TABLES],
                )
            }
            if OLD_TABLE in present:
                raise AuditUnavailable(old_layout_message("the PostgreSQL database"))
            missing = [t for t in TABLES if t not in present]
            if "audit_chain_head" in present and missing:
                # Migration must not paper over tables that vanished from a used chain.
                head = await conn.fetchval("SELECT seq FROM audit_chain_head WHERE id = 1")
                if head is not None and head > 0:
                    raise AuditUnavailable(
                        f"audit table(s) {', '.join(missing)} missing but the chain head records "
                        f"seq {head} (damage or tampering); not recreating them"
                    )
            await conn.execute(audit_schema("postgresql"))
            if await conn.fetchval("SELECT 1 FROM audit_chain_head WHERE id = 1") is None:
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM audit_entry)"):
                    raise AuditUnavailable(
                        "audit chain head is missing while entries exist "
                        "(damage or tampering): run `ketenpoort audit verify`"
                    )
                await conn.execute(
                    "INSERT INTO audit_chain_head VALUES (1, 0, $1, NULL, 0, $1)", GENESIS_HASH
                )
            head = await conn.fetchrow("SELECT seq, anchor_seq FROM audit_chain_head WHERE id = 1")

            async def every_entry() -> list[Any]:
                rows: list[Any] = await conn.fetch(SELECT_ENTRIES, 0, head["seq"] + 1)
                return rows

            try:
                rows = await backfill(
                    head["seq"], head["anchor_seq"], await conn.fetchval(COUNT_LEAVES), every_entry
                )
            except ValueError as exc:
                raise AuditUnavailable(str(exc)) from exc
            if rows:
                await conn.copy_records_to_table(TREE_TABLE, records=rows, columns=TREE_COLUMNS)

    async def _close_backend(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        where, params = build_where(q, lambda n: f"${n}")
        # Each subject row yields at least one record: q.limit rows are always enough.
        sql = f"{SEARCH_SELECT}{where} ORDER BY e.seq, s.position LIMIT ${len(params) + 1}"
        expander = Expander(self.decision_sets, q.limit)
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cursor = await conn.cursor(sql, *params, q.limit)
            while chunk := await cursor.fetch(SEARCH_CHUNK):
                wanted = expander.missing(chunk)
                if wanted:
                    expander.add_sets(wanted, await conn.fetch(SELECT_SETS, wanted))
                if expander.feed(chunk):
                    break
        return expander.records

    async def _verify(self) -> VerifyResult:
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # One snapshot for the head and the walk, while other processes keep writing.
            head = await conn.fetchrow(
                "SELECT seq, hash, anchor_seq, anchor_hash FROM audit_chain_head WHERE id = 1"
            )
            if head is None:
                return VerifyResult(False, 0, None, "audit chain head row is missing")

            pages = self._page_reads(conn)

            async def stray(anchor: int, head_seq: int) -> int:
                return int(await conn.fetchval(STRAY_SUBJECTS, anchor, head_seq))

            purged = await conn.fetch(SELECT_PURGED)
            return await walk_chain(
                ChainHead(
                    seq=head["seq"],
                    hash=head["hash"],
                    anchor_seq=head["anchor_seq"],
                    anchor_hash=head["anchor_hash"],
                ),
                entries_after=pages.entries_after,
                subjects_between=pages.subjects_between,
                sets_named=pages.sets_named,
                stray_subject_rows=stray,
                purged={int(r[0]): r[1] for r in purged},
            )

    async def _ping(self) -> None:
        pool = self._require_pool()
        async with pool.acquire(timeout=2.0) as conn:
            head = await conn.fetchval(PING, timeout=2.0)
            if head is None:
                raise RuntimeError("audit chain head row is missing")
