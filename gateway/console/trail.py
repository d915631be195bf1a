"""Reading the trail for the console's pages: filters, paged listings, bounded windows.

Everything goes through the store's public :meth:`~gateway.audit.store.AuditStore.search`
(keyset paging by entry seq), so the console reads SQLite and PostgreSQL alike and never more
than a bounded number of records per page view. The filters the store cannot apply itself
(processing activity, decision) are applied here while reading, with a cap on the records
scanned per page: a page then ends early and its "next" link continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from urllib.parse import urlencode

from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.audit.reading import is_reading
from gateway.audit.store import AuditStore

PSEUDONYM = re.compile(r"[0-9a-f]{64}")
TRACE_ID = re.compile(r"[0-9a-f]{32}")
VNUMMER = re.compile(r"\d{10}")
#: Records read per store search while paging.
READ_BATCH = 500
#: The largest single read (one request with very many records is read whole).
MAX_READ = 64_000


class BadFilter(ValueError):
    """A filter value the console cannot use; the message is shown to the viewer (Dutch)."""


@dataclass(frozen=True, slots=True)
class Filters:
    """A search of the trail as the viewer asked for it; ``subject`` is a pseudonym."""

    subject: str | None = None
    officer: str | None = None
    organisation: str | None = None
    purpose: str | None = None
    activity: str | None = None  # processing activity URI
    decision: Decision | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    trace_id: str | None = None

    def query(self, *, after: int | None = None, limit: int = READ_BATCH) -> AuditQuery:
        """The part of the search the store applies."""
        return AuditQuery(
            subject=self.subject,
            officer=self.officer,
            organisation=self.organisation,
            purpose=self.purpose,
            trace_id=self.trace_id,
            since=self.since,
            until=self.until,
            limit=limit,
            after_seq=after,
        )

    def keeps(self, record: AuditRecord) -> bool:
        """The part the console applies while reading."""
        if self.activity is not None and record.processing_activity_id != self.activity:
            return False
        return self.decision is None or record.decision is self.decision

    def describe(self, **extra: str | int | None) -> str:
        """The filters as recorded in the trail (``k=v&...``; the subject is its own row)."""
        items: dict[str, str | int | None] = {
            "officer": self.officer,
            "org": self.organisation,
            "doelbinding": self.purpose,
            "verwerking": self.activity,
            "besluit": self.decision.value if self.decision else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "trace": self.trace_id,
            "betrokkene": "ja" if self.subject else None,
            **extra,
        }
        return urlencode([(k, str(v)) for k, v in items.items() if v not in (None, "")])


def parse_moment(text: str, label: str) -> dt.datetime:
    """An ISO 8601 date or date-time (UTC when it has no offset)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadFilter(f"{label}: gebruik een datum of tijdstip als 2026-11-30T14:00") from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(slots=True)
class Row:
    """One line of a listing: one request × one data subject (or the request's own decisions)."""

    seq: int
    start_time: dt.datetime
    organisation: str
    organisation_oin: str
    officer: str
    authenticated_as: str
    roles: tuple[str, ...]
    purpose: str | None
    legal_basis: str | None
    activity: str | None
    subject: str | None
    trace_id: str
    policy_version: str
    given: list[tuple[str, str]] = field(default_factory=list)  # (field, rule id)
    refused: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def actor(self) -> str:
        """The officer, with the application that named it when an application token did."""
        if self.authenticated_as == self.officer:
            return self.officer
        return f"{self.officer} (via {self.authenticated_as})"

    def add(self, record: AuditRecord) -> None:
        if is_reading(record.coordinate):
            # A use of the trail: its "path" holds the filters it applied.
            name = record.coordinate + (f" [{record.path}]" if record.path else "")
        else:
            name = record.path or record.coordinate
        if record.decision is Decision.GIVEN:
            if (name, record.reason) not in self.given:
                self.given.append((name, record.reason))
        elif record.decision is Decision.REFUSED:
            self.refused.append((name, record.reason))
        else:
            self.failed.append((name, record.reason))


def rows_of(records: Iterable[AuditRecord]) -> list[Row]:
    """Group records (in store order) into rows: per entry, per data subject."""
    rows: list[Row] = []
    for _, entry_records in groupby(records, key=lambda r: r.seq):
        by_subject: dict[str | None, Row] = {}
        for r in entry_records:
            row = by_subject.get(r.data_subject_id)
            if row is None:
                row = by_subject[r.data_subject_id] = Row(
                    seq=r.seq,
                    start_time=r.start_time,
                    organisation=r.organisation,
                    organisation_oin=r.organisation_oin,
                    officer=r.officer,
                    authenticated_as=r.authenticated_as,
                    roles=r.roles,
                    purpose=r.purpose,
                    legal_basis=r.legal_basis,
                    activity=r.processing_activity_id,
                    subject=r.data_subject_id,
                    trace_id=r.trace_id,
                    policy_version=r.policy_version,
                )
                rows.append(row)
            row.add(r)
    return rows


async def read_entries(
    store: AuditStore, query: AuditQuery, *, after: int | None, batch: int = READ_BATCH
) -> tuple[list[list[AuditRecord]], bool]:
    """The next complete entries (records grouped by seq) after ``after``; and whether the
    trail has no more. A full read's last entry may be cut off: it is left for the next read
    (one entry larger than the read is read whole with a larger one)."""
    size = batch
    while True:
        got = await store.search(dataclasses.replace(query, limit=size, after_seq=after))
        if len(got) < size:
            return [list(g) for _, g in groupby(got, key=lambda r: r.seq)], True
        last = got[-1].seq
        complete = [r for r in got if r.seq != last]
        if complete:
            return [list(g) for _, g in groupby(complete, key=lambda r: r.seq)], False
        if size >= MAX_READ:
            raise BadFilter("een verzoek in het log is te groot om te tonen")
        size *= 2


@dataclass(slots=True)
class Page:
    """One page of a listing. ``after`` continues it (``None``: the trail has no more)."""

    rows: list[Row]
    after: int | None
    scanned: int
    cut_short: bool  # stopped at the scan cap before the page was full


async def search_page(
    store: AuditStore,
    filters: Filters,
    *,
    after: int | None,
    rows: int = 50,
    scan_cap: int = 20_000,
) -> Page:
    """Up to ``rows`` rows (whole entries only) after entry ``after``, scanning at most about
    ``scan_cap`` records for the filters the store cannot apply."""
    out: list[Row] = []
    scanned = 0
    cursor = after
    query = filters.query()
    while True:
        entries, done = await read_entries(store, query, after=cursor)
        for records in entries:
            cursor = records[0].seq
            scanned += len(records)
            out.extend(rows_of(r for r in records if filters.keeps(r)))
            if len(out) >= rows:
                return Page(out, cursor, scanned, cut_short=False)
            if scanned >= scan_cap:
                return Page(out, cursor, scanned, cut_short=True)
        if done:
            return Page(out, None, scanned, cut_short=False)


async def window(
    store: AuditStore, filters: Filters, *, cap: int = 200_000
) -> tuple[list[AuditRecord], bool]:
    """The records matching ``filters`` (oldest first), at most about ``cap``; and whether the
    window held more (then only its oldest part was read)."""
    out: list[AuditRecord] = []
    cursor: int | None = None
    query = filters.query()
    while True:
        entries, done = await read_entries(store, query, after=cursor, batch=10_000)
        for records in entries:
            cursor = records[0].seq
            out.extend(r for r in records if filters.keeps(r))
            if len(out) >= cap:
                return out, True
        if done:
            return out, False
