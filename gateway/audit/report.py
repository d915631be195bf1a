"""The data-subject access report (AVG art. 15): who saw what of one person, when and why.

Built from the trail by pseudonym only; the report never contains the V-nummer (the person
asking knows it; the trail does not). One entry per access, that is per request (trace and
span), with the fields given, refused (with the reason) and failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.audit.store import AuditStore

#: Records read per search while building a report (keyset paging on the entry seq).
_PAGE = 5_000


@dataclass(slots=True)
class AccessEntry:
    """One request that touched the data subject."""

    when: dt.datetime
    organisation: str
    organisation_oin: str
    officer: str
    purpose: str | None
    legal_basis: str | None
    processing_activity: str | None
    trace_id: str
    given: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (field, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (field, reason)
    seq: int = 0  # the entry (leaf seq - 1 of the Merkle log); not shown, proofs name it

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "when": self.when.isoformat(),
            "organisation": self.organisation,
            "organisation_oin": self.organisation_oin,
            "officer": self.officer,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "processing_activity": self.processing_activity,
            "trace_id": self.trace_id,
            "given": list(self.given),
            "refused": [{"field": f, "reason": r} for f, r in self.refused],
            "failed": [{"field": f, "reason": r} for f, r in self.failed],
        }


@dataclass(slots=True)
class SubjectReport:
    """All accesses to one data subject (by pseudonym), oldest first."""

    subject: str
    generated_at: dt.datetime
    accesses: list[AccessEntry]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "subject": self.subject,
            "subject_type": "vnummer (pseudonym)",
            "generated_at": self.generated_at.isoformat(),
            "access_count": len(self.accesses),
            "accesses": [a.to_dict() for a in self.accesses],
        }

    def to_markdown(self) -> str:
        """A human-readable report for the data protection officer to hand over."""
        out = [
            "# Inzageverslag (AVG art. 15) — data-subject access report",
            "",
            f"- Subject (pseudonym): `{self.subject}`",
            f"- Generated: {self.generated_at.isoformat(timespec='seconds')}",
            f"- Accesses: {len(self.accesses)}",
            "",
        ]
        if not self.accesses:
            out.append("No access to this person's data is recorded.")
        for n, a in enumerate(self.accesses, 1):
            out += [
                f"## {n}. {a.when.isoformat(timespec='seconds')} — {a.organisation}",
                "",
                f"- Organisation: {a.organisation} (OIN {a.organisation_oin})",
                f"- Officer: {a.officer}",
                f"- Purpose: {a.purpose or '(none declared)'}",
                f"- Legal basis: {a.legal_basis or '(none)'}",
            ]
            if a.processing_activity:
                out.append(f"- Processing activity: {a.processing_activity}")
            out.append(f"- Trace: `{a.trace_id}`")
            out.append(f"- Given: {', '.join(a.given) if a.given else '(nothing)'}")
            if a.refused:
                refused = ", ".join(f"{f} ({r})" for f, r in a.refused)
                out.append(f"- Refused: {refused}")
            if a.failed:
                out.append(f"- Not delivered: {', '.join(f'{f} ({r})' for f, r in a.failed)}")
            out.append("")
        return "\n".join(out).rstrip() + "\n"


def _field_name(record: AuditRecord) -> str:
    return record.path or record.coordinate


def build_report(subject: str, records: list[AuditRecord]) -> SubjectReport:
    """Group ``records`` (all of one subject, by seq) into accesses per request."""
    entries: dict[tuple[str, str], AccessEntry] = {}
    for r in records:
        key = (r.trace_id, r.span_id)
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = AccessEntry(
                when=r.start_time,
                organisation=r.organisation,
                organisation_oin=r.organisation_oin,
                officer=r.officer,
                purpose=r.purpose,
                legal_basis=r.legal_basis,
                processing_activity=r.processing_activity_id,
                trace_id=r.trace_id,
                seq=r.seq,
            )
        name = _field_name(r)
        if r.decision is Decision.GIVEN:
            if name not in entry.given:
                entry.given.append(name)
        elif r.decision is Decision.REFUSED:
            entry.refused.append((name, r.reason))
        else:
            entry.failed.append((name, r.reason))
    accesses = sorted(entries.values(), key=lambda e: e.when)
    return SubjectReport(subject=subject, generated_at=dt.datetime.now(dt.UTC), accesses=accesses)


async def search_all(
    store: AuditStore, query: AuditQuery, *, page: int = _PAGE
) -> list[AuditRecord]:
    """Every record matching ``query`` (its ``limit`` ignored), read in pages of about ``page``.

    Records of one request share their entry's seq and ``after_seq`` pages by entry, so a full
    page may end inside an entry: its last entry is read again with the next page (and a single
    entry larger than a page is read with a larger one).
    """
    records: list[AuditRecord] = []
    after = query.after_seq
    size = page
    while True:
        got = await store.search(dataclasses.replace(query, limit=size, after_seq=after))
        if len(got) < size:
            records.extend(got)
            return records
        last = got[-1].seq
        complete = [r for r in got if r.seq != last]
        if not complete:  # one entry fills the page: read it whole
            size *= 2
            continue
        records.extend(complete)
        after = complete[-1].seq
        size = page


async def subject_report(store: AuditStore, pseudonym: str) -> SubjectReport:
    """Every recorded access to the subject with this pseudonym (all pages of the trail)."""
    return build_report(pseudonym, await search_all(store, AuditQuery(subject=pseudonym)))
