"""Shared read-side SQL of both stores: the search statement, its WHERE clause, the
expansion of entry rows into records, and the rows an evidence read returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway.audit.chain import (
    ENTRY_COLUMNS,
    DecisionSets,
    StoredEntry,
    decode_decisions,
    read_entry,
)
from gateway.audit.model import (
    AuditQuery,
    AuditRecord,
    FieldDecision,
)
from gateway.audit.store import AuditUnavailable

#: How far a database clock may be behind the gateways' for ``since`` searches (see build_where).
SINCE_CLOCK_MARGIN = dt.timedelta(minutes=5)


def _aware(value: dt.datetime) -> dt.datetime:
    # A search bound without an offset is read as UTC (the trail's time zone); records
    # themselves must be aware (prepare() refuses naive ones).
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


#: What searches select: the entry's columns (:data:`ENTRY_COLUMNS` order), then the subject
#: row's subject and decision set id. The constant sub-select (evaluated once) makes every
#: search read all three tables, so a missing one fails it even when this process already
#: knows every decision set it needs.
SEARCH_SELECT = (
    "SELECT "  # noqa: S608 (constant column names)
    + ", ".join(f"e.{c}" for c in ENTRY_COLUMNS)
    + ", s.subject, s.decision_set, (SELECT 1 FROM audit_decision_set WHERE id = '') "
    "FROM audit_entry e JOIN audit_entry_subject s ON s.entry_seq = e.seq"
)
_SUBJECT_AT = len(ENTRY_COLUMNS)
_SET_AT = _SUBJECT_AT + 1


def build_where(q: AuditQuery, placeholder: Any) -> tuple[str, list[Any]]:
    """The WHERE clause (with leading ``WHERE`` or empty) and parameters of a search.

    Entry columns are ``e.*``, the subject row ``s.*`` (see :data:`SEARCH_SELECT`). ``since``
    (inclusive) and ``until`` (exclusive) compare with ``start_time``, when the access
    happened. ``placeholder(n)`` renders the n-th (1-based) parameter marker. Times go in as
    ``datetime``; a backend storing text converts them with :func:`~gateway.audit.chain.ts`.
    """
    clauses: list[str] = []
    params: list[Any] = []

    def add(sql: str, value: Any) -> None:
        params.append(value)
        clauses.append(sql.format(placeholder(len(params))))

    if q.subject is not None:
        add("s.subject = {}", q.subject)
    if q.officer is not None:
        add("e.officer = {}", q.officer)
    if q.organisation is not None:
        # An OIN is 20 digits; a policy organisation id is not.
        column = "e.organisation_oin" if q.organisation.isdigit() else "e.organisation"
        add(column + " = {}", q.organisation)
    if q.purpose is not None:
        add("e.purpose = {}", q.purpose)
    if q.trace_id is not None:
        add("e.trace_id = {}", q.trace_id)
    if q.since is not None:
        add("e.start_time >= {}", _aware(q.since))
        # The same filter, made cheap: an entry is recorded after its request started, and
        # recorded_at grows with seq, so no entry before the first one recorded since then
        # (less a margin for a database clock behind the gateway's) can match. Without this
        # bound a recent-window search walks an organisation's whole history in seq order.
        add(
            "e.seq >= (SELECT seq FROM audit_entry WHERE recorded_at >= {} "
            "ORDER BY recorded_at, seq LIMIT 1)",
            _aware(q.since) - SINCE_CLOCK_MARGIN,
        )
    if q.until is not None:
        add("e.start_time < {}", _aware(q.until))
    if q.since is not None:
        # Results come in seq order, not time order: without a starting point a window in the
        # middle of a large trail walks every older entry. The first seq inside the window
        # (exact; from the start_time index) is that starting point.
        window = "start_time >= {}"
        params.append(_aware(q.since))
        window = window.format(placeholder(len(params)))
        if q.until is not None:
            params.append(_aware(q.until))
            window += f" AND start_time < {placeholder(len(params))}"
        # Only placeholders and constant text are joined here. ``seq + 0``: PostgreSQL would
        # otherwise answer min(seq) by walking the primary key from the oldest entry.
        clauses.append(f"e.seq >= (SELECT min(seq + 0) FROM audit_entry WHERE {window})")  # noqa: S608
    if q.after_seq is not None:
        add("e.seq > {}", q.after_seq)
        # The same bound on the subject rows lets the join start there too.
        add("s.entry_seq > {}", q.after_seq)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class Expander:
    """Turns search rows (:data:`SEARCH_SELECT`) into logical records, up to a limit.

    Feed chunks in order; before each, read the decision sets :meth:`missing` names and hand
    them to :meth:`add_sets`. Each row yields one record per decision of its set, so a search
    never needs more than ``limit`` rows.
    """

    __slots__ = ("_entry", "_limit", "_local", "_sets", "records")

    def __init__(self, sets: DecisionSets, limit: int) -> None:
        self._sets = sets
        self._limit = limit
        self._local: dict[str, tuple[FieldDecision, ...]] = {}
        self._entry: StoredEntry | None = None
        self.records: list[AuditRecord] = []

    def missing(self, chunk: Iterable[Any]) -> list[str]:
        """Decision set ids of ``chunk`` whose decisions are not known yet."""
        wanted: set[str] = set()
        for row in chunk:
            set_id = row[_SET_AT]
            if set_id in self._local:
                continue
            known = self._sets.decoded(set_id)
            if known is None:
                wanted.add(set_id)
            else:
                self._local[set_id] = known
        return sorted(wanted)

    def add_sets(self, wanted: Iterable[str], found: Iterable[tuple[str, bytes]]) -> None:
        """Decode the sets read for ``wanted``; a missing or unreadable one is an error."""
        stored = {
            str(set_id): bytes(encoding)
            for set_id, encoding in found
            if isinstance(encoding, bytes | bytearray | memoryview)
        }
        for set_id in wanted:
            encoding = stored.get(set_id)
            if encoding is None:
                raise AuditUnavailable(
                    f"audit decision set {set_id[:12]}… is missing (damage or tampering): "
                    "run `ketenpoort audit verify`"
                )
            try:
                decisions = decode_decisions(encoding)
            except (ValueError, UnicodeDecodeError) as exc:
                raise AuditUnavailable(
                    f"audit decision set {set_id[:12]}… is unreadable (damage or tampering): "
                    "run `ketenpoort audit verify`"
                ) from exc
            self._local[set_id] = decisions
            self._sets.remember(set_id, decisions)

    def feed(self, chunk: Iterable[Any]) -> bool:
        """Expand rows; true once ``limit`` records are there (stop reading)."""
        records = self.records
        for row in chunk:
            entry = self._entry
            if entry is None or entry.seq != row[0]:
                entry = self._entry = read_entry(row)
            records.extend(entry.records(row[_SUBJECT_AT], self._local[row[_SET_AT]]))
            if len(records) >= self._limit:
                del records[self._limit :]
                return True
        return False


@dataclass(frozen=True, slots=True)
class EntryRows:
    """Entries read by seq with their subject rows and decision set encodings."""

    entries: list[Any]  # ENTRY_COLUMNS order
    subjects: list[Any]  # SUBJECT_COLUMNS order, by (entry_seq, position)
    sets: dict[str, bytes]

    def by_seq(self) -> dict[int, tuple[StoredEntry, list[tuple[str | None, str]]]]:
        """Each entry with its (subject, decision set id) rows in position order."""
        rows: dict[int, list[tuple[str | None, str]]] = {}
        for s in self.subjects:
            rows.setdefault(int(s[0]), []).append((s[2], s[3]))
        return {
            entry.seq: (entry, rows.get(entry.seq, []))
            for entry in (read_entry(row) for row in self.entries)
        }


class PageReads(NamedTuple):
    """The chain's paged reads on one connection and snapshot (for verify and the log check):
    entries after a seq, subject rows in a seq range, decision sets by id."""

    entries_after: Callable[[int, int], Awaitable[list[Any]]]
    subjects_between: Callable[[int, int], Awaitable[list[Any]]]
    sets_named: Callable[[list[str]], Awaitable[list[Any]]]
