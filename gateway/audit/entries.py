"""Reading stored ``audit_entry`` rows back: column order, :class:`StoredEntry`, entry bytes.

An entry's canonical bytes (:func:`entry_bytes`) are what its chain hash and its Merkle leaf
hash cover; :func:`decode_entry` is their inverse. The layout is described in
:mod:`gateway.audit.chain`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.audit.encoding import ENTRY_TAG, dec_values, enc, enc_all, ts
from gateway.audit.model import AuditRecord, Decision, FieldDecision

#: ``data_subject_id_type`` of every record with a subject.
SUBJECT_ID_TYPE = "vnummer"

# One ``hashlib`` attribute look-up per call site costs more than the small hashes themselves.
_sha256 = hashlib.sha256


def status_of(decision: Decision) -> str:
    """LDV status of a record: ``OK`` for given, ``ERROR`` for refused and failed fields."""
    return "OK" if decision is Decision.GIVEN else "ERROR"


def _head_bytes(prev_hash: str, seq: int, recorded_at_text: str) -> bytes:
    return ENTRY_TAG + enc(prev_hash) + enc(str(seq)) + enc(recorded_at_text)


#: Column order of entry rows (INSERT / COPY and the SELECTs :func:`read_entry` reads).
ENTRY_COLUMNS: tuple[str, ...] = (
    "seq",
    "trace_id",
    "span_id",
    "parent_span_id",
    "start_time",
    "end_time",
    "processing_activity_id",
    "organisation_oin",
    "organisation",
    "officer",
    "authenticated_as",
    "roles",
    "purpose",
    "legal_basis",
    "policy_version",
    "subject_count",
    "record_count",
    "subjects_hash",
    "recorded_at",
    "prev_hash",
    "hash",
)

#: Column order of subject rows.
SUBJECT_COLUMNS: tuple[str, ...] = ("entry_seq", "position", "subject", "decision_set")


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One ``audit_entry`` row, read back (timestamps as aware UTC datetimes)."""

    seq: int
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_time: datetime
    end_time: datetime
    processing_activity_id: str | None
    organisation_oin: str
    organisation: str
    officer: str
    authenticated_as: str
    roles: tuple[str, ...]
    purpose: str | None
    legal_basis: str | None
    policy_version: str
    subject_count: int
    record_count: int
    subjects_hash: str
    recorded_at: datetime
    prev_hash: str
    hash: str

    def records(self, subject: str | None, decisions: Iterable[FieldDecision]) -> list[AuditRecord]:
        """The logical records of one of this entry's subject rows."""
        subject_type = SUBJECT_ID_TYPE if subject is not None else None
        return [
            AuditRecord(
                seq=self.seq,
                trace_id=self.trace_id,
                span_id=self.span_id,
                parent_span_id=self.parent_span_id,
                start_time=self.start_time,
                end_time=self.end_time,
                status=status_of(d.decision),
                processing_activity_id=self.processing_activity_id,
                data_subject_id=subject,
                data_subject_id_type=subject_type,
                organisation_oin=self.organisation_oin,
                organisation=self.organisation,
                officer=self.officer,
                authenticated_as=self.authenticated_as,
                roles=self.roles,
                purpose=self.purpose,
                legal_basis=self.legal_basis,
                coordinate=d.coordinate,
                path=d.path,
                decision=d.decision,
                reason=d.reason,
                registry=d.registry,
                policy_version=self.policy_version,
                recorded_at=self.recorded_at,
                prev_hash=self.prev_hash,
                hash=self.hash,
            )
            for d in decisions
        ]


def read_entry(row: Any) -> StoredEntry:
    """A :class:`StoredEntry` from a row selected in :data:`ENTRY_COLUMNS` order.

    Raises ``ValueError``/``TypeError`` on values no writer produces.
    """
    roles: str = row[11]
    return StoredEntry(
        seq=int(row[0]),
        trace_id=row[1],
        span_id=row[2],
        parent_span_id=row[3],
        start_time=_as_datetime(row[4]),
        end_time=_as_datetime(row[5]),
        processing_activity_id=row[6],
        organisation_oin=row[7],
        organisation=row[8],
        officer=row[9],
        authenticated_as=row[10],
        roles=tuple(roles.split(",")) if roles else (),
        purpose=row[12],
        legal_basis=row[13],
        policy_version=row[14],
        subject_count=int(row[15]),
        record_count=int(row[16]),
        subjects_hash=row[17],
        recorded_at=_as_datetime(row[18]),
        prev_hash=row[19],
        hash=row[20],
    )


def entry_hash(entry: StoredEntry) -> str:
    """The hash an entry must carry, from its other columns. Definition of the chain."""
    return _sha256(entry_bytes(entry)).hexdigest()


def entry_bytes(entry: StoredEntry) -> bytes:
    """The entry's canonical bytes: what its chain hash and its Merkle leaf hash cover.

    ``KP2E|`` ‖ prev_hash ‖ seq ‖ recorded_at ‖ the request columns ‖ subject_count ‖
    record_count ‖ subjects_hash (docs/audit-log.md, "Leaf data").
    """
    parts = (
        entry.trace_id,
        entry.span_id,
        entry.parent_span_id,
        ts(entry.start_time),
        ts(entry.end_time),
        entry.processing_activity_id,
        entry.organisation_oin,
        entry.organisation,
        entry.officer,
        entry.authenticated_as,
        ",".join(entry.roles),
        entry.purpose,
        entry.legal_basis,
        entry.policy_version,
        str(entry.subject_count),
        str(entry.record_count),
        entry.subjects_hash,
    )
    head = _head_bytes(entry.prev_hash, entry.seq, ts(entry.recorded_at))
    return head + enc_all(parts)


#: Values in the entry bytes after the tag: prev_hash, seq, recorded_at, 17 entry columns.
_ENTRY_VALUES = 20


def decode_entry(data: bytes) -> StoredEntry:
    """The entry whose canonical bytes are ``data`` (its ``hash`` computed from them).

    ``ValueError`` unless ``data`` is exactly such an encoding (re-encoding must give it back).
    """
    data = bytes(data)
    if not data.startswith(ENTRY_TAG):
        raise ValueError("not a KP2 entry encoding")
    values, _ = dec_values(data, len(ENTRY_TAG))
    if len(values) != _ENTRY_VALUES:
        raise ValueError(f"an entry encoding holds {_ENTRY_VALUES} values, not {len(values)}")
    prev, seq, recorded, *cols = values
    required = (prev, seq, recorded, *cols[:2], *cols[3:5], *cols[6:11], *cols[13:])
    if any(v is None for v in required):
        raise ValueError("an entry encoding lacks a required value")
    row = (seq, *cols, recorded, prev, "")
    entry = read_entry(row)
    if entry_bytes(entry) != data:
        raise ValueError("entry encoding is not canonical")
    return dataclasses.replace(entry, hash=_sha256(data).hexdigest())
