"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.

Leaf hash ``SHA-256(0x00 ‖ data)``, interior node ``SHA-256(0x01 ‖ left ‖ right)``. A tree of
size ``n`` splits at ``k``, the largest power of two below ``n``.

Stored trees keep only *perfect aligned subtrees*: the node ``(level, index)`` is the hash of
leaves ``[index·2^level, (index+1)·2^level)``. Every range the RFC's algorithms need is a
concatenation of O(log n) such nodes, so a root or a proof for any size needs O(log² n) node
reads, never the leaves. The functions here are pure: they say which nodes they need
(:func:`root_nodes`; :func:`nodes_for` of :func:`inclusion_ranges` or
:func:`consistency_ranges`), a store reads those, and :func:`inclusion_proof` /
:func:`consistency_proof` / :func:`root_from` compose the result.

Appending needs only the tree's right frontier: :class:`Frontier` holds it and turns leaf
hashes into the node rows a store inserts (about one node hash per leaf, no read). The writer
keeps one between group commits (:class:`gateway.audit.tree.TreeTip`); verification streams
every leaf through one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

#: A stored node's address: (level, index).
Node = tuple[int, int]
#: Reads one perfect aligned subtree's hash.
NodeReader = Callable[[int, int], bytes]

HASH_SIZE = 32
_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not verify, or its parameters are impossible."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 ‖ data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 ‖ left ‖ right)``."""
    return _sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = _sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n`` ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# ---- which stored nodes a range needs ----------------------------------------------------


def range_nodes(lo: int, hi: int) -> list[Node]:
    """The perfect aligned subtrees whose RFC 6962 composition is ``MTH(D[lo:hi])``.

    Valid for the ranges the RFC algorithms produce (``lo`` a multiple of the split sizes).
    """
    n = hi - lo
    if n <= 0:
        raise ProofError(f"empty range [{lo}, {hi})")
    if n & (n - 1) == 0 and lo % n == 0:
        return [(n.bit_length() - 1, lo // n)]
    k = _split(n)
    return range_nodes(lo, lo + k) + range_nodes(lo + k, hi)


def range_hash(lo: int, hi: int, read: NodeReader) -> bytes:
    """``MTH(D[lo:hi])`` composed from stored perfect subtrees."""
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        return read(n.bit_length() - 1, lo // n)
    k = _split(n)
    return node_hash(range_hash(lo, lo + k, read), range_hash(lo + k, hi, read))


def _path_ranges(m: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """RFC 6962 PATH(m, D[lo:hi]) as the ranges whose hashes it lists, leaf side first."""
    n = hi - lo
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path_ranges(m, lo, lo + k), (lo + k, hi)]
    return [*_path_ranges(m - k, lo + k, hi), (lo, lo + k)]


def _subproof_ranges(m: int, lo: int, hi: int, complete: bool) -> list[tuple[int, int]]:
    """RFC 6962 SUBPROOF(m, D[lo:hi], b) as ranges."""
    n = hi - lo
    if m == n:
        return [] if complete else [(lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof_ranges(m, lo, lo + k, complete), (lo + k, hi)]
    return [*_subproof_ranges(m - k, lo + k, hi, False), (lo, lo + k)]


def _check_inclusion_args(index: int, size: int) -> None:
    if size < 1 or not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")


def _check_consistency_args(first: int, second: int) -> None:
    if not 1 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges of the audit path of leaf ``index`` in a tree of ``size`` leaves."""
    _check_inclusion_args(index, size)
    return _path_ranges(index, 0, size)


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges of the consistency proof from ``first`` to ``second`` leaves."""
    _check_consistency_args(first, second)
    return _subproof_ranges(first, 0, second, True)


def nodes_for(ranges: Iterable[tuple[int, int]]) -> set[Node]:
    """Every stored node the ranges' hashes are composed of."""
    return {node for lo, hi in ranges for node in range_nodes(lo, hi)}


def root_nodes(size: int) -> set[Node]:
    """The stored nodes the root of a tree of ``size`` leaves is composed of."""
    return set(range_nodes(0, size)) if size else set()


def _reader(nodes: Mapping[Node, bytes]) -> NodeReader:
    def read(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise ProofError(f"tree node ({level}, {index}) is missing") from None

    return read


def root_from(size: int, nodes: Mapping[Node, bytes]) -> bytes:
    """The root hash of the first ``size`` leaves, from the nodes :func:`root_nodes` names."""
    return range_hash(0, size, _reader(nodes)) if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` (0-based) in a tree of ``size``."""
    read = _reader(nodes)
    return [range_hash(lo, hi, read) for lo, hi in inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """The consistency proof between trees of ``first`` and ``second`` leaves."""
    read = _reader(nodes)
    return [range_hash(lo, hi, read) for lo, hi in consistency_ranges(first, second)]


# ---- building nodes -------------------------------------------------------------------


def frontier(size: int) -> list[Node]:
    """The perfect subtrees along the right edge of a tree of ``size`` leaves (high first).

    Appending a leaf needs only these (they are its future left siblings).
    """
    return [
        (level, (size >> level) - 1)
        for level in range(size.bit_length() - 1, -1, -1)
        if size >> level & 1
    ]


def append_leaves(
    size: int, leaves: Sequence[bytes], known: Mapping[Node, bytes]
) -> dict[Node, bytes]:
    """The nodes that appending ``leaves`` (leaf hashes) to a tree of ``size`` adds.

    ``known`` must hold :func:`frontier` ``(size)``. Returns every new node, leaves included.
    """
    new: dict[Node, bytes] = {}

    def get(node: Node) -> bytes:
        found = new.get(node)
        if found is None:
            found = known.get(node)
        if found is None:
            raise ProofError(f"tree node {node} is missing (frontier of size {size})")
        return found

    for offset, leaf in enumerate(leaves):
        index = size + offset
        level, h = 0, leaf
        new[(0, index)] = h
        while index & 1:
            h = node_hash(get((level, index - 1)), h)
            level += 1
            index >>= 1
            new[(level, index)] = h
    return new


#: A stored node row: (level, index, hash).
NodeRow = tuple[int, int, bytes]


class Frontier:
    """The right edge of a tree of ``size`` leaves: what appending needs, and its root.

    ``hashes`` are the perfect subtrees of :func:`frontier` ``(size)``, largest (leftmost)
    first: one per set bit of ``size``. Appending a leaf is a binary increment: the leaf
    merges with the smallest subtrees while the index is odd, so a leaf costs one node hash
    on average and no read. :meth:`extend` changes the frontier in place; a writer that may
    fail keeps a copy, or throws the frontier away and reads it again.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ProofError(f"a frontier of size {size} has {size.bit_count()} subtrees")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def of(cls, size: int, nodes: Mapping[Node, bytes]) -> Frontier:
        """The frontier of ``size`` from stored nodes (:class:`ProofError` if one is missing)."""
        read = _reader(nodes)
        return cls(size, [read(level, index) for level, index in frontier(size)])

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def extend(self, leaves: Iterable[bytes]) -> list[NodeRow]:
        """Append leaf hashes; the rows they add: each leaf, then the subtrees it completes."""
        # Runs in every group commit: plain method calls (which the interpreter specialises)
        # and node_hash inlined.
        rows: list[NodeRow] = []
        stack = self.hashes
        size = self.size
        for h in leaves:
            rows.append((0, size, h))
            index = size
            level = 0
            while index & 1:
                h = _sha256(b"\x01" + stack.pop() + h).digest()
                level += 1
                index >>= 1
                rows.append((level, index, h))
            stack.append(h)
            size += 1
        self.size = size
        return rows

    def nodes(self) -> dict[Node, bytes]:
        """The frontier as stored nodes (what :func:`root_nodes` of ``size`` names)."""
        return dict(zip(frontier(self.size), self.hashes, strict=True))

    def root(self) -> bytes:
        """The root of the tree of ``size`` leaves: the subtrees folded from the right."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h


class MemoryTree:
    """An in-memory tree holding every perfect node (tests, verifiers, rebuilds)."""

    def __init__(self) -> None:
        self.size = 0
        self.nodes: dict[Node, bytes] = {}

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        self.nodes.update(append_leaves(self.size, [leaf], self.nodes))
        self.size += 1

    def root(self, size: int | None = None) -> bytes:
        """Root of the first ``size`` leaves (default: all)."""
        return root_from(self.size if size is None else size, self.nodes)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """Audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
        self._within(size)
        return inclusion_proof(index, size, self.nodes)

    def consistency(self, first: int, second: int) -> list[bytes]:
        """Consistency proof between the first ``first`` and ``second`` leaves."""
        self._within(second)
        return consistency_proof(first, second, self.nodes)

    def _within(self, size: int) -> None:
        if size > self.size:
            raise ProofError(f"tree size {size} is beyond the tree's {self.size} leaves")


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH by its recursive definition (tests compare against this)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


# ---- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) -------------------------------


def _check_hashes(proof: Sequence[bytes]) -> None:
    for h in proof:
        if len(h) != HASH_SIZE:
            raise ProofError("a proof hash is not 32 bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to; :class:`ProofError` if it is malformed."""
    _check_inclusion_args(index, size)
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``leaf`` is leaf ``index`` of the tree with ``root``."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof of leaf {index} in size {size} does not match the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless the tree of ``second_root`` extends ``first_root``."""
    _check_consistency_args(first, second)
    _check_hashes(proof)
    if first == second:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for size {first}")
        return
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != first_root or sr != second_root:
        raise ProofError(f"size {second} is not an extension of size {first}")
