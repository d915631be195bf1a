"""The trail's storage layout, canonical encodings and hash chain (layout version ``KP2``).

A request's :class:`~gateway.audit.model.AuditBatch` is stored compactly, in three tables:

* ``audit_entry``: one row per request (batch), the chain's unit: ``seq`` (its position in the
  chain), the request context (trace, times, organisation, officer, roles, purpose, legal basis,
  processing activity, policy version), ``subject_count``, ``record_count``, ``subjects_hash``,
  ``recorded_at``, ``prev_hash`` and ``hash``;
* ``audit_entry_subject``: one row per (entry, data subject) -- the Logboek Dataverwerkingen's
  "one log line per data subject" -- ``(entry_seq, position, subject, decision_set)``, with
  ``subject`` the pseudonym, or ``NULL`` for the request-level decisions (always last);
* ``audit_decision_set``: content-addressed decision tuples: ``id`` = SHA-256 of ``encoding``,
  the canonical encoding of the tuple's (coordinate, path, decision, reason, registry) items.
  Written if absent; never updated; kept by purges (they name schema fields, not persons).

The logical :class:`~gateway.audit.model.AuditRecord` (one per subject row × decision of its
set) is expanded on read; its ``seq``, ``prev_hash`` and ``hash`` are the entry's.

Canonical encoding, stable across SQLite and PostgreSQL: every value is a string or ``None``;
``None`` is the single byte ``~`` and a string is its UTF-8 byte length in decimal, ``:``, then
the bytes (a netstring without the trailer), so ``None`` and ``""`` differ and no value can
imitate a field boundary. Timestamps are ISO 8601 in UTC with microseconds; roles are joined
with ``,``; integers are decimal.

* decision set: ``KP2D|`` ‖ count ‖ per decision: coordinate, path, decision, reason, registry;
  its id is the SHA-256 hex digest of that encoding.
* ``subjects_hash``: SHA-256 of ``KP2S|`` ‖ per subject row in position order: subject,
  decision set id.
* entry ``hash``: SHA-256 of ``KP2E|`` ‖ prev_hash ‖ seq ‖ recorded_at ‖ trace_id, span_id,
  parent_span_id, start_time, end_time, processing_activity_id, organisation_oin, organisation,
  officer, roles, purpose, legal_basis, policy_version ‖ subject_count ‖ record_count ‖
  subjects_hash.

So an entry's hash covers its own row, the previous entry's hash and (through
``subjects_hash`` and the set ids) every subject row and every decision set it refers to:
changing, adding or removing any of them breaks the chain at that entry, which
:class:`ChainWalker` names together with what is wrong. Everything but the first three fields of
the entry hash is known before the write transaction, so a batch is encoded in the caller's
task (:func:`prepare`) and only one SHA-256 per entry is left for the transaction (:func:`link`).
Decision tuples are the plan's shared objects: :class:`DecisionSets` encodes each one once per
process, so a warm store hashes nothing per field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.audit.model import AuditBatch, AuditRecord, Decision, FieldDecision

#: ``prev_hash`` of the first entry of a trail that was never purged.
GENESIS_HASH = "0" * 64
#: Prefixes of the encodings, so a later encoding can coexist with this one.
ENTRY_TAG = b"KP2E|"
SUBJECTS_TAG = b"KP2S|"
SET_TAG = b"KP2D|"
#: ``data_subject_id_type`` of every record with a subject.
SUBJECT_ID_TYPE = "vnummer"

_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# One ``hashlib`` attribute look-up per call site costs more than the small hashes themselves.
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


# ---- decision sets ------------------------------------------------------------------------


def encode_decisions(decisions: Sequence[FieldDecision]) -> bytes:
    """The canonical encoding of a decision tuple (what a decision set's id hashes)."""
    parts = [SET_TAG, _enc(str(len(decisions)))]
    for d in decisions:
        parts.append(
            _enc(d.coordinate)
            + _enc(d.path)
            + _enc(Decision(d.decision).value)
            + _enc(d.reason)
            + _enc(d.registry)
        )
    return b"".join(parts)


def decision_set_id(encoding: bytes) -> str:
    """A decision set's id: the SHA-256 hex digest of its encoding."""
    return _sha256(encoding).hexdigest()


def _dec_values(data: bytes, start: int) -> tuple[list[str | None], int]:
    """Decode netstring values from ``start`` to the end of ``data``."""
    out: list[str | None] = []
    i, end = start, len(data)
    while i < end:
        if data[i] == 0x7E:  # "~"
            out.append(None)
            i += 1
            continue
        colon = data.index(b":", i)
        digits = data[i:colon]
        if not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30):
            raise ValueError(f"bad length at byte {i}")
        stop = colon + 1 + int(digits)
        if stop > end:
            raise ValueError(f"value at byte {i} runs past the end")
        out.append(data[colon + 1 : stop].decode("utf-8"))
        i = stop
    return out, i


def decode_decisions(encoding: bytes) -> tuple[FieldDecision, ...]:
    """The decision tuple of an encoding; ``ValueError`` unless it is one exactly."""
    data = bytes(encoding)
    if not data.startswith(SET_TAG):
        raise ValueError("not a KP2 decision set encoding")
    values, _ = _dec_values(data, len(SET_TAG))
    if not values or values[0] is None or not values[0].isdigit():
        raise ValueError("decision set encoding has no count")
    count = int(values[0])
    items = values[1:]
    if len(items) != 5 * count:
        raise ValueError(f"decision set says {count} decisions but holds {len(items) / 5:g}")
    decisions: list[FieldDecision] = []
    for k in range(count):
        coordinate, path, decision, reason, registry = items[5 * k : 5 * k + 5]
        if coordinate is None or path is None or decision is None or reason is None:
            raise ValueError(f"decision {k} of the set has a missing value")
        decisions.append(FieldDecision(coordinate, path, Decision(decision), reason, registry))
    result = tuple(decisions)
    if encode_decisions(result) != data:
        raise ValueError("decision set encoding is not canonical")
    return result


class DecisionSets:
    """In-process memo of decision sets: tuple → (id, encoding) and id → decoded tuple.

    The plan hands the same tuple object to every person of a root field and to every request
    with the same document and grant, so the common hit is by object identity (the cache keeps
    the object alive, and checks it is the same one, so a recycled ``id()`` cannot alias).
    Equal tuples that are other objects (and request-level decision lists, which are built per
    request) hit by content. Bounded: when a map is full it starts again.
    """

    __slots__ = ("_bound", "_by_content", "_by_identity", "_decoded", "encoded")

    def __init__(self, bound: int = 2048) -> None:
        self._bound = bound
        self._by_identity: dict[int, tuple[tuple[FieldDecision, ...], str, bytes]] = {}
        self._by_content: dict[tuple[FieldDecision, ...], tuple[str, bytes]] = {}
        self._decoded: dict[str, tuple[FieldDecision, ...]] = {}
        #: How many decision tuples this process has encoded (and hashed) so far.
        self.encoded = 0

    def key(self, decisions: Sequence[FieldDecision]) -> tuple[str, bytes]:
        """The (id, encoding) of a decision tuple (or list), encoding it only when new."""
        if type(decisions) is tuple:
            hit = self._by_identity.get(id(decisions))
            if hit is not None and hit[0] is decisions:
                return hit[1], hit[2]
            content: tuple[FieldDecision, ...] = decisions
        else:
            content = tuple(decisions)
        found = self._by_content.get(content)
        if found is None:
            encoding = encode_decisions(content)
            found = (decision_set_id(encoding), encoding)
            self.encoded += 1
            if len(self._by_content) >= self._bound:
                self._by_content.clear()
            self._by_content[content] = found
            self.remember(found[0], content)
        if type(decisions) is tuple:
            if len(self._by_identity) >= self._bound:
                self._by_identity.clear()
            self._by_identity[id(decisions)] = (decisions, found[0], found[1])
        return found

    def decoded(self, set_id: str) -> tuple[FieldDecision, ...] | None:
        """The decisions of a set this process has encoded or read, if it still knows them."""
        return self._decoded.get(set_id)

    def remember(self, set_id: str, decisions: tuple[FieldDecision, ...]) -> None:
        """Keep the decoded decisions of a set (for expanding searches)."""
        if len(self._decoded) >= self._bound:
            self._decoded.clear()
        self._decoded[set_id] = decisions


# ---- writing ------------------------------------------------------------------------------


@dataclass(slots=True)
class PreparedBatch:
    """A batch encoded for the entry table, ready to be linked into the chain.

    Built by :func:`prepare` in the caller's task (outside the write transaction); linked by
    :func:`link` inside it. ``values`` are the entry's stored request columns, ``body`` the
    part of the entry hash after ``recorded_at``, ``subjects`` the (subject, set id) rows in
    position order, ``sets`` the encodings of the sets they use.
    """

    values: tuple[Any, ...]
    body: bytes
    subjects: list[tuple[str | None, str]]
    sets: dict[str, bytes]
    record_count: int

    def __len__(self) -> int:
        """Rows this batch writes: its entry and its subject rows."""
        return 1 + len(self.subjects)


def subjects_hash(rows: Iterable[tuple[str | None, str]]) -> str:
    """``subjects_hash`` of an entry from its (subject, decision set id) rows, in order."""
    digest = _sha256(SUBJECTS_TAG)
    for subject, set_id in rows:
        digest.update(_enc(subject) + _enc(set_id))
    return digest.hexdigest()


def prepare(batch: AuditBatch, sets: DecisionSets, *, text_timestamps: bool) -> PreparedBatch:
    """Encode ``batch``: one entry, a subject row per data subject, one for request decisions.

    A subject without decisions adds nothing (nothing of it was resolved); a batch with nothing
    to record has no subject rows (the caller does not write it). ``text_timestamps`` stores
    timestamps as canonical text (SQLite) instead of ``datetime`` (PostgreSQL ``timestamptz``).
    Raises ``ValueError`` on data that must not be stored: naive times, or a subject that is not
    a 64-hex pseudonym (a raw V-nummer must never reach a row).
    """
    ctx = batch.context
    start_s, end_s = ts(ctx.start_time), ts(batch.end_time)
    request_text = (
        ctx.trace_id,
        ctx.span_id,
        ctx.parent_span_id,
        start_s,
        end_s,
        ctx.processing_activity,
        ctx.organisation_oin,
        ctx.organisation,
        ctx.officer,
        ctx.authenticated_as,
        ",".join(ctx.roles),
        ctx.purpose,
        ctx.legal_basis,
        ctx.policy_version,
    )
    rows: list[tuple[str | None, str]] = []
    used: dict[str, bytes] = {}
    records = 0
    digest = _sha256(SUBJECTS_TAG)
    fullmatch = _PSEUDONYM.fullmatch
    key = sets.key
    for access in batch.subjects:
        subject, decisions = access.subject, access.decisions
        if type(subject) is not str or not fullmatch(subject):
            raise ValueError("data subject is not a 64-hex pseudonym; refusing to store it")
        if not decisions:
            continue
        set_id, encoding = key(decisions)
        used[set_id] = encoding
        rows.append((subject, set_id))
        digest.update(b"64:%b64:%b" % (subject.encode(), set_id.encode()))
        records += len(decisions)
    if batch.request_decisions:
        set_id, encoding = key(batch.request_decisions)
        used[set_id] = encoding
        rows.append((None, set_id))
        digest.update(b"~64:%b" % set_id.encode())
        records += len(batch.request_decisions)
    hashed = digest.hexdigest()
    body = _enc_all(request_text) + _enc(str(len(rows))) + _enc(str(records)) + _enc(hashed)
    values: tuple[Any, ...]
    if text_timestamps:
        values = (*request_text, len(rows), records, hashed)
    else:
        values = (
            *request_text[:3],
            ctx.start_time.astimezone(UTC),
            batch.end_time.astimezone(UTC),
            *request_text[5:],
            len(rows),
            records,
            hashed,
        )
    return PreparedBatch(values, body, rows, used, records)


def _head_bytes(prev_hash: str, seq: int, recorded_at_text: str) -> bytes:
    return ENTRY_TAG + _enc(prev_hash) + _enc(str(seq)) + _enc(recorded_at_text)


@dataclass(slots=True)
class Linked:
    """Batches linked into the chain: rows to insert, the new head, the Merkle leaf hashes."""

    entries: list[tuple[Any, ...]]
    subjects: list[tuple[int, int, str | None, str]]
    seq: int
    hash: str
    #: RFC 6962 leaf hash of each entry, ``SHA-256(0x00 ‖ entry bytes)``, in seq order.
    leaves: list[bytes]


def link(
    batches: Iterable[PreparedBatch],
    *,
    head_seq: int,
    head_hash: str,
    recorded_at: Any,
    recorded_at_text: str,
) -> Linked:
    """Give every batch its entry seq, prev_hash and hash, continuing from the chain head.

    Returns the entry rows (column order :data:`ENTRY_COLUMNS`), the subject rows
    (:data:`SUBJECT_COLUMNS`), the new head seq and hash, and each entry's Merkle leaf hash
    (the entry bytes are built here once and hashed twice: chain and leaf). ``recorded_at`` is
    the stored value (text or ``datetime``), ``recorded_at_text`` its canonical text.
    """
    entries: list[tuple[Any, ...]] = []
    subjects: list[tuple[int, int, str | None, str]] = []
    leaves: list[bytes] = []
    add_subjects = subjects.extend
    seq, prev = head_seq, head_hash
    rec_enc = _enc(recorded_at_text)
    prev_prefix = ENTRY_TAG
    for prepared in batches:
        seq += 1
        data = prev_prefix + _enc(prev) + _enc(str(seq)) + rec_enc + prepared.body
        hexed = _sha256(data).hexdigest()
        leaves.append(_sha256(b"\x00" + data).digest())
        entries.append((seq, *prepared.values, recorded_at, prev, hexed))
        add_subjects(
            (seq, position, subject, set_id)
            for position, (subject, set_id) in enumerate(prepared.subjects)
        )
        prev = hexed
    return Linked(entries, subjects, seq, prev, leaves)


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


# ---- reading ------------------------------------------------------------------------------


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
    return head + _enc_all(parts)


#: Values in the entry bytes after the tag: prev_hash, seq, recorded_at, 17 entry columns.
_ENTRY_VALUES = 20


def decode_entry(data: bytes) -> StoredEntry:
    """The entry whose canonical bytes are ``data`` (its ``hash`` computed from them).

    ``ValueError`` unless ``data`` is exactly such an encoding (re-encoding must give it back).
    """
    data = bytes(data)
    if not data.startswith(ENTRY_TAG):
        raise ValueError("not a KP2 entry encoding")
    values, _ = _dec_values(data, len(ENTRY_TAG))
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


# ---- verification ---------------------------------------------------------------------------


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
