"""What one request contributes to the accountability trail.

The hot path never builds a row per field. It hands the store one :class:`AuditBatch`: the
request's context (who, why, when, which trace), the plan's decisions (shared, immutable tuples
computed once per document and principal) and the data subjects each decision applied to.

The store keeps that shape (see :mod:`gateway.audit.chain`): one entry per request (the hash
chain's unit), one line per data subject naming its decision set, and each distinct decision
tuple once. Logically the trail still holds one :class:`AuditRecord` per (data subject,
decision): searches expand entries into records on read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Decision(StrEnum):
    GIVEN = "given"
    REFUSED = "refused"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class FieldDecision:
    """The decision on one schema coordinate at one response path (list indices left out).

    ``reason`` is a stable code (``FIELD_NOT_PERMITTED``, ``SUBJECT_OUT_OF_SCOPE``,
    ``REGISTRY_UNAVAILABLE``, ``PURPOSE_FORBIDDEN``, ...) for refusals and errors, and the
    policy rule id for given fields, so a record always says why.
    """

    coordinate: str  # "Vreemdeling.naam", "Naam.voornamen"
    path: str  # "persoon.naam.voornamen" (root response key first, no list indices)
    decision: Decision
    reason: str
    registry: str | None  # "BVV" | "COA" | "IND" | None (gateway-level)


@dataclass(frozen=True, slots=True)
class AccessContext:
    """Who asked, for what, when, in which trace. One per request; shared by its records."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex, the request span
    parent_span_id: str | None  # 16 hex of the incoming traceparent, if any
    start_time: datetime  # timezone-aware UTC
    organisation_oin: str  # 20 digits
    organisation: str  # policy organisation id, e.g. "NVIK"
    officer: str  # the end user: X-Gebruiker, or the token's `sub` without it
    authenticated_as: str  # the token's `sub`: who authenticated (an application or the officer)
    roles: tuple[str, ...]
    purpose: str | None  # X-Doelbinding, None when it was missing
    legal_basis: str | None  # the purpose's grondslag from the policy
    processing_activity: str | None  # URI: policy base + X-Verwerking
    policy_version: str  # content hash of the policy file


@dataclass(frozen=True, slots=True)
class SubjectAccess:
    """The decisions that applied to one data subject (by pseudonym, never the V-nummer)."""

    subject: str  # keyed-HMAC pseudonym, 64 hex
    decisions: tuple[FieldDecision, ...]


@dataclass(slots=True)
class AuditBatch:
    """Everything one request adds to the trail; committed atomically, before the response.

    A request refused before execution (bad purpose, limits, quota) has no subjects and one
    entry in ``request_decisions`` (coordinate ``Query``, path ``""``): one record without a data
    subject. A request may have both (e.g. an admin search is itself recorded).
    """

    context: AccessContext
    end_time: datetime
    subjects: list[SubjectAccess] = field(default_factory=list)
    request_decisions: list[FieldDecision] = field(default_factory=list)

    def record_count(self) -> int:
        return sum(len(s.decisions) for s in self.subjects) + len(self.request_decisions)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One logical record of the trail (one data subject × one decision), as searches return it.

    ``status`` is the LDV status of the record: ``"OK"`` for given, ``"ERROR"`` otherwise.
    ``recorded_at``, ``seq``, ``prev_hash`` and ``hash`` are set by the store and are those of
    the record's *entry*, the request it belongs to: every record of one request shares its
    ``seq`` (the entry's position in the hash chain, gap-free and monotonic across requests),
    ``prev_hash`` and ``hash``. Within a request, records come in the batch's order: subject
    by subject, each subject's decisions in plan order, the request-level decisions last.
    """

    seq: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_time: datetime
    end_time: datetime
    status: str
    processing_activity_id: str | None
    data_subject_id: str | None
    data_subject_id_type: str | None  # "vnummer" when data_subject_id is set
    organisation_oin: str
    organisation: str
    officer: str
    authenticated_as: str
    roles: tuple[str, ...]
    purpose: str | None
    legal_basis: str | None
    coordinate: str
    path: str
    decision: Decision
    reason: str
    registry: str | None
    policy_version: str
    recorded_at: datetime
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A search of the trail; every set attribute narrows it (AND). ``subject`` is a pseudonym."""

    subject: str | None = None
    officer: str | None = None
    organisation: str | None = None  # policy id or OIN
    purpose: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000  # records (a page may end inside a request's entry)
    # Keyset paging by entry: only records of entries with a larger seq. A full page may end
    # inside an entry; :func:`gateway.audit.report.search_all` pages without losing records.
    after_seq: int | None = None
