"""Checking a store against signed checkpoints: the database administrator's view is not trusted.

``ketenpoort audit verify --checkpoint FILE`` reads every stored leaf hash and every entry and
checks, in one pass:

* each entry's content (its canonical bytes, :func:`~gateway.audit.entries.entry_bytes`) hashes
  to the leaf stored for it, its subject rows to its ``subjects_hash`` and its decision sets to
  their ids: an altered field names its leaf;
* the leaves run 0, 1, 2, ... without a gap, and the root of the first ``size`` leaves equals
  the signed root of every checkpoint of that size: a rewritten, reordered, truncated or
  restored history names the (smallest) checkpoint size it is inconsistent with;
* an entry missing from the store is one a recorded purge removed: a purge entry (coordinate
  ``Audit.purge``) whose path says ``seq<=N`` covers entries up to ``N``; any other gap is
  named as a deleted leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit.entries import StoredEntry, entry_bytes, read_entry
from gateway.audit.merkle import EMPTY_ROOT, Frontier, leaf_hash
from gateway.audit.note import Checkpoint
from gateway.audit.verify import ChainWalker, SubjectRow

PURGE_COORDINATE = "Audit.purge"
PURGE_PATH_PREFIX = "seq<="


PURGE_SET_PREFIX = "removed="


def purge_path(anchor_seq: int) -> str:
    """The path of the decision a purge records: which entries it removed (``seq<=N``)."""
    return f"{PURGE_PATH_PREFIX}{anchor_seq}"


def purged_digest(seqs: list[int]) -> str:
    """SHA-256 (hex) of the sorted seqs, comma-separated: what a retention purge commits to."""
    return hashlib.sha256(",".join(str(s) for s in sorted(seqs)).encode()).hexdigest()


def purge_set_path(seqs: list[int]) -> str:
    """The path a retention purge by purpose records: ``removed=<n>;sha256=<digest>``; the
    seqs themselves are rows of ``audit_purged`` naming this purge's entry."""
    return f"{PURGE_SET_PREFIX}{len(seqs)};sha256={purged_digest(seqs)}"


@dataclass(frozen=True, slots=True)
class LogCheck:
    """Outcome of :func:`check_log`: ``ok``, the first bad leaf (0-based) or the first
    inconsistent checkpoint size, and what is wrong."""

    ok: bool
    detail: str
    bad_leaf: int | None = None
    bad_size: int | None = None
    leaves: int = 0
    entries: int = 0


@dataclass(slots=True)
class LogReads:
    """A backend's reads, all from one snapshot (see :func:`gateway.audit.verify.walk_chain`)."""

    head_seq: int
    anchor_seq: int
    entries_after: Callable[[int, int], Awaitable[Sequence[Any]]]
    subjects_between: Callable[[int, int], Awaitable[Sequence[Any]]]
    sets_named: Callable[[list[str]], Awaitable[Iterable[tuple[str, bytes]]]]
    leaves_after: Callable[[int, int], Awaitable[Sequence[Any]]]
    #: Every ``audit_purged`` row: (seq, chain hash, purge entry seq).
    purged: Sequence[Any] = ()
    page: int = 2_000


def _leaf_failure(index: int, why: str, leaves: int, entries: int) -> LogCheck:
    return LogCheck(
        False, f"leaf {index} (entry seq {index + 1}): {why}", index, None, leaves, entries
    )


async def check_log(reads: LogReads, checkpoints: Sequence[Checkpoint]) -> LogCheck:
    """Check the store's leaves and entries against ``checkpoints`` (signatures checked
    already). Returns the first problem: a bad leaf, or the smallest inconsistent size."""
    # Every root signed for a size: two different ones for one size are a fork, and the store
    # can match at most one of them (named at that size, or earlier if it differs earlier).
    wanted_roots: dict[int, set[bytes]] = {}
    for cp in checkpoints:
        wanted_roots.setdefault(cp.size, set()).add(cp.root)
    largest = max(wanted_roots, default=0)
    # The empty tree has one root; checked here, since no leaf ever brings the tree to size 0.
    empty = wanted_roots.pop(0, {EMPTY_ROOT})
    if empty != {EMPTY_ROOT}:
        return LogCheck(
            False, "inconsistent at size 0: a checkpoint signed a non-empty root", None, 0
        )

    tree = Frontier()  # leaves streamed in order; O(log n) memory
    pending: dict[int, bytes] = {}  # stored leaves not yet matched with an entry
    entry_count = 0
    missing: list[int] = []  # leaf indices whose entry is absent
    purges: list[tuple[int, int]] = []  # (purge entry seq, anchor it claims)
    set_claims: dict[int, str] = {}  # retention purge entry seq → the path it recorded
    walker = ChainWalker(anchor_seq=0, anchor_hash="", head_seq=0, head_hash="")
    sizes = sorted(wanted_roots)
    next_size = 0

    async def take_leaves(upto: int) -> LogCheck | None:
        """Stream stored leaves until ``upto`` are in (or the store has no more)."""
        nonlocal next_size
        while tree.size < upto:
            rows = list(await reads.leaves_after(tree.size - 1, reads.page))
            if not rows:
                return None
            for idx, value in rows:
                if idx != tree.size:
                    why = f"its leaf hash is missing from the tree (next stored leaf is {idx})"
                    return _leaf_failure(tree.size, why, tree.size, entry_count)
                if not isinstance(value, bytes | bytearray | memoryview) or len(value) != 32:
                    return _leaf_failure(
                        idx, "its stored leaf hash is not 32 bytes", tree.size, entry_count
                    )
                value = bytes(value)
                tree.extend((value,))
                pending[idx] = value
                while next_size < len(sizes) and sizes[next_size] == tree.size:
                    size = sizes[next_size]
                    if wanted_roots[size] != {tree.root()}:
                        fork = (
                            f"; {len(wanted_roots[size])} different roots were signed for it"
                            if len(wanted_roots[size]) > 1
                            else ""
                        )
                        return LogCheck(
                            False,
                            f"inconsistent at size {size}: the first {size} leaves of the store "
                            "do not hash to the root signed for that size (history rewritten, "
                            f"reordered or restored from an older copy{fork})",
                            None,
                            size,
                            tree.size,
                            entry_count,
                        )
                    next_size += 1
        return None

    after = 0
    while True:
        rows = list(await reads.entries_after(after, reads.page))
        if not rows:
            break
        hi = int(rows[-1][0])
        grouped: dict[int, list[SubjectRow]] = {}
        for s in await reads.subjects_between(after, hi):
            grouped.setdefault(s[0], []).append((s[1], s[2], s[3]))
        wanted = walker.wanted_sets(grouped)
        if wanted:
            walker.check_sets(wanted, await reads.sets_named(wanted))
        for row in rows:
            try:
                entry = read_entry(row)
            except (ValueError, TypeError, AttributeError, IndexError) as exc:
                seq = row[0] if isinstance(row[0], int) else after + 1
                return _leaf_failure(
                    seq - 1, f"entry row unreadable ({exc})", tree.size, entry_count
                )
            index = entry.seq - 1
            problem = await take_leaves(index + 1)
            if problem is not None:
                return problem
            if index >= tree.size:
                why = "the entry has no leaf in the tree (added behind the log's back)"
                return _leaf_failure(index, why, tree.size, entry_count)
            for gap in sorted(i for i in pending if i < index):
                missing.append(gap)
                del pending[gap]
            stored = pending.pop(index, None)
            if stored is None:
                why = "the entry repeats a seq or lies outside the tree"
                return _leaf_failure(index, why, tree.size, entry_count)
            if leaf_hash(entry_bytes(entry)) != stored:
                why = "its content does not match its leaf (entry row altered)"
                return _leaf_failure(index, why, tree.size, entry_count)
            trouble = _content_problem(walker, entry, grouped.get(entry.seq, ()))
            if trouble is not None:
                return _leaf_failure(index, trouble, tree.size, entry_count)
            anchor = _purge_anchor(walker, grouped.get(entry.seq, ()))
            if anchor is not None:
                purges.append((entry.seq, anchor))
            claim = _purge_set_claim(walker, grouped.get(entry.seq, ()))
            if claim is not None:
                set_claims[entry.seq] = claim
            entry_count += 1
        after = hi
    problem = await take_leaves(max(largest, reads.head_seq) + 1)
    if problem is not None:
        return problem
    missing.extend(sorted(pending))
    if tree.size < largest:
        return LogCheck(
            False,
            f"inconsistent size {largest}: a checkpoint signed {largest} entries but the store "
            f"holds {tree.size} leaves (entries removed from the end)",
            None,
            largest,
            tree.size,
            entry_count,
        )
    if tree.size != reads.head_seq:
        why = (
            f"inconsistent size {reads.head_seq}: the store's head records {reads.head_seq} "
            f"entries but the tree has {tree.size} leaves (entries removed, the head moved)"
        )
        return LogCheck(False, why, None, min(tree.size, reads.head_seq), tree.size, entry_count)
    by_purge: dict[int, list[int]] = {}
    for row in reads.purged:
        by_purge.setdefault(int(row[2]), []).append(int(row[0]))
    # A purged row counts only when its purge entry committed to exactly that list of seqs.
    removed = {
        seq
        for purge_seq, seqs in by_purge.items()
        if set_claims.get(purge_seq) == purge_set_path(seqs)
        for seq in seqs
        if seq < purge_seq
    }
    for index in missing:
        if index + 1 in removed:
            continue
        if not any(purge_seq > index + 1 and anchor >= index + 1 for purge_seq, anchor in purges):
            why = "its entry is missing and no recorded purge removed it"
            return _leaf_failure(index, why, tree.size, entry_count)
    return LogCheck(
        True,
        f"{tree.size} leaves ({entry_count} entries with content, {len(missing)} purged) match "
        f"{len(wanted_roots)} signed checkpoint size(s) up to {largest}",
        None,
        None,
        tree.size,
        entry_count,
    )


def _content_problem(
    walker: ChainWalker, entry: StoredEntry, rows: Sequence[SubjectRow]
) -> str | None:
    """Subject rows and decision sets of a present entry must be what its leaf commits to."""
    problem = walker.subject_problem(entry, rows)
    if problem is not None:
        return problem
    records = 0
    for _, _, set_id in rows:
        state = walker.set_state(set_id)
        if isinstance(state, str):
            return state
        records += state
    if records != entry.record_count:
        return f"its decision sets hold {records} records, the entry says {entry.record_count}"
    return None


def _purge_anchor(walker: ChainWalker, rows: Sequence[SubjectRow]) -> int | None:
    """The anchor a purge entry records (``seq<=N``), else ``None``."""
    for _, subject, set_id in rows:
        if subject is not None:
            continue
        for decision in walker.decisions(set_id):
            if decision.coordinate == PURGE_COORDINATE and decision.path.startswith(
                PURGE_PATH_PREFIX
            ):
                number = decision.path[len(PURGE_PATH_PREFIX) :]
                if number.isdigit():
                    return int(number)
    return None


def _purge_set_claim(walker: ChainWalker, rows: Sequence[SubjectRow]) -> str | None:
    """The ``removed=<n>;sha256=<digest>`` a retention purge entry records, else ``None``."""
    for _, subject, set_id in rows:
        if subject is not None:
            continue
        for decision in walker.decisions(set_id):
            if decision.coordinate == PURGE_COORDINATE and decision.path.startswith(
                PURGE_SET_PREFIX
            ):
                return decision.path
    return None
