"""The postgres store's schema, statements and limits (one place for its SQL text)."""

from __future__ import annotations

from typing import Any

from gateway.audit.chain import (
    ENTRY_COLUMNS,
    SUBJECT_COLUMNS,
)
from gateway.audit.tree import (
    PURGED_TABLE,
    TREE_COLUMNS,
    TREE_TABLE,
)

# Any constant works; it only has to be the same in every gateway process.
MIGRATION_LOCK = 0x4B50_4155  # "KPAU"
# The head (locked), the server's clock, and which of the given decision sets exist.
HEAD_FOR_UPDATE = (
    "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash, clock_timestamp() AS now, "
    "ARRAY(SELECT id FROM audit_decision_set WHERE id = ANY($1::text[])) AS present "
    "FROM audit_chain_head WHERE id = 1 FOR UPDATE"
)
#: Column types of ``audit_entry`` (:data:`ENTRY_COLUMNS` order) and ``audit_entry_subject``.
ENTRY_TYPES = (
    "bigint", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "text",
    "text", "text", "text", "text", "text", "text", "integer", "integer", "text", "timestamptz",
    "text", "text",
)  # fmt: skip
SUBJECT_TYPES = ("bigint", "integer", "text", "text")


def append_statement() -> str:
    """Missing decision sets, the group's entries and subject rows, its new tree nodes and the
    moved head: one statement (data-modifying CTEs), its rows as one array parameter per
    column."""
    n = 2
    entry_args = ", ".join(f"${n + i}::{t}[]" for i, t in enumerate(ENTRY_TYPES, start=1))
    n += len(ENTRY_TYPES)
    subject_args = ", ".join(f"${n + i}::{t}[]" for i, t in enumerate(SUBJECT_TYPES, start=1))
    n += len(SUBJECT_TYPES)
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


APPEND = append_statement()


def columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (``width`` empty lists for no rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


SELECT_ENTRIES = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608 (constant columns)
    "WHERE seq > $1 ORDER BY seq LIMIT $2"
)
SELECT_SUBJECTS = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq > $1 AND entry_seq <= $2 ORDER BY entry_seq, position"
)
SELECT_SETS = "SELECT id, encoding FROM audit_decision_set WHERE id = ANY($1::text[])"
# The log's content pages (gateway.audit.log_pages), each bounded by a tree size.
LOG_LEAVES = (
    f"SELECT idx, hash FROM {TREE_TABLE} "  # noqa: S608 (constant names)
    "WHERE level = 0 AND idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3"
)
LOG_ENTRIES = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
)
LOG_PURGED = (
    f"SELECT seq, hash, purge_seq FROM {PURGED_TABLE} "  # noqa: S608
    "WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
)
ENTRIES_NAMED = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq = ANY($1::bigint[]) ORDER BY seq"
)
SUBJECTS_NAMED = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq = ANY($1::bigint[]) ORDER BY entry_seq, position"
)
# The purposes of a prefix about to be purged, each with its youngest entry.
PREFIX_PURPOSES = (
    "SELECT purpose, max(recorded_at) FROM audit_entry WHERE seq <= $1 AND purpose IS NOT NULL "
    "GROUP BY purpose"
)
# The hash of an entry, also when a retention purge removed it.
HASH_OF = (
    "SELECT hash FROM audit_entry WHERE seq = $1 "
    "UNION ALL SELECT hash FROM audit_purged WHERE seq = $1 LIMIT 1"
)
EXPIRED = "SELECT seq, hash, record_count FROM audit_entry WHERE purpose = $1 AND recorded_at < $2"
STRAY_SUBJECTS = "SELECT count(*) FROM audit_entry_subject WHERE entry_seq <= $1 OR entry_seq > $2"
PING = (
    "SELECT (SELECT seq FROM audit_chain_head WHERE id = 1), "
    "(SELECT 1 FROM audit_entry WHERE seq = 0), "
    "(SELECT 1 FROM audit_entry_subject WHERE entry_seq = 0 LIMIT 1), "
    "(SELECT 1 FROM audit_decision_set WHERE id = '')"
)
#: Seconds to open a connection, to wait for a free pooled one, and for one statement: a lost
#: server fails a commit within these (AUDIT_UNAVAILABLE), never hangs it (README, Timeouts).
CONNECT_TIMEOUT = 5.0
ACQUIRE_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
SEARCH_CHUNK = 2_000


async def init_connection(conn: Any) -> None:
    await conn.execute("SET synchronous_commit = on")
