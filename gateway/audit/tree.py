"""The audit log's Merkle tree in the stores: one table layout, written for both backends.

Every entry of the trail (one per request) is leaf ``seq - 1`` of an RFC 6962 tree; its leaf
data is the entry's canonical bytes (:func:`gateway.audit.entries.entry_bytes`). The table
``audit_tree_node`` holds every perfect aligned subtree, ``(level, idx, hash)``: level 0 are
the leaf hashes, level ``l`` index ``i`` the hash of leaves ``[i·2^l, (i+1)·2^l)``. Nodes are
only ever inserted (a new entry adds its leaf and the subtrees it completes, about two rows),
in the same transaction as the entries; a purge removes entry content but never a node, so
roots and proofs of every size stay computable from O(log² n) rows.

:class:`TreeReader` gives roots and proofs of any size from a backend's node reader.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

from gateway.audit.entries import entry_bytes, read_entry
from gateway.audit.merkle import (
    Node,
    ProofError,
    append_leaves,
    consistency_proof,
    consistency_ranges,
    frontier,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    nodes_for,
    root_from,
    root_nodes,
)
from gateway.audit.store import AuditUnavailable

log = logging.getLogger("ketenpoort.audit")

Dialect = Literal["sqlite", "postgresql"]

#: The tree's stored subtrees; both tables are defined in :mod:`gateway.audit.tables`.
TREE_TABLE = "audit_tree_node"
#: Entries a retention purge removed out of order: their chain hash and the purge's entry seq
#: (the purge entry's decision commits to the list, see :mod:`gateway.audit.logcheck`).
PURGED_TABLE = "audit_purged"
#: Every purged row (seq, hash, purge_seq), for verification.
SELECT_PURGED = f"SELECT seq, hash, purge_seq FROM {PURGED_TABLE} ORDER BY seq"  # noqa: S608


def select_nodes_sql(count: int, dialect: Dialect) -> str:
    """A SELECT of ``(level, idx, hash)`` for ``count`` (level, idx) pairs.

    SQLite takes ``2·count`` parameters (level, idx, level, idx, ...); PostgreSQL takes two
    arrays ``$1::integer[]`` (levels) and ``$2::bigint[]`` (indices).
    """
    if dialect == "sqlite":
        pairs = ", ".join("(?, ?)" for _ in range(count))
        return (
            f"SELECT level, idx, hash FROM {TREE_TABLE} "  # noqa: S608 (constant names)
            f"WHERE (level, idx) IN (VALUES {pairs})"
        )
    return (
        f"SELECT t.level, t.idx, t.hash FROM {TREE_TABLE} t "  # noqa: S608
        "JOIN unnest($1::integer[], $2::bigint[]) AS k(level, idx) "
        "ON t.level = k.level AND t.idx = k.idx"
    )


def sqlite_params(nodes: Iterable[Node]) -> list[int]:
    """Flattened (level, idx) parameters for the SQLite form of :func:`select_nodes_sql`."""
    return [v for node in nodes for v in node]


INSERT_NODE_SQLITE = f"INSERT INTO {TREE_TABLE} (level, idx, hash) VALUES (?, ?, ?)"  # noqa: S608
#: Leaves (level 0) in index order, for verification: ``idx > ?`` ``LIMIT ?``.
SELECT_LEAVES = {
    "sqlite": f"SELECT idx, hash FROM {TREE_TABLE} WHERE level = 0 AND idx > ? "  # noqa: S608
    "ORDER BY idx LIMIT ?",
    "postgresql": f"SELECT idx, hash FROM {TREE_TABLE} WHERE level = 0 AND idx > $1 "  # noqa: S608
    "ORDER BY idx LIMIT $2",
}

#: Reads the stored nodes among those asked for (absent ones are left out).
NodeFetch = Callable[[list[Node]], Awaitable[dict[Node, bytes]]]


TREE_COLUMNS = ("level", "idx", "hash")
#: How many leaves the tree holds (to compare with the chain head when a store opens).
COUNT_LEAVES = f"SELECT count(*) FROM {TREE_TABLE} WHERE level = 0"  # noqa: S608


async def backfill(
    head_seq: int,
    anchor_seq: int,
    leaf_count: int,
    read_entries: Callable[[], Awaitable[Sequence[Any]]],
) -> list[tuple[int, int, bytes]]:
    """Node rows that give a trail written before the tree existed its tree.

    Only a trail whose tree is empty and which was never purged can be given one (its leaves
    are recomputed from every entry, 1..head); any other mismatch between the tree and the
    chain head is damage or tampering and raises ``ValueError``. ``read_entries()`` returns
    every entry row (:data:`~gateway.audit.entries.ENTRY_COLUMNS` order) by seq.
    """
    if leaf_count == head_seq:
        return []
    if leaf_count != 0 or anchor_seq != 0:
        # Damage or tampering. Not refused here: `audit verify --checkpoint` must be able to
        # open the store to name it, and a write cannot extend such a tree (it fails, closed).
        log.error(
            "the audit Merkle tree holds %d leaves but the chain head records %d entries "
            "(damage or tampering): run `ketenpoort audit verify --checkpoint`",
            leaf_count,
            head_seq,
        )
        return []
    entries = [read_entry(row) for row in await read_entries()]
    if [e.seq for e in entries] != list(range(1, head_seq + 1)):
        raise ValueError(
            "the audit trail predates its Merkle tree and misses entries: the tree cannot be "
            "rebuilt (run `ketenpoort audit verify`)"
        )
    leaves = [leaf_hash(entry_bytes(e)) for e in entries]
    return _node_rows(append_leaves(0, leaves, {}))


def _node_rows(new: dict[Node, bytes]) -> list[tuple[int, int, bytes]]:
    return [(level, idx, h) for (level, idx), h in new.items()]


def sqlite_append(db: Any, size: int, leaves: Sequence[bytes]) -> None:
    """Append leaf hashes to the tree of ``size`` leaves, inside the caller's transaction.

    ``db`` is a ``sqlite3.Connection``. Reads only the right frontier (≤ 64 rows).
    """
    need = frontier(size)
    known: dict[Node, bytes] = {}
    if need:
        rows = db.execute(select_nodes_sql(len(need), "sqlite"), sqlite_params(need)).fetchall()
        known = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
    db.executemany(INSERT_NODE_SQLITE, _node_rows(append_leaves(size, leaves, known)))


async def postgres_new_nodes(
    conn: Any, size: int, leaves: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """The node rows that appending leaf hashes to the tree of ``size`` leaves adds (an
    asyncpg connection in the writing transaction). Reads only the right frontier (≤ 64
    rows); the caller inserts the rows with its own statement."""
    need = frontier(size)
    known: dict[Node, bytes] = {}
    if need:
        rows = await conn.fetch(
            select_nodes_sql(len(need), "postgresql"), [n[0] for n in need], [n[1] for n in need]
        )
        known = {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}
    return _node_rows(append_leaves(size, leaves, known))


class TreeReader:
    """Roots and proofs of any size ≤ the tree's, from stored nodes (never all leaves)."""

    def __init__(self, fetch: NodeFetch, size: Callable[[], Awaitable[int]]) -> None:
        self._fetch = fetch
        self._size = size

    async def _nodes(self, wanted: set[Node]) -> dict[Node, bytes]:
        found = await self._fetch(sorted(wanted))
        missing = wanted - found.keys()
        if missing:
            # Not the caller's mistake: the store lost a node (damage or tampering).
            raise AuditUnavailable(
                f"audit tree node {min(missing)} is missing from the store: run "
                "`ketenpoort audit verify --checkpoint`"
            )
        return found

    async def size(self) -> int:
        """The number of leaves (entries ever appended)."""
        return await self._size()

    async def _within(self, size: int) -> None:
        current = await self._size()
        if size > current:
            raise ProofError(f"tree size {size} is larger than the log ({current} entries)")

    async def head(self) -> tuple[int, bytes]:
        """The current size and root."""
        size = await self._size()
        return size, root_from(size, await self._nodes(root_nodes(size)))

    async def root(self, size: int) -> bytes:
        """The root hash of the first ``size`` leaves."""
        await self._within(size)
        return root_from(size, await self._nodes(root_nodes(size)))

    async def inclusion(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves."""
        await self._within(size)
        wanted = nodes_for(inclusion_ranges(index, size))
        return inclusion_proof(index, size, await self._nodes(wanted))

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """The consistency proof from ``first`` to ``second`` leaves."""
        await self._within(second)
        wanted = nodes_for(consistency_ranges(first, second))
        return consistency_proof(first, second, await self._nodes(wanted))

    async def leaf(self, index: int) -> bytes:
        """The stored hash of leaf ``index``."""
        return (await self._nodes({(0, index)}))[(0, index)]
