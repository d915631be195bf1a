"""The scale-out audit store: PostgreSQL through an asyncpg pool (DESIGN "Stores and scale").

Each group of batches is one transaction: lock the one-row chain head (``SELECT ... FOR
UPDATE``), link the records after it, ``COPY`` them in, move the head. The row lock makes the
chain linear across every gateway process sharing the database; seq is the head's counter, so
it has no gaps (a sequence would leave gaps on rollback). ``recorded_at`` is the server's
``clock_timestamp()`` under that lock (one clock for all processes), never earlier than the
previous transaction's.

Every connection runs with ``synchronous_commit = on`` whatever the server's default, because
``commit()`` promises durability before the response leaves.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

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
    seq                    bigint PRIMARY KEY,
    trace_id               text NOT NULL,
    span_id                text NOT NULL,
    parent_span_id         text,
    start_time             timestamptz NOT NULL,
    end_time               timestamptz NOT NULL,
    status                 text NOT NULL,
    processing_activity_id text,
    data_subject_id        text,
    data_subject_id_type   text,
    organisation_oin       text NOT NULL,
    organisation           text NOT NULL,
    officer                text NOT NULL,
    roles                  text NOT NULL,
    purpose                text,
    legal_basis            text,
    coordinate             text NOT NULL,
    path                   text NOT NULL,
    decision               text NOT NULL,
    reason                 text NOT NULL,
    registry               text,
    policy_version         text NOT NULL,
    recorded_at            timestamptz NOT NULL,
    prev_hash              text NOT NULL,
    hash                   text NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_chain_head (
    id          integer PRIMARY KEY CHECK (id = 1),
    seq         bigint NOT NULL,
    hash        text NOT NULL,
    recorded_at timestamptz,
    anchor_seq  bigint NOT NULL,
    anchor_hash text NOT NULL
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

# Any constant works; it only has to be the same in every gateway process.
_MIGRATION_LOCK = 0x4B50_4155  # "KPAU"
_HEAD_FOR_UPDATE = (
    "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash, clock_timestamp() AS now "
    "FROM audit_chain_head WHERE id = 1 FOR UPDATE"
)
_SET_HEAD = (
    "UPDATE audit_chain_head SET seq = $1, hash = $2, recorded_at = $3, anchor_seq = $4, "
    "anchor_hash = $5 WHERE id = 1"
)
_SELECT = f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_record"  # noqa: S608 (constant)
_ACQUIRE_TIMEOUT = 10.0
_COMMAND_TIMEOUT = 30.0
_VERIFY_PREFETCH = 5_000


async def _init_connection(conn: Any) -> None:
    await conn.execute("SET synchronous_commit = on")


class PostgresAuditStore(GroupCommitStore):
    """:class:`~gateway.audit.store.AuditStore` on PostgreSQL (``postgresql://...``)."""

    text_timestamps = False

    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        super().__init__()
        self._dsn = dsn
        self._max = max_connections
        self._pool: Any = None  # asyncpg.Pool (asyncpg ships no type stubs)

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise AuditUnavailable("audit store is not open")
        return self._pool

    async def _open_backend(self) -> None:
        if self._pool is None:
            # The pool replaces broken connections on its own: after a server restart the
            # first statement on a dead connection fails (that commit gets AuditUnavailable)
            # and the next acquire connects afresh.
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max,
                command_timeout=_COMMAND_TIMEOUT,
                init=_init_connection,
            )
        async with self._pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
            # Two processes starting together must not both run CREATE TABLE.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            # Migration must not paper over a records table that vanished from a used chain.
            if await conn.fetchval(
                "SELECT to_regclass('audit_chain_head') IS NOT NULL "
                "AND to_regclass('audit_record') IS NULL"
            ):
                head = await conn.fetchval("SELECT seq FROM audit_chain_head WHERE id = 1")
                if head is not None and head > 0:
                    raise AuditUnavailable(
                        f"audit_record table is missing but the chain head records seq {head} "
                        "(damage or tampering); not recreating it"
                    )
            await conn.execute(_SCHEMA)
            if await conn.fetchval("SELECT 1 FROM audit_chain_head WHERE id = 1") is None:
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM audit_record)"):
                    raise AuditUnavailable(
                        "audit chain head is missing while records exist "
                        "(damage or tampering): run `ketenpoort audit verify`"
                    )
                await conn.execute(
                    "INSERT INTO audit_chain_head VALUES (1, 0, $1, NULL, 0, $1)", GENESIS_HASH
                )

    async def _close_backend(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @staticmethod
    async def _lock_head(conn: Any) -> tuple[Any, dt.datetime]:
        head = await conn.fetchrow(_HEAD_FOR_UPDATE)
        if head is None:
            raise RuntimeError("audit chain head row is missing")
        now: dt.datetime = head["now"]
        if head["recorded_at"] is not None and now < head["recorded_at"]:
            now = head["recorded_at"]  # keep recorded_at monotonic: purges delete prefixes
        return head, now

    async def _write(self, batches: list[PreparedBatch]) -> None:
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
            head, now = await self._lock_head(conn)
            rows, seq, last = link(
                batches,
                head_seq=head["seq"],
                head_hash=head["hash"],
                recorded_at=now,
                recorded_at_text=ts(now),
            )
            await conn.copy_records_to_table("audit_record", records=rows, columns=ROW_COLUMNS)
            await conn.execute(_SET_HEAD, seq, last, now, head["anchor_seq"], head["anchor_hash"])

    async def _purge(self, older_than: dt.timedelta, record: PreparedBatch) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
            head, now = await self._lock_head(conn)
            anchor_seq, anchor_hash = head["anchor_seq"], head["anchor_hash"]
            deleted = 0
            try:
                cutoff: dt.datetime | None = now - older_than
            except OverflowError:
                cutoff = None  # older than the calendar: nothing qualifies
            if cutoff is not None:
                young = await conn.fetchval(
                    "SELECT min(seq) FROM audit_record WHERE recorded_at >= $1", cutoff
                )
                # Only a prefix of the chain may go: the anchor must be one hash.
                last_gone = head["seq"] if young is None else young - 1
                if last_gone > anchor_seq:
                    kept = await conn.fetchval(
                        "SELECT hash FROM audit_record WHERE seq = $1", last_gone
                    )
                    if kept is None:
                        raise RuntimeError(
                            f"audit record {last_gone} is missing; run verify before purging"
                        )
                    status = await conn.execute(
                        "DELETE FROM audit_record WHERE seq <= $1", last_gone
                    )
                    deleted = int(status.split()[-1])  # "DELETE <n>"
                    anchor_seq, anchor_hash = last_gone, kept
            rows, seq, last = link(
                [record],
                head_seq=head["seq"],
                head_hash=head["hash"],
                recorded_at=now,
                recorded_at_text=ts(now),
            )
            await conn.copy_records_to_table("audit_record", records=rows, columns=ROW_COLUMNS)
            await conn.execute(_SET_HEAD, seq, last, now, anchor_seq, anchor_hash)
            return deleted

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        where, params = build_where(q, lambda n: f"${n}")
        sql = f"{_SELECT}{where} ORDER BY seq LIMIT ${len(params) + 1}"
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
            rows = await conn.fetch(sql, *params, q.limit)
        return [to_record(row) for row in rows]

    async def _verify(self) -> VerifyResult:
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # One snapshot for the head and the walk, while other processes keep writing.
            head = await conn.fetchrow(
                "SELECT seq, hash, anchor_seq, anchor_hash FROM audit_chain_head WHERE id = 1"
            )
            if head is None:
                return VerifyResult(False, 0, None, "audit chain head row is missing")
            walker = ChainWalker(
                anchor_seq=head["anchor_seq"],
                anchor_hash=head["anchor_hash"],
                head_seq=head["seq"],
                head_hash=head["hash"],
            )
            page: list[Any] = []
            async for row in conn.cursor(f"{_SELECT} ORDER BY seq", prefetch=_VERIFY_PREFETCH):
                page.append(row)
                if len(page) >= _VERIFY_PREFETCH:
                    broken = walker.feed(page)
                    if broken is not None:
                        return broken
                    page = []
            broken = walker.feed(page)
            return broken if broken is not None else walker.finish()

    async def _ping(self) -> None:
        pool = self._require_pool()
        async with pool.acquire(timeout=2.0) as conn:
            head = await conn.fetchval("SELECT seq FROM audit_chain_head WHERE id = 1", timeout=2.0)
            if head is None:
                raise RuntimeError("audit chain head row is missing")
            await conn.fetchval("SELECT 1 FROM audit_record WHERE seq = 0", timeout=2.0)
