"""The sqlite store's schema, statements and limits (one place for its SQL text)."""

from __future__ import annotations

from typing import TypeVar

from gateway.audit.chain import (
    ENTRY_COLUMNS,
    SUBJECT_COLUMNS,
)
from gateway.audit.tree import PURGED_TABLE, TREE_TABLE

INSERT_ENTRY = (
    f"INSERT INTO audit_entry ({', '.join(ENTRY_COLUMNS)}) "  # noqa: S608 (constant columns)
    f"VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})"
)
INSERT_SUBJECT = (
    f"INSERT INTO audit_entry_subject ({', '.join(SUBJECT_COLUMNS)}) "  # noqa: S608
    "VALUES (?, ?, ?, ?)"
)
INSERT_SET = "INSERT INTO audit_decision_set (id, encoding) VALUES (?, ?) ON CONFLICT DO NOTHING"
# The head, and which of the given decision sets exist (under the write lock: stable).
HEAD_AND_SETS = (
    "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash, "
    "(SELECT json_group_array(id) FROM audit_decision_set "
    " WHERE id IN (SELECT value FROM json_each(?))) "
    "FROM audit_chain_head WHERE id = 1"
)
HEAD = "SELECT seq, hash, recorded_at, anchor_seq, anchor_hash FROM audit_chain_head WHERE id = 1"
SELECT_ENTRIES = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq > ? ORDER BY seq LIMIT ?"
)
SELECT_SUBJECTS = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq > ? AND entry_seq <= ? ORDER BY entry_seq, position"
)
SELECT_SETS = (
    "SELECT id, encoding FROM audit_decision_set WHERE id IN (SELECT value FROM json_each(?))"
)
ENTRIES_NAMED = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq"
)
SUBJECTS_NAMED = (
    f"SELECT {', '.join(SUBJECT_COLUMNS)} FROM audit_entry_subject "  # noqa: S608
    "WHERE entry_seq IN (SELECT value FROM json_each(?)) ORDER BY entry_seq, position"
)
# The log's content pages (gateway.audit.log_pages), each bounded by a tree size.
LOG_LEAVES = (
    f"SELECT idx, hash FROM {TREE_TABLE} "  # noqa: S608 (constant names)
    "WHERE level = 0 AND idx >= ? AND idx < ? ORDER BY idx LIMIT ?"
)
LOG_ENTRIES = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entry "  # noqa: S608
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
LOG_PURGED = (
    f"SELECT seq, hash, purge_seq FROM {PURGED_TABLE} "  # noqa: S608
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
# The purposes of a prefix about to be purged, each with its youngest entry.
PREFIX_PURPOSES = (
    "SELECT purpose, max(recorded_at) FROM audit_entry WHERE seq <= ? AND purpose IS NOT NULL "
    "GROUP BY purpose"
)
# The hash of an entry, also when a retention purge removed it.
HASH_OF = (
    "SELECT hash FROM audit_entry WHERE seq = ? "
    "UNION ALL SELECT hash FROM audit_purged WHERE seq = ? LIMIT 1"
)
EXPIRED = "SELECT seq, hash, record_count FROM audit_entry WHERE purpose = ? AND recorded_at < ?"
STRAY_SUBJECTS = "SELECT count(*) FROM audit_entry_subject WHERE entry_seq <= ? OR entry_seq > ?"
PING = (
    "SELECT (SELECT seq FROM audit_chain_head WHERE id = 1), "
    "(SELECT 1 FROM audit_entry WHERE seq = 0), "
    "(SELECT 1 FROM audit_entry_subject WHERE entry_seq = 0 LIMIT 1), "
    "(SELECT 1 FROM audit_decision_set WHERE id = '')"
)
SEARCH_CHUNK = 500
T = TypeVar("T")
#: How long the writer waits for SQLite's write lock (another process, a checkpoint) before its
#: group commit fails with AUDIT_UNAVAILABLE: a locked store answers 503 within about this,
#: never holds requests for long.
WRITE_BUSY_TIMEOUT_MS = 1_000
#: Below this much free space on the store's file system the store reports itself not ready.
MIN_FREE_BYTES = 1 << 20
#: How long the readiness probe waits for the write lock.
PROBE_BUSY_TIMEOUT_MS = 100
#: How long a read waits for a lock (WAL readers rarely wait at all).
READ_BUSY_TIMEOUT_MS = 2_000
#: Transient read failures (a WAL index being rebuilt, a lock) are retried this often, with a
#: short pause, within the search deadline of :class:`GroupCommitStore`.
READ_RETRIES = 3
TRANSIENT = ("locked", "busy", "locking protocol")
