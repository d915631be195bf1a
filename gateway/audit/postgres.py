"""The scale-out audit store: PostgreSQL through an asyncpg pool (DESIGN "Stores and scale").

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

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

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
    PURGED_TABLE,
    SELECT_LEAVES,
    SELECT_PURGED,
    TREE_COLUMNS,
    TREE_TABLE,
    backfill,
    postgres_new_nodes,
    purged_schema,
    select_nodes_sql,
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entry (
    seq                    bigint PRIMARY KEY,
    trace_id               text NOT NULL,
    span_id                text NOT NULL,
    parent_span_id         text,
    start_time             timestamptz NOT NULL,
    end_time               timestamptz NOT NULL,
    processing_activity_id text,
    organisation_oin       text NOT NULL,
    organisation           text NOT NULL,
    officer                text NOT NULL,
    authenticated_as       text NOT NULL,
    roles                  text NOT NULL,
    purpose                text,
    legal_basis            text,
    policy_version         text NOT NULL,
    subject_count          integer NOT NULL,
    record_count           integer NOT NULL,
    subjects_hash          text NOT NULL,
    recorded_at            timestamptz NOT NULL,
    prev_hash              text NOT NULL,
    hash                   text NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_entry_subject (
    entry_seq    bigint NOT NULL,
    position     integer NOT NULL,
    subject      text,
    decision_set text NOT NULL,
    PRIMARY KEY (entry_seq, position)
);
CREATE TABLE IF NOT EXISTS audit_decision_set (
    id       text PRIMARY KEY,
    encoding bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_chain_head (
    id          integer PRIMARY KEY CHECK (id = 1),
    seq         bigint NOT NULL,
    hash        text NOT NULL,
    recorded_at timestamptz,
    anchor_seq  bigint NOT NULL,
    anchor_hash text NOT NULL
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


# Any constant works; it only has to be the same in every gateway process.
_MIGRATION_LOCK = 0x4B50_4155  # "KPAU"
# The head (locked), the server's clock, and which of the given decision sets exist.
_HEAD_FOR_UPDATE = (
    "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash, clock_timestamp() AS now, "
    "ARRAY(SELECT id FROM audit_decision_set WHERE id = ANY($1::text[])) AS present "
    "FROM audit_chain_head WHERE id = 1 FOR UPDATE"
)
#: Column types of ``audit_entry`` (:data:`ENTRY_COLUMNS` order) and ``audit_entry_subject``.
_ENTRY_TYPES = (
    "bigint", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "text",
    "text", "text", "text", "text", "text", "text", "integer", "integer", "text", "timestamptz",
    "text", "text",
)  # fmt: skip
_SUBJECT_TYPES = ("bigint", "integer", "text", "text")


def _append_statement() -> str:
    """Missing decision sets, the group's entries and subject rows, its new tree nodes and the
    moved head: one statement (data-modifying CTEs), its rows as one array parameter per
    column."""
    n = 2
    entry_args = ", ".join(f"${n + i}::{t}[]" for i, t in enumerate(_ENTRY_TYPES, start=1))
    n += len(_ENTRY_TYPES)
    subject_args = ", ".join(f"${n + i}::{t}[]" for i, t in enumerate(_SUBJECT_TYPES, start=1))
    n += len(_SUBJECT_TYPES)
    head = ", ".join(
        f"{column} = ${n + i}"
        for i, column in enumerate(
            ("seq", "hash", "recorded_at", "anchor_seq", "anchor_hash"), start=1
        )
    )
    n += 5
    nodes = f"${n + 1}::integer[], ${n + 2}::bigint[], ${n + 3}::bytea[]"
    return (
        "WITH sets AS (INSERT INTO audit_decision_set (id, encoding) "  # noqa: S608 (constants)
        "SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (id) DO NOTHING), "
        f"entries AS (INSERT INTO audit_entry ({', '.join(ENTRY_COLUMNS)}) "
        f"SELECT * FROM unnest({entry_args})), "
        f"subjects AS (INSERT INTO audit_entry_subject ({', '.join(SUBJECT_COLUMNS)}) "
        f"SELECT * FROM unnest({subject_args})), "
        f"nodes AS (INSERT INTO {TREE_TABLE} ({', '.join(TREE_COLUMNS)}) "
        f"SELECT * FROM unnest({nodes})) "
        f"UPDATE audit_chain_head SET {head} WHERE id = 1"
    )


_APPEND = _append_statement()


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (``width`` empty lists for no rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


_SELECT_ENTRIES = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608 (constant columns)
    "WHERE seq > $1 ORDER BY seq LIMIT $2"
)
_SELECT_SUBJECTS = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq > $1 AND entry_seq <= $2 ORDER BY entry_seq, position"
)
_SELECT_SETS = "SELECT id, encoding FROM audit_decision_set WHERE id = ANY($1::text[])"
_ENTRIES_NAMED = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq = ANY($1::bigint[]) ORDER BY seq"
)
_SUBJECTS_NAMED = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq = ANY($1::bigint[]) ORDER BY entry_seq, position"
)
# The purposes of a prefix about to be purged, each with its youngest entry.
_PREFIX_PURPOSES = (
    "SELECT purpose, max(recorded_at) FROM audit_entry WHERE seq <= $1 AND purpose IS NOT NULL "
    "GROUP BY purpose"
)
# The hash of an entry, also when a retention purge removed it.
_HASH_OF = (
    "SELECT hash FROM audit_entry WHERE seq = $1 "
    "UNION ALL SELECT hash FROM audit_purged WHERE seq = $1 LIMIT 1"
)
_EXPIRED = "SELECT seq, hash, record_count FROM audit_entry WHERE purpose = $1 AND recorded_at < $2"
_STRAY_SUBJECTS = "SELECT count(*) FROM audit_entry_subject WHERE entry_seq <= $1 OR entry_seq > $2"
_PING = (
    "SELECT (SELECT seq FROM audit_chain_head WHERE id = 1), "
    "(SELECT 1 FROM audit_entry WHERE seq = 0), "
    "(SELECT 1 FROM audit_entry_subject WHERE entry_seq = 0 LIMIT 1), "
    "(SELECT 1 FROM audit_decision_set WHERE id = '')"
)
#: Seconds to open a connection, to wait for a free pooled one, and for one statement: a lost
#: server fails a commit within these (AUDIT_UNAVAILABLE), never hangs it (README, Timeouts).
CONNECT_TIMEOUT = 5.0
_ACQUIRE_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 10.0
_SEARCH_CHUNK = 2_000


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
                timeout=CONNECT_TIMEOUT,
                init=_init_connection,
            )
        async with self._pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
            # Two processes starting together must not both run CREATE TABLE.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
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
            await conn.execute(_SCHEMA + tree_schema("postgresql") + purged_schema("postgresql"))
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
                rows: list[Any] = await conn.fetch(_SELECT_ENTRIES, 0, head["seq"] + 1)
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

    @staticmethod
    def _set_ids(batches: list[PreparedBatch]) -> list[str]:
        return list({set_id: None for prepared in batches for set_id in prepared.sets})

    @staticmethod
    async def _lock_head(conn: Any, set_ids: list[str]) -> tuple[Any, dt.datetime]:
        head = await conn.fetchrow(_HEAD_FOR_UPDATE, set_ids)
        if head is None:
            raise RuntimeError("audit chain head row is missing")
        now: dt.datetime = head["now"]
        if head["recorded_at"] is not None and now < head["recorded_at"]:
            now = head["recorded_at"]  # keep recorded_at monotonic: purges delete prefixes
        return head, now

    @staticmethod
    async def _append(
        conn: Any,
        batches: list[PreparedBatch],
        *,
        head: Any,
        now: dt.datetime,
        anchor: tuple[int, str],
    ) -> None:
        """Write the missing decision sets, the linked entries and subject rows, the head."""
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
        # The tree's new nodes need its right frontier: read under the head's lock, in a
        # statement of its own (a fresh snapshot sees every committed node).
        nodes = await postgres_new_nodes(conn, head["seq"], linked.leaves)
        # One statement, one round trip: a commit waits for every round trip of its group, and
        # on a busy machine each one waits for the server process to be scheduled.
        await conn.execute(
            _APPEND,
            list(missing),
            list(missing.values()),
            *_columns(linked.entries, len(_ENTRY_TYPES)),
            *_columns(linked.subjects, len(_SUBJECT_TYPES)),
            linked.seq,
            linked.hash,
            now,
            *anchor,
            *_columns(nodes, 3),
        )

    async def _write(self, batches: list[PreparedBatch]) -> None:
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
            head, now = await self._lock_head(conn, self._set_ids(batches))
            await self._append(
                conn, batches, head=head, now=now, anchor=(head["anchor_seq"], head["anchor_hash"])
            )

    async def _purge(
        self,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
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
                    for purpose, youngest in await conn.fetch(_PREFIX_PURPOSES, last_gone):
                        keep = protect.get(purpose)
                        if keep is not None and youngest > now - keep:
                            raise PurgeRefused(refusal(purpose, keep))
                    kept = await conn.fetchval(_HASH_OF, last_gone)
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
            await self._append(conn, [record], head=head, now=now, anchor=(anchor_seq, anchor_hash))
            return int(deleted)

    async def _purge_expired(
        self,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn, conn.transaction():
            head, now = await self._lock_head(conn, [])
            gone: list[Any] = []
            for purpose, cutoff in cutoffs.items():
                gone += await conn.fetch(_EXPIRED, purpose, cutoff)
            seqs = sorted(int(row[0]) for row in gone)
            await conn.execute("DELETE FROM audit_entry_subject WHERE entry_seq = ANY($1)", seqs)
            await conn.execute("DELETE FROM audit_entry WHERE seq = ANY($1)", seqs)
            purge_seq = int(head["seq"]) + 1
            await conn.copy_records_to_table(
                PURGED_TABLE,
                records=[(int(row[0]), row[1], purge_seq) for row in gone],
                columns=("seq", "hash", "purge_seq"),
            )
            await self._append(
                conn,
                [make_record(seqs)],
                head=head,
                now=now,
                anchor=(head["anchor_seq"], head["anchor_hash"]),
            )
            return sum(int(row[2]) for row in gone)

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        where, params = build_where(q, lambda n: f"${n}")
        # Each subject row yields at least one record: q.limit rows are always enough.
        sql = f"{SEARCH_SELECT}{where} ORDER BY e.seq, s.position LIMIT ${len(params) + 1}"
        expander = Expander(self.decision_sets, q.limit)
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cursor = await conn.cursor(sql, *params, q.limit)
            while chunk := await cursor.fetch(_SEARCH_CHUNK):
                wanted = expander.missing(chunk)
                if wanted:
                    expander.add_sets(wanted, await conn.fetch(_SELECT_SETS, wanted))
                if expander.feed(chunk):
                    break
        return expander.records

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

            async def entries_after(after: int, n: int) -> list[Any]:
                rows: list[Any] = await conn.fetch(_SELECT_ENTRIES, after, n)
                return rows

            async def subjects_between(lo: int, hi: int) -> list[Any]:
                rows: list[Any] = await conn.fetch(_SELECT_SUBJECTS, lo, hi)
                return rows

            async def sets_named(ids: list[str]) -> list[Any]:
                rows: list[Any] = await conn.fetch(_SELECT_SETS, ids)
                return rows

            async def stray(anchor: int, head_seq: int) -> int:
                return int(await conn.fetchval(_STRAY_SUBJECTS, anchor, head_seq))

            purged = await conn.fetch(SELECT_PURGED)
            return await walk_chain(
                ChainHead(
                    seq=head["seq"],
                    hash=head["hash"],
                    anchor_seq=head["anchor_seq"],
                    anchor_hash=head["anchor_hash"],
                ),
                entries_after=entries_after,
                subjects_between=subjects_between,
                sets_named=sets_named,
                stray_subject_rows=stray,
                purged={int(r[0]): r[1] for r in purged},
            )

    async def _ping(self) -> None:
        pool = self._require_pool()
        async with pool.acquire(timeout=2.0) as conn:
            head = await conn.fetchval(_PING, timeout=2.0)
            if head is None:
                raise RuntimeError("audit chain head row is missing")

    # ---- the Merkle log (docs/audit-log.md) ---------------------------------------------------

    async def _tree_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        if not nodes:
            return {}
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
            rows = await conn.fetch(
                select_nodes_sql(len(nodes), "postgresql"),
                [n[0] for n in nodes],
                [n[1] for n in nodes],
            )
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}

    async def _tree_size(self) -> int:
        pool = self._require_pool()
        async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
            seq = await conn.fetchval("SELECT seq FROM audit_chain_head WHERE id = 1")
        if seq is None:
            raise RuntimeError("audit chain head row is missing")
        return int(seq)

    async def _check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await conn.fetchrow("SELECT seq, anchor_seq FROM audit_chain_head WHERE id = 1")
            if head is None:
                return LogCheck(False, "audit chain head row is missing")

            async def entries_after(after: int, n: int) -> list[Any]:
                rows: list[Any] = await conn.fetch(_SELECT_ENTRIES, after, n)
                return rows

            async def subjects_between(lo: int, hi: int) -> list[Any]:
                rows: list[Any] = await conn.fetch(_SELECT_SUBJECTS, lo, hi)
                return rows

            async def sets_named(ids: list[str]) -> list[Any]:
                rows: list[Any] = await conn.fetch(_SELECT_SETS, ids)
                return rows

            async def leaves_after(idx: int, n: int) -> list[Any]:
                rows: list[Any] = await conn.fetch(SELECT_LEAVES["postgresql"], idx, n)
                return rows

            reads = LogReads(
                head_seq=int(head["seq"]),
                anchor_seq=int(head["anchor_seq"]),
                entries_after=entries_after,
                subjects_between=subjects_between,
                sets_named=sets_named,
                leaves_after=leaves_after,
                purged=list(await conn.fetch(SELECT_PURGED)),
            )
            return await check_log(reads, checkpoints)

    async def _entries(self, seqs: list[int]) -> EntryRows:
        pool = self._require_pool()
        async with (
            pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            entries = await conn.fetch(_ENTRIES_NAMED, seqs)
            subjects = await conn.fetch(_SUBJECTS_NAMED, seqs)
            set_ids = sorted({row[3] for row in subjects})
            sets = await conn.fetch(_SELECT_SETS, set_ids)
        return EntryRows(list(entries), list(subjects), {str(r[0]): bytes(r[1]) for r in sets})
