"""The audit layout's tables, defined once for both stores (SQLite and PostgreSQL).

Layout: see :mod:`gateway.audit.chain`. Each column names its SQLite and its PostgreSQL type;
:func:`audit_schema` writes the ``CREATE`` statements of one backend from them, so the two
stores cannot drift apart. SQLite keeps ``INTEGER PRIMARY KEY`` (the rowid alias) for ``seq``
and stores timestamps as ISO text; PostgreSQL uses ``bigint`` and ``timestamptz``.
"""

from __future__ import annotations

from gateway.audit.chain import PreparedBatch
from gateway.audit.tree import PURGED_TABLE, TREE_TABLE, Dialect

#: The tables of the layout (all must exist once the chain has entries; see
#: :mod:`gateway.audit.chain`).
TABLES = ("audit_entry", "audit_entry_subject", "audit_decision_set")
#: The table of the earlier one-row-per-record layout: a database holding it is refused.
OLD_TABLE = "audit_record"


def old_layout_message(where: str) -> str:
    """Why a database of the earlier per-record layout is refused by ``open()``."""
    return (
        f"{where} holds an audit trail in the earlier one-row-per-record layout (table "
        f"{OLD_TABLE}); this version stores one entry per request (audit_entry, "
        "audit_entry_subject, audit_decision_set) and does not mix or convert layouts: "
        "keep that trail as it is and point KETENPOORT_AUDIT_STORE at a new database"
    )


# (name, SQLite type, PostgreSQL type, constraint) of each table, in column order.
_Column = tuple[str, str, str, str]
_ENTRY: tuple[_Column, ...] = (
    ("seq", "INTEGER", "bigint", "PRIMARY KEY"),
    ("trace_id", "TEXT", "text", "NOT NULL"),
    ("span_id", "TEXT", "text", "NOT NULL"),
    ("parent_span_id", "TEXT", "text", ""),
    ("start_time", "TEXT", "timestamptz", "NOT NULL"),
    ("end_time", "TEXT", "timestamptz", "NOT NULL"),
    ("processing_activity_id", "TEXT", "text", ""),
    ("organisation_oin", "TEXT", "text", "NOT NULL"),
    ("organisation", "TEXT", "text", "NOT NULL"),
    ("officer", "TEXT", "text", "NOT NULL"),
    ("authenticated_as", "TEXT", "text", "NOT NULL"),
    ("roles", "TEXT", "text", "NOT NULL"),
    ("purpose", "TEXT", "text", ""),
    ("legal_basis", "TEXT", "text", ""),
    ("policy_version", "TEXT", "text", "NOT NULL"),
    ("subject_count", "INTEGER", "integer", "NOT NULL"),
    ("record_count", "INTEGER", "integer", "NOT NULL"),
    ("subjects_hash", "TEXT", "text", "NOT NULL"),
    ("recorded_at", "TEXT", "timestamptz", "NOT NULL"),
    ("prev_hash", "TEXT", "text", "NOT NULL"),
    ("hash", "TEXT", "text", "NOT NULL"),
)
_SUBJECT: tuple[_Column, ...] = (
    ("entry_seq", "INTEGER", "bigint", "NOT NULL"),
    ("position", "INTEGER", "integer", "NOT NULL"),
    ("subject", "TEXT", "text", ""),
    ("decision_set", "TEXT", "text", "NOT NULL"),
)
_DECISION_SET: tuple[_Column, ...] = (
    ("id", "TEXT", "text", "PRIMARY KEY"),
    ("encoding", "BLOB", "bytea", "NOT NULL"),
)
_CHAIN_HEAD: tuple[_Column, ...] = (
    ("id", "INTEGER", "integer", "PRIMARY KEY CHECK (id = 1)"),
    ("seq", "INTEGER", "bigint", "NOT NULL"),
    ("hash", "TEXT", "text", "NOT NULL"),
    ("recorded_at", "TEXT", "timestamptz", ""),
    ("anchor_seq", "INTEGER", "bigint", "NOT NULL"),
    ("anchor_hash", "TEXT", "text", "NOT NULL"),
)
#: The Merkle tree's stored subtrees (gateway.audit.tree).
_TREE_NODE: tuple[_Column, ...] = (
    ("level", "INTEGER", "integer", "NOT NULL"),
    ("idx", "INTEGER", "bigint", "NOT NULL"),
    ("hash", "BLOB", "bytea", "NOT NULL"),
)
#: Entries a retention purge removed out of order: their chain hash and the purge's entry seq.
_PURGED: tuple[_Column, ...] = (
    ("seq", "INTEGER", "bigint", "NOT NULL"),
    ("hash", "TEXT", "text", "NOT NULL"),
    ("purge_seq", "INTEGER", "bigint", "NOT NULL"),
)
# (table, columns, primary key line, SQLite WITHOUT ROWID)
_TABLES: tuple[tuple[str, tuple[_Column, ...], str, bool], ...] = (
    ("audit_entry", _ENTRY, "", False),
    ("audit_entry_subject", _SUBJECT, "PRIMARY KEY (entry_seq, position)", True),
    ("audit_decision_set", _DECISION_SET, "", True),
    ("audit_chain_head", _CHAIN_HEAD, "", False),
    (TREE_TABLE, _TREE_NODE, "PRIMARY KEY (level, idx)", True),
    (PURGED_TABLE, _PURGED, "PRIMARY KEY (seq)", True),
)
_INDEXES = """\
CREATE INDEX IF NOT EXISTS audit_entry_officer ON audit_entry (officer, seq);
CREATE INDEX IF NOT EXISTS audit_entry_org ON audit_entry (organisation, seq);
CREATE INDEX IF NOT EXISTS audit_entry_oin ON audit_entry (organisation_oin, seq);
CREATE INDEX IF NOT EXISTS audit_entry_purpose ON audit_entry (purpose, seq);
CREATE INDEX IF NOT EXISTS audit_entry_trace ON audit_entry (trace_id);
CREATE INDEX IF NOT EXISTS audit_entry_start ON audit_entry (start_time);
CREATE INDEX IF NOT EXISTS audit_entry_recorded ON audit_entry (recorded_at);
CREATE INDEX IF NOT EXISTS audit_entry_subject_subject ON audit_entry_subject (subject, entry_seq);
"""


def audit_schema(dialect: Dialect) -> str:
    """``CREATE TABLE``/``INDEX IF NOT EXISTS`` of the layout's tables for one backend."""
    pick = 1 if dialect == "sqlite" else 2
    parts = ["\n"]
    for table, columns, key, without_rowid in _TABLES:
        width = max(len(c[0]) for c in columns)
        lines = [f"    {c[0]:<{width}} {c[pick]} {c[3]}".rstrip() for c in columns]
        if key:
            lines.append(f"    {key}")
        tail = " WITHOUT ROWID" if dialect == "sqlite" and without_rowid else ""
        parts.append(
            f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + f"\n){tail};\n"
        )
    return "".join(parts) + _INDEXES


def set_ids(batches: list[PreparedBatch]) -> list[str]:
    """The decision set ids the batches name, each once, in first-seen order."""
    return list({set_id: None for prepared in batches for set_id in prepared.sets})
