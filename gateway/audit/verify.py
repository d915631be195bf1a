"""Verifying the hash chain: :class:`ChainWalker` names the first break, :func:`walk_chain`
drives it through a backend's read functions.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.audit.encoding import decision_set_id, decode_decisions, subjects_hash
from gateway.audit.entries import StoredEntry, entry_hash, read_entry
from gateway.audit.model import FieldDecision

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of a chain verification.

    ``checked`` counts the entries (requests) examined; ``first_broken_seq`` is the seq of the
    first entry that is altered, missing, out of place or refers to altered subject rows or
    decision sets (``None`` when ``ok``); ``detail`` says what is wrong (or summarises the chain
    when ``ok``).
    """

    ok: bool
    checked: int
    first_broken_seq: int | None
    detail: str


#: (position, subject, decision set id) of one subject row, as stored.
SubjectRow = tuple[int, str | None, str]


class ChainWalker:
    """Walks entries in seq order from the anchor to the head and names the first break.

    Feed pages with :meth:`feed`: the entries, their subject rows and the decision sets they
    refer to (:meth:`wanted_sets` says which sets the walker has not seen yet). It returns a
    failed :class:`VerifyResult` as soon as one is found, so a caller can stop reading; call
    :meth:`finish` at the end.

    A break is: a seq that is not the next one (an entry deleted or inserted); a ``prev_hash``
    that is not the previous entry's hash; subject rows that do not match the entry's count,
    positions or ``subjects_hash`` (a subject row added, removed or altered); a stored hash that
    differs from the recomputed one (the entry row altered); a decision set that is missing,
    unreadable or whose content no longer hashes to its id (altered); a chain that ends before
    the head (entries removed from the end).
    """

    __slots__ = (
        "_anchor_seq",
        "_decoded",
        "_expected",
        "_head_hash",
        "_head_seq",
        "_prev",
        "_purged",
        "_sets",
        "checked",
        "records",
    )

    def __init__(
        self,
        *,
        anchor_seq: int,
        anchor_hash: str,
        head_seq: int,
        head_hash: str,
        purged: Mapping[int, str] | None = None,
    ) -> None:
        # Entries a retention purge removed out of order (seq → their hash): the chain
        # steps over them. Whether a purge entry really committed to them is for the
        # Merkle check (``audit verify --checkpoint``) to say: the DBA can write this table.
        self._purged = purged or {}
        self._anchor_seq = anchor_seq
        self._head_seq = head_seq
        self._head_hash = head_hash
        self._expected = anchor_seq + 1
        self._prev = anchor_hash
        # set id → its decision count, or why it is broken
        self._sets: dict[str, int | str] = {}
        self._decoded: dict[str, tuple[FieldDecision, ...]] = {}
        self.checked = 0
        self.records = 0

    def wanted_sets(self, subjects: Mapping[int, Sequence[SubjectRow]]) -> list[str]:
        """Decision set ids these subject rows refer to that the walker has not checked yet."""
        wanted = {row[2] for rows in subjects.values() for row in rows}
        return sorted(s for s in wanted if isinstance(s, str) and s not in self._sets)

    def check_sets(self, ids: Iterable[str], found: Iterable[tuple[str, bytes]]) -> None:
        """Check the decision sets read for ``ids`` (absent ones are missing)."""
        stored = {str(set_id): encoding for set_id, encoding in found}
        for set_id in ids:
            encoding = stored.get(set_id)
            if encoding is None:
                self._sets[set_id] = f"decision set {set_id[:12]}… is missing"
                continue
            if not isinstance(encoding, bytes | bytearray | memoryview):
                self._sets[set_id] = f"decision set {set_id[:12]}… was altered (not bytes)"
                continue
            encoding = bytes(encoding)
            if decision_set_id(encoding) != set_id:
                self._sets[set_id] = (
                    f"decision set {set_id[:12]}… was altered (its content no longer matches "
                    "its id)"
                )
                continue
            try:
                decoded = decode_decisions(encoding)
                self._sets[set_id] = len(decoded)
                self._decoded[set_id] = decoded
            except (ValueError, UnicodeDecodeError) as exc:
                self._sets[set_id] = f"decision set {set_id[:12]}… is unreadable ({exc})"

    def feed(
        self, entries: Iterable[Any], subjects: Mapping[int, Sequence[SubjectRow]]
    ) -> VerifyResult | None:
        """Check the next entry rows (:data:`ENTRY_COLUMNS` order) with their subject rows
        (by entry seq, in position order) and the decision sets given to :meth:`check_sets`;
        the first break, else ``None``."""
        for row in entries:
            try:
                entry = read_entry(row)
            except (ValueError, TypeError, AttributeError, IndexError) as exc:
                # A value no writer produces (bad timestamp, a count that is no number): altered.
                seq = row[0] if isinstance(row[0], int) else self._expected
                why = (
                    f"entry {seq}: entry row altered: unreadable value "
                    f"({type(exc).__name__}: {exc})"
                )
                return self._broken(seq, why)
            seq = entry.seq
            self._skip_purged(seq)
            if seq != self._expected:
                if seq < self._expected:
                    why = f"entry {seq} lies at or before the purge anchor or repeats a seq"
                    return self._broken(seq, why)
                why = f"entry {self._expected} is missing (next stored entry is {seq})"
                return self._broken(self._expected, why)
            if entry.prev_hash != self._prev:
                why = f"entry {seq}: prev_hash does not match the previous entry's hash"
                return self._broken(seq, why)
            rows = subjects.get(seq, ())
            problem = self._subject_problem(entry, rows)
            if problem is not None:
                return self._broken(seq, f"entry {seq}: {problem}")
            if entry_hash(entry) != entry.hash:
                why = f"entry {seq}: entry row altered (its content does not match its hash)"
                return self._broken(seq, why)
            records = 0
            for _, _, set_id in rows:
                state = self._sets.get(set_id, f"decision set {set_id[:12]}… was not read")
                if isinstance(state, str):
                    return self._broken(seq, f"entry {seq}: {state}")
                records += state
            if records != entry.record_count:
                why = (
                    f"entry {seq}: its decision sets hold {records} records, "
                    f"the entry says {entry.record_count}"
                )
                return self._broken(seq, why)
            self.checked += 1
            self.records += records
            self._prev = entry.hash
            self._expected += 1
        return None

    def _skip_purged(self, upto: int) -> None:
        """Step over entries a retention purge removed, before ``upto``."""
        while self._expected < upto and self._expected in self._purged:
            self._prev = self._purged[self._expected]
            self._expected += 1

    def set_state(self, set_id: str) -> int | str:
        """A checked decision set's decision count, or why it is broken."""
        return self._sets.get(set_id, f"decision set {set_id[:12]}… was not read")

    def decisions(self, set_id: str) -> tuple[FieldDecision, ...]:
        """The decisions of a checked, intact decision set (empty if it is not one)."""
        return self._decoded.get(set_id, ())

    @staticmethod
    def subject_problem(entry: StoredEntry, rows: Sequence[SubjectRow]) -> str | None:
        """What is wrong with an entry's subject rows (count, positions, values, hash)."""
        return ChainWalker._subject_problem(entry, rows)

    @staticmethod
    def _subject_problem(entry: StoredEntry, rows: Sequence[SubjectRow]) -> str | None:
        if len(rows) != entry.subject_count:
            return (
                f"subject row added or removed ({len(rows)} stored, the entry records "
                f"{entry.subject_count})"
            )
        if [row[0] for row in rows] != list(range(len(rows))):
            return "subject rows altered (positions are not 0..n-1)"
        if any(
            not isinstance(subject, str | None)
            or (subject is not None and not _HEX64.fullmatch(subject))
            or not isinstance(set_id, str)
            for _, subject, set_id in rows
        ):
            return "subject row altered (a value no writer produces)"
        if subjects_hash((subject, set_id) for _, subject, set_id in rows) != entry.subjects_hash:
            return "subject row altered (the subject rows do not match the entry's subjects_hash)"
        return None

    def _broken(self, seq: int | None, why: str) -> VerifyResult:
        return VerifyResult(False, self.checked, seq, why)

    def finish(self, stray_subject_rows: int = 0) -> VerifyResult:
        """The result once every entry was fed: the chain must end exactly at the head.

        ``stray_subject_rows`` counts subject rows whose entry lies outside the chain (at or
        before the anchor, or after the head): rows added behind the chain's back.
        """
        self._skip_purged(self._head_seq + 1)
        last_seq = self._expected - 1
        if last_seq != self._head_seq or self._prev != self._head_hash:
            why = (
                f"chain ends at entry {last_seq} but the chain head records seq "
                f"{self._head_seq}: entries were removed from the end, or the head was altered"
            )
            return self._broken(last_seq + 1, why)
        if stray_subject_rows:
            why = (
                f"{stray_subject_rows} subject row(s) belong to no entry of the chain "
                f"(entry seq at or before {self._anchor_seq} or after {self._head_seq}): added"
            )
            return self._broken(None, why)
        return VerifyResult(
            True,
            self.checked,
            None,
            f"{self.checked} entries ({self.records} records) verified "
            f"(seq {self._anchor_seq + 1}..{self._head_seq}; purge anchor at seq "
            f"{self._anchor_seq})",
        )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The chain head row: the last entry and the purge anchor."""

    seq: int
    hash: str
    anchor_seq: int
    anchor_hash: str


async def walk_chain(
    head: ChainHead,
    *,
    entries_after: Callable[[int, int], Awaitable[Sequence[Any]]],
    subjects_between: Callable[[int, int], Awaitable[Sequence[Any]]],
    sets_named: Callable[[list[str]], Awaitable[Iterable[tuple[str, bytes]]]],
    stray_subject_rows: Callable[[int, int], Awaitable[int]],
    page: int = 2_000,
    purged: Mapping[int, str] | None = None,
) -> VerifyResult:
    """Verify the whole chain through a backend's read functions (one snapshot, ideally).

    ``entries_after(seq, n)``: up to n entry rows with a larger seq, by seq.
    ``subjects_between(lo, hi)``: subject rows (entry_seq, position, subject, decision_set) with
    lo < entry_seq <= hi, by (entry_seq, position). ``sets_named(ids)``: (id, encoding) of
    those decision sets that exist. ``stray_subject_rows(anchor, head)``: the number of subject
    rows with entry_seq <= anchor or > head.
    """
    walker = ChainWalker(
        anchor_seq=head.anchor_seq,
        anchor_hash=head.anchor_hash,
        head_seq=head.seq,
        head_hash=head.hash,
        purged=purged,
    )
    # Entries at or before the anchor are read too (and named): they should not exist.
    after = -(2**62)
    while True:
        rows = list(await entries_after(after, page))
        if not rows:
            break
        hi = int(rows[-1][0])
        grouped: dict[int, list[SubjectRow]] = {}
        for s in await subjects_between(after, hi):
            # Raw values: a tampered type is found by the checks, not by a crash here.
            grouped.setdefault(s[0], []).append((s[1], s[2], s[3]))
        wanted = walker.wanted_sets(grouped)
        if wanted:
            walker.check_sets(wanted, await sets_named(wanted))
        broken = walker.feed(rows, grouped)
        if broken is not None:
            return broken
        after = hi
    return walker.finish(await stray_subject_rows(head.anchor_seq, head.seq))
