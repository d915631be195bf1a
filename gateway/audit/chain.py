"""The hash chain of the trail: canonical encoding, batch expansion and linking.

Every stored record carries ``hash`` = SHA-256 over a canonical encoding of all its other columns
(``prev_hash`` included) and ``prev_hash`` = the hash of the record before it (the genesis value,
or the purge anchor after a retention purge). Changing, inserting or deleting one record
therefore breaks the chain at that record, which :func:`verify_records` names.

Canonical encoding (version ``KP1``), stable across SQLite and PostgreSQL:

* every value is a string or ``None``; ``None`` is the single byte ``~`` and a string is its
  UTF-8 byte length in decimal, ``:``, then the bytes (a netstring without the trailer), so
  ``None`` and ``""`` differ and no value can imitate a field boundary;
* timestamps are ISO 8601 in UTC with microseconds (``2025-01-31T12:00:00.000000+00:00``);
  roles are joined with ``,``; ``seq`` is decimal;
* the field order is fixed: the request part (trace_id, span_id, parent_span_id, start_time,
  end_time, processing_activity_id, organisation_oin, organisation, officer, roles, purpose,
  legal_basis, policy_version), the subject part (data_subject_id, data_subject_id_type), the
  decision part (status, coordinate, path, decision, reason, registry) and the tail
  (recorded_at, seq, prev_hash).

The order is chosen so expansion is cheap: the request part is hashed once per batch, the
subject part once per subject, the decision part is encoded once per distinct decision, and
only the tail (known inside the write transaction) is hashed per record, on a copy of the
subject's hash state. :func:`record_hash` is the plain, slow definition the fast path must match.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.audit.model import AuditBatch, AuditRecord, Decision, FieldDecision

#: ``prev_hash`` of the first record of a trail that was never purged.
GENESIS_HASH = "0" * 64
#: Prefix of every encoding, so a later encoding can coexist with this one.
ENCODING_TAG = b"KP1|"
#: ``data_subject_id_type`` of every record with a subject.
SUBJECT_ID_TYPE = "vnummer"

_PSEUDONYM = re.compile(r"[0-9a-f]{64}")

# One ``hashlib`` object per call site costs more than the hash itself; keep the constructor.
_sha256 = hashlib.sha256


def ts(value: datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds. Refuses naive datetimes.

    Used for hashing and as the stored form in SQLite, where its fixed width makes text order
    equal time order, so range searches work on the text.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} in audit data; use UTC-aware times")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _enc(value: str | None) -> bytes:
    if value is None:
        return b"~"
    raw = value.encode("utf-8")
    return b"%d:%b" % (len(raw), raw)


def _enc_all(values: Iterable[str | None]) -> bytes:
    return b"".join(_enc(v) for v in values)


def status_of(decision: Decision) -> str:
    """LDV status of a record: ``OK`` for given, ``ERROR`` for refused and failed fields."""
    return "OK" if decision is Decision.GIVEN else "ERROR"


def tail_bytes(recorded_at: str, seq: int, prev_hash: str) -> bytes:
    """The per-record tail of the encoding (the part only the write transaction knows)."""
    return _enc(recorded_at) + _enc(str(seq)) + _enc(prev_hash)


def record_hash(record: AuditRecord) -> str:
    """The hash a record must carry, from its other fields. Definition of the chain."""
    parts = (
        record.trace_id,
        record.span_id,
        record.parent_span_id,
        ts(record.start_time),
        ts(record.end_time),
        record.processing_activity_id,
        record.organisation_oin,
        record.organisation,
        record.officer,
        ",".join(record.roles),
        record.purpose,
        record.legal_basis,
        record.policy_version,
        record.data_subject_id,
        record.data_subject_id_type,
        record.status,
        record.coordinate,
        record.path,
        record.decision.value,
        record.reason,
        record.registry,
    )
    digest = _sha256(ENCODING_TAG + _enc_all(parts))
    digest.update(tail_bytes(ts(record.recorded_at), record.seq, record.prev_hash))
    return digest.hexdigest()


# A prepared entry: the row's values up to (not including) the tail, the hash state after the
# subject part, and the encoded decision part.
_Entry = tuple[tuple[Any, ...], Any, bytes]


@dataclass(slots=True)
class PreparedBatch:
    """A batch expanded to row prefixes and partial hashes, ready to be linked into the chain.

    Built by :func:`prepare` in the caller's task (outside the write transaction); linked by
    :func:`link` inside it. ``entries`` keeps the batch's record order.
    """

    entries: list[_Entry]

    def __len__(self) -> int:
        return len(self.entries)


def prepare(batch: AuditBatch, *, text_timestamps: bool) -> PreparedBatch:
    """Expand ``batch`` into one entry per (subject, decision) and one per request decision.

    ``text_timestamps`` stores timestamps as canonical text (SQLite) instead of ``datetime``
    (PostgreSQL ``timestamptz``). Raises ``ValueError`` on data that must not be stored: naive
    times, or a subject that is not a 64-hex pseudonym (a raw V-nummer must never reach a row).
    """
    ctx = batch.context
    start_s, end_s = ts(ctx.start_time), ts(batch.end_time)
    roles = ",".join(ctx.roles)
    # Row order of the request part equals the hash order (see module docstring).
    common_text = (
        ctx.trace_id,
        ctx.span_id,
        ctx.parent_span_id,
        start_s,
        end_s,
        ctx.processing_activity,
        ctx.organisation_oin,
        ctx.organisation,
        ctx.officer,
        roles,
        ctx.purpose,
        ctx.legal_basis,
        ctx.policy_version,
    )
    common_row: tuple[Any, ...]
    if text_timestamps:
        common_row = common_text
    else:
        common_row = (
            *common_text[:3],
            ctx.start_time.astimezone(UTC),
            batch.end_time.astimezone(UTC),
            *common_text[5:],
        )
    base = _sha256(ENCODING_TAG + _enc_all(common_text))

    # Decisions are shared tuples from the plan: encode each distinct object once per batch.
    encoded: dict[int, tuple[tuple[str | None, ...], bytes]] = {}

    def decision_part(d: FieldDecision) -> tuple[tuple[str | None, ...], bytes]:
        hit = encoded.get(id(d))
        if hit is None:
            values = (status_of(d.decision), d.coordinate, d.path, d.decision.value, d.reason)
            hit = ((*values, d.registry), _enc_all(values) + _enc(d.registry))
            encoded[id(d)] = hit
        return hit

    entries: list[_Entry] = []
    append = entries.append
    for access in batch.subjects:
        subject = access.subject
        if not _PSEUDONYM.fullmatch(subject):
            raise ValueError("data subject is not a 64-hex pseudonym; refusing to store it")
        subject_state = base.copy()
        subject_state.update(_enc(subject) + _enc(SUBJECT_ID_TYPE))
        prefix = (*common_row, subject, SUBJECT_ID_TYPE)
        for d in access.decisions:
            row, dbytes = decision_part(d)
            append((prefix + row, subject_state, dbytes))
    if batch.request_decisions:
        no_subject = base.copy()
        no_subject.update(_enc(None) + _enc(None))
        prefix = (*common_row, None, None)
        for d in batch.request_decisions:
            row, dbytes = decision_part(d)
            append((prefix + row, no_subject, dbytes))
    return PreparedBatch(entries)


def link(
    batches: Iterable[PreparedBatch],
    *,
    head_seq: int,
    head_hash: str,
    recorded_at: Any,
    recorded_at_text: str,
) -> tuple[list[tuple[Any, ...]], int, str]:
    """Assign seq, prev_hash and hash to every entry, in order, continuing from the chain head.

    Returns the complete rows (column order :data:`ROW_COLUMNS`), the new head seq and hash.
    ``recorded_at`` is the stored value (text or ``datetime``), ``recorded_at_text`` its
    canonical text.
    """
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    seq, prev = head_seq, head_hash
    rec_enc = _enc(recorded_at_text)
    for prepared in batches:
        for prefix, state, dbytes in prepared.entries:
            seq += 1
            digest = state.copy()
            digest.update(dbytes + rec_enc + _enc(str(seq)) + _enc(prev))
            hexed = digest.hexdigest()
            append((*prefix, recorded_at, seq, prev, hexed))
            prev = hexed
    return rows, seq, prev


#: Column order of the rows :func:`link` builds (and of the stores' INSERT / COPY statements).
ROW_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "start_time",
    "end_time",
    "processing_activity_id",
    "organisation_oin",
    "organisation",
    "officer",
    "roles",
    "purpose",
    "legal_basis",
    "policy_version",
    "data_subject_id",
    "data_subject_id_type",
    "status",
    "coordinate",
    "path",
    "decision",
    "reason",
    "registry",
    "recorded_at",
    "seq",
    "prev_hash",
    "hash",
)

#: Column order of SELECTs that :func:`to_record` reads (the AuditRecord field order).
RECORD_COLUMNS: tuple[str, ...] = (
    "seq",
    "trace_id",
    "span_id",
    "parent_span_id",
    "start_time",
    "end_time",
    "status",
    "processing_activity_id",
    "data_subject_id",
    "data_subject_id_type",
    "organisation_oin",
    "organisation",
    "officer",
    "roles",
    "purpose",
    "legal_basis",
    "coordinate",
    "path",
    "decision",
    "reason",
    "registry",
    "policy_version",
    "recorded_at",
    "prev_hash",
    "hash",
)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def to_record(row: Any) -> AuditRecord:
    """Build an :class:`AuditRecord` from a row selected in :data:`RECORD_COLUMNS` order."""
    roles: str = row[13]
    return AuditRecord(
        seq=int(row[0]),
        trace_id=row[1],
        span_id=row[2],
        parent_span_id=row[3],
        start_time=_as_datetime(row[4]),
        end_time=_as_datetime(row[5]),
        status=row[6],
        processing_activity_id=row[7],
        data_subject_id=row[8],
        data_subject_id_type=row[9],
        organisation_oin=row[10],
        organisation=row[11],
        officer=row[12],
        roles=tuple(roles.split(",")) if roles else (),
        purpose=row[14],
        legal_basis=row[15],
        coordinate=row[16],
        path=row[17],
        decision=Decision(row[18]),
        reason=row[19],
        registry=row[20],
        policy_version=row[21],
        recorded_at=_as_datetime(row[22]),
        prev_hash=row[23],
        hash=row[24],
    )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of a chain verification.

    ``checked`` counts the records examined; ``first_broken_seq`` is the seq of the first record
    that is altered, missing or out of place (``None`` when ``ok``); ``detail`` says what is wrong
    (or summarises the chain when ``ok``).
    """

    ok: bool
    checked: int
    first_broken_seq: int | None
    detail: str


class ChainWalker:
    """Walks records in seq order from the anchor to the head and names the first break.

    Feed pages of records with :meth:`feed` (it returns a failed :class:`VerifyResult` as soon
    as one is found, so a caller can stop reading); call :meth:`finish` at the end.

    A break is: a seq that is not the next one (a record deleted or inserted), a ``prev_hash``
    that is not the previous record's hash, a stored hash that differs from the recomputed one
    (a record altered), or a chain that ends before the head (records removed from the end).
    """

    __slots__ = ("_anchor_seq", "_expected", "_head_hash", "_head_seq", "_prev", "checked")

    def __init__(self, *, anchor_seq: int, anchor_hash: str, head_seq: int, head_hash: str) -> None:
        self._anchor_seq = anchor_seq
        self._head_seq = head_seq
        self._head_hash = head_hash
        self._expected = anchor_seq + 1
        self._prev = anchor_hash
        self.checked = 0

    def feed(self, rows: Iterable[Any]) -> VerifyResult | None:
        """Check the next rows (:data:`RECORD_COLUMNS` order); the first break, else ``None``."""
        for row in rows:
            try:
                record = to_record(row)
            except (ValueError, TypeError, AttributeError) as exc:
                # A value no writer produces (bad timestamp, unknown decision): altered.
                seq = row[0] if isinstance(row[0], int) else self._expected
                why = f"record {seq}: unreadable value ({type(exc).__name__}: {exc})"
                return VerifyResult(False, self.checked, seq, why)
            if record.seq != self._expected:
                if record.seq < self._expected:
                    why = f"record {record.seq} lies at or before the purge anchor or repeats a seq"
                    return VerifyResult(False, self.checked, record.seq, why)
                why = f"record {self._expected} is missing (next stored record is {record.seq})"
                return VerifyResult(False, self.checked, self._expected, why)
            self.checked += 1
            if record.prev_hash != self._prev:
                why = f"record {record.seq}: prev_hash does not match the previous record's hash"
                return VerifyResult(False, self.checked, record.seq, why)
            if record_hash(record) != record.hash:
                why = f"record {record.seq}: content does not match its hash (altered)"
                return VerifyResult(False, self.checked, record.seq, why)
            self._prev = record.hash
            self._expected += 1
        return None

    def finish(self) -> VerifyResult:
        """The result once every record was fed: the chain must end exactly at the head."""
        last_seq = self._expected - 1
        if last_seq != self._head_seq or self._prev != self._head_hash:
            why = (
                f"chain ends at seq {last_seq} but the chain head records seq {self._head_seq}: "
                "records were removed from the end, or the head was altered"
            )
            return VerifyResult(False, self.checked, last_seq + 1, why)
        return VerifyResult(
            True,
            self.checked,
            None,
            f"{self.checked} records verified (seq {self._anchor_seq + 1}..{self._head_seq}; "
            f"purge anchor at seq {self._anchor_seq})",
        )
