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
task (:func:`prepare`) and :func:`link` only builds each entry's bytes, once, and hashes them
twice: the chain hash and the Merkle leaf hash (``0x00`` prefixed; docs/audit-log.md).
Decision tuples are the plan's shared objects: :class:`DecisionSets` encodes each one once per
process, so a warm store hashes nothing per field.

Where the pieces live: the encodings and :class:`DecisionSets` in :mod:`gateway.audit.encoding`,
reading entries back (:class:`StoredEntry`, :func:`entry_bytes`) in :mod:`gateway.audit.entries`,
:class:`ChainWalker` and :func:`walk_chain` in :mod:`gateway.audit.verify`; this module prepares
and links batches, and is the storage backends' one import of the layout.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from gateway.audit.encoding import (
    ENTRY_TAG,
    SUBJECTS_TAG,
    DecisionSets,
    decode_decisions,
    enc,
    enc_all,
    ts,
)
from gateway.audit.entries import ENTRY_COLUMNS, SUBJECT_COLUMNS, StoredEntry, read_entry
from gateway.audit.model import AuditBatch
from gateway.audit.verify import ChainHead, VerifyResult, walk_chain

# The storage backends' interface to the layout: what a store needs to write, read and verify
# a chain, in one import. The pieces live in encoding, entries and verify; the rest of the
# gateway imports them from there.
__all__ = [
    "ENTRY_COLUMNS",
    "GENESIS_HASH",
    "SUBJECT_COLUMNS",
    "ChainHead",
    "DecisionSets",
    "Linked",
    "PreparedBatch",
    "StoredEntry",
    "VerifyResult",
    "decode_decisions",
    "link",
    "prepare",
    "read_entry",
    "ts",
    "walk_chain",
]

#: ``prev_hash`` of the first entry of a trail that was never purged.
GENESIS_HASH = "0" * 64

_PSEUDONYM = re.compile(r"[0-9a-f]{64}")

# One ``hashlib`` attribute look-up per call site costs more than the small hashes themselves.
_sha256 = hashlib.sha256


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
    body = enc_all(request_text) + enc(str(len(rows))) + enc(str(records)) + enc(hashed)
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
    rec_enc = enc(recorded_at_text)
    prev_prefix = ENTRY_TAG
    for prepared in batches:
        seq += 1
        data = prev_prefix + enc(prev) + enc(str(seq)) + rec_enc + prepared.body
        hexed = _sha256(data).hexdigest()
        leaves.append(_sha256(b"\x00" + data).digest())
        entries.append((seq, *prepared.values, recorded_at, prev, hexed))
        add_subjects(
            (seq, position, subject, set_id)
            for position, (subject, set_id) in enumerate(prepared.subjects)
        )
        prev = hexed
    return Linked(entries, subjects, seq, prev, leaves)
