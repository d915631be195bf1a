"""The audit log's Merkle tree in the stores: one table layout, written for both backends.

Every entry of the trail (one per request) is leaf ``seq - 1`` of an RFC 6962 tree; its leaf
data is the entry's canonical bytes (:func:`gateway.audit.entries.entry_bytes`). The table
``audit_tree_node`` holds every perfect aligned subtree, ``(level, idx, hash)``: level 0 are
the leaf hashes, level ``l`` index ``i`` the hash of leaves ``[i·2^l, (i+1)·2^l)``. Nodes are
only ever inserted (a new entry adds its leaf and the subtrees it completes, about two rows),
in the same transaction as the entries; a purge removes entry content but never a node, so
roots and proofs of every size stay computable from O(log² n) rows.

The group-commit writer keeps the tree's right frontier in memory between groups
(:class:`TreeTip`), so a group only hashes and inserts: no read. That copy is valid for one
chain head, the (seq, hash) it was kept with, and is taken out before each write transaction
and put back only after the commit: when another process wrote (several gateways share one
PostgreSQL store or one SQLite file), a transaction failed, or the database was restored, the
head differs and the frontier is read again (≤ 64 rows), by primary key. Every statement's
text is fixed (node lists travel as one JSON or array parameter), so prepared statements are
reused and SQLite never falls back to scanning the table.

:class:`TreeReader` gives roots and proofs of any size from a backend's node reader.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

from gateway.audit.entries import entry_bytes, read_entry
from gateway.audit.merkle import (
    Frontier,
    Node,
    NodeRow,
    ProofError,
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


#: The stored nodes among a list (absent ones are left out), by primary key; the list is one
#: parameter (:func:`node_params`), so the text never changes with its length.
SELECT_NODES = {
    "sqlite": f"SELECT level, idx, hash FROM {TREE_TABLE} "  # noqa: S608 (constant names)
    "WHERE (level, idx) IN "
    "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
    "postgresql": f"SELECT t.level, t.idx, t.hash FROM {TREE_TABLE} t "  # noqa: S608
    "JOIN unnest($1::integer[], $2::bigint[]) AS k(level, idx) "
    "ON t.level = k.level AND t.idx = k.idx",
}


def node_params(nodes: Sequence[Node], dialect: Dialect) -> tuple[Any, ...]:
    """The parameters of :data:`SELECT_NODES`: a JSON list of ``[level, idx]`` pairs (SQLite),
    or an array of levels and one of indices (PostgreSQL)."""
    if dialect == "sqlite":
        return (json.dumps([list(node) for node in nodes]),)
    return ([n[0] for n in nodes], [n[1] for n in nodes])


def node_map(rows: Iterable[Any]) -> dict[Node, bytes]:
    """``(level, idx, hash)`` rows as stored nodes."""
    return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}


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
) -> list[NodeRow]:
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
    return Frontier().extend(leaf_hash(entry_bytes(e)) for e in entries)


class TreeTip:
    """The writer's copy of the tree's right frontier between its group commits.

    It belongs to one chain head: the entry count and hash it was kept with. A write
    transaction takes it (:meth:`take`, under the head's lock) and keeps the extended
    frontier only after its commit (:meth:`keep`): a failed or cancelled transaction leaves
    nothing behind, and a head another process moved (or a restored database) does not
    match, so the frontier is read again. The head hash, not only the count, decides: a
    trail restored to an older size and grown back to this one by another process has the
    same count but another history.
    """

    __slots__ = ("_frontier", "_hash")

    def __init__(self) -> None:
        self._frontier: Frontier | None = None
        self._hash = ""

    def take(self, head_seq: int, head_hash: str) -> Frontier | None:
        """The frontier of the tree at chain head (``head_seq``, ``head_hash``), if this copy is
        of exactly that head; ``None`` otherwise. Either way the copy is gone until kept."""
        found, self._frontier = self._frontier, None
        if found is None or found.size != head_seq or self._hash != head_hash:
            return None
        return found

    def keep(self, head_hash: str, frontier: Frontier) -> None:
        """After a commit: ``frontier`` is the tree at the chain head ``head_hash``."""
        self._frontier, self._hash = frontier, head_hash


def sqlite_append(
    db: Any, tip: TreeTip, head_seq: int, head_hash: str, leaves: Iterable[bytes]
) -> Frontier:
    """Append leaf hashes to the tree at the chain head, inside the caller's transaction.

    ``db`` is a ``sqlite3.Connection``. The frontier comes from ``tip`` or, when that is not
    of this head, from the store (:class:`ProofError` if a node is missing: the write fails).
    Returns the extended frontier, for ``tip.keep`` once the transaction committed.
    """
    current = tip.take(head_seq, head_hash)
    if current is None:
        need = frontier(head_seq)
        rows = db.execute(SELECT_NODES["sqlite"], node_params(need, "sqlite")).fetchall()
        current = Frontier.of(head_seq, node_map(rows))
    db.executemany(INSERT_NODE_SQLITE, current.extend(leaves))
    return current


async def postgres_append(
    conn: Any, tip: TreeTip, head_seq: int, head_hash: str, leaves: Iterable[bytes]
) -> tuple[Frontier, list[NodeRow]]:
    """The extended frontier (for ``tip.keep`` after the commit) and the node rows that
    appending leaf hashes to the tree at the chain head adds; the caller inserts them with
    its own statement. ``conn`` is an asyncpg connection in the writing transaction, holding
    the head's lock: a frontier read here (when ``tip`` is not of this head) is a statement
    of its own, whose fresh snapshot sees every committed node."""
    current = tip.take(head_seq, head_hash)
    if current is None:
        need = frontier(head_seq)
        rows = await conn.fetch(SELECT_NODES["postgresql"], *node_params(need, "postgresql"))
        current = Frontier.of(head_seq, node_map(rows))
    return current, current.extend(leaves)


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
