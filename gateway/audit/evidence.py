"""Proofs in the data-subject report, and checking a report offline (no database).

``audit report --json`` adds to every access the evidence that it is in the log:

``proof``: ``leaf_index`` (entry seq − 1), ``entry`` (base64 of the leaf data: the entry's
canonical bytes), ``subject_rows`` (the entry's ``[subject pseudonym or null, decision set id]``
rows, in order: they hash to the entry's ``subjects_hash``), ``decision_sets`` (base64 of
the encodings of this subject's decision sets in that entry: each hashes to its id) and
``inclusion`` (the RFC 6962 audit path, base64 hashes, leaf side first) against the
report's checkpoint.

The report's ``log`` object holds ``checkpoint``: a C2SP signed note (the log's signature and
any witness cosignatures), and ``report_signature``: a signed note by the log key over the
SHA-256 of the report's canonical JSON (everything but ``report_signature``), so no field of
the report (also ``generated_at``) can change unnoticed.

:func:`check_report` verifies all of that with the log's public key only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.audit.encoding import decision_set_id, decode_decisions, subjects_hash
from gateway.audit.entries import StoredEntry, decode_entry, entry_bytes
from gateway.audit.merkle import ProofError, leaf_hash, verify_inclusion
from gateway.audit.model import Decision, FieldDecision
from gateway.audit.note import (
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    open_checkpoint,
    parse_note,
    sign_note,
    verify_cosignature,
    verify_note,
)
from gateway.audit.report import SubjectReport
from gateway.audit.store import AuditStore

REPORT_TAG = "ketenpoort-report/v1"


class ReportError(ValueError):
    """The report does not verify; the message says where."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ReportError(f"{where}: not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ReportError(f"{where}: not valid base64") from exc
    if _b64(raw) != text:
        raise ReportError(f"{where}: not canonical base64")
    return raw


def access_proof(
    entry: StoredEntry,
    rows: Sequence[tuple[str | None, str]],
    set_encodings: Sequence[bytes],
    inclusion: Sequence[bytes],
) -> dict[str, Any]:
    """The ``proof`` object of one access (see the module docstring)."""
    return {
        "leaf_index": entry.seq - 1,
        "entry": _b64(entry_bytes(entry)),
        "subject_rows": [[s, set_id] for s, set_id in rows],
        "decision_sets": [_b64(e) for e in set_encodings],
        "inclusion": [_b64(h) for h in inclusion],
    }


def canonical(report: Mapping[str, Any]) -> bytes:
    """The bytes the report signature covers: sorted-key compact JSON without the signature."""
    body = dict(report)
    log = dict(body.get("log") or {})
    log.pop("report_signature", None)
    body["log"] = log
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _signature_text(origin: str, digest: str) -> str:
    return f"{REPORT_TAG}\n{origin}\n{digest}\n"


def sign_report(report: dict[str, Any], signer: Signer) -> None:
    """Add ``log.report_signature`` (in place)."""
    digest = hashlib.sha256(canonical(report)).hexdigest()
    report["log"]["report_signature"] = sign_note(
        _signature_text(signer.name, digest), signer
    ).render()


def _grouped(
    decisions: Sequence[FieldDecision],
) -> tuple[list[str], list[list[str]], list[list[str]]]:
    given: list[str] = []
    refused: list[list[str]] = []
    failed: list[list[str]] = []
    for d in decisions:
        name = d.path or d.coordinate
        if d.decision is Decision.GIVEN:
            if name not in given:
                given.append(name)
        elif d.decision is Decision.REFUSED:
            refused.append([name, d.reason])
        else:
            failed.append([name, d.reason])
    return given, refused, failed


def _check_access(n: int, access: Any, subject: str, checkpoint: Checkpoint) -> None:
    where = f"access {n}"
    if not isinstance(access, dict) or not isinstance(access.get("proof"), dict):
        raise ReportError(f"{where}: no proof")
    proof = access["proof"]
    if set(proof) != {"leaf_index", "entry", "subject_rows", "decision_sets", "inclusion"}:
        raise ReportError(f"{where}: the proof's fields are not the documented ones")
    index = proof["leaf_index"]
    if type(index) is not int:
        raise ReportError(f"{where}: leaf_index is not an integer")
    data = _unb64(proof["entry"], f"{where} entry")
    path = (
        [_unb64(h, f"{where} inclusion") for h in proof["inclusion"]]
        if isinstance(proof["inclusion"], list)
        else None
    )
    if path is None:
        raise ReportError(f"{where}: inclusion is not a list")
    try:
        verify_inclusion(index, checkpoint.size, leaf_hash(data), path, checkpoint.root)
    except ProofError as exc:
        raise ReportError(f"{where}: not in the signed log ({exc})") from exc
    try:
        entry = decode_entry(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{where}: the entry bytes are not a KP2 entry ({exc})") from exc
    if entry.seq != index + 1:
        raise ReportError(f"{where}: the entry's seq does not match its leaf index")
    rows_raw = proof["subject_rows"]
    if not isinstance(rows_raw, list) or not all(
        isinstance(r, list)
        and len(r) == 2
        and isinstance(r[1], str)
        and (r[0] is None or isinstance(r[0], str))
        for r in rows_raw
    ):
        raise ReportError(f"{where}: subject_rows malformed")
    rows = [(r[0], r[1]) for r in rows_raw]
    if subjects_hash(rows) != entry.subjects_hash:
        raise ReportError(f"{where}: the subject rows are not the entry's")
    mine = [set_id for s, set_id in rows if s == subject]
    encodings = proof["decision_sets"]
    if not mine or not isinstance(encodings, list) or len(encodings) != len(mine):
        raise ReportError(f"{where}: the entry does not name this subject as the proof says")
    decisions: list[FieldDecision] = []
    for k, (text, set_id) in enumerate(zip(encodings, mine, strict=True)):
        encoding = _unb64(text, f"{where} decision_sets[{k}]")
        if decision_set_id(encoding) != set_id:
            raise ReportError(f"{where}: decision set {k} is not the one the entry names")
        try:
            decisions.extend(decode_decisions(encoding))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReportError(f"{where}: decision set unreadable ({exc})") from exc
    given, refused, failed = _grouped(decisions)
    expected = {
        "when": entry.start_time.isoformat(),
        "organisation": entry.organisation,
        "organisation_oin": entry.organisation_oin,
        "officer": entry.officer,
        "purpose": entry.purpose,
        "legal_basis": entry.legal_basis,
        "processing_activity": entry.processing_activity_id,
        "trace_id": entry.trace_id,
        "given": given,
        "refused": [{"field": f, "reason": r} for f, r in refused],
        "failed": [{"field": f, "reason": r} for f, r in failed],
        "proof": proof,
    }
    if access != expected:
        wrong = sorted(k for k in set(expected) | set(access) if access.get(k) != expected.get(k))
        raise ReportError(f"{where}: {', '.join(wrong)} differ from what the log recorded")


def check_report(
    report: Any, log_key: Verifier, witnesses: Sequence[Verifier] = ()
) -> tuple[Checkpoint, int]:
    """Verify a report offline; returns its checkpoint and the number of accesses checked.

    Raises :class:`ReportError` naming the first thing that does not verify.
    """
    if not isinstance(report, dict) or not isinstance(report.get("log"), dict):
        raise ReportError("not a Ketenpoort access report with proofs (no 'log' object)")
    log = report["log"]
    try:
        checkpoint, note = open_checkpoint(str(log.get("checkpoint", "")), log_key)
        for witness in witnesses:
            verify_cosignature(note, witness)
        signature = parse_note(str(log.get("report_signature", "")))
        verify_note(signature, log_key)
    except NoteError as exc:
        raise ReportError(f"checkpoint or report signature: {exc}") from exc
    digest = hashlib.sha256(canonical(report)).hexdigest()
    if signature.text != _signature_text(log_key.name, digest):
        raise ReportError("the report was changed after it was signed")
    subject = report.get("subject")
    accesses = report.get("accesses")
    if not isinstance(subject, str) or not isinstance(accesses, list):
        raise ReportError("the report has no subject or no accesses list")
    if report.get("access_count") != len(accesses):
        raise ReportError("access_count does not match the accesses listed")
    for n, access in enumerate(accesses, 1):
        _check_access(n, access, subject, checkpoint)
    return checkpoint, len(accesses)


async def report_with_proofs(
    store: AuditStore,
    report: SubjectReport,
    note: Note,
    checkpoint: Checkpoint,
    signer: Signer,
) -> dict[str, Any]:
    """The report's JSON form with a proof per access against ``checkpoint`` (whose ``note``
    is signed, maybe cosigned), signed as a whole with the log key."""
    data = report.to_dict()
    seqs = [a.seq for a in report.accesses]
    if any(not 0 < seq <= checkpoint.size for seq in seqs):
        raise ValueError("the checkpoint does not cover every access of the report")
    read = await store.entries(seqs)
    found = read.by_seq()
    tree = store.tree()
    for shown, access in zip(data["accesses"], report.accesses, strict=True):
        if access.seq not in found:
            raise ValueError(f"entry {access.seq} of the report cannot be read for its proof")
        entry, rows = found[access.seq]
        encodings = [read.sets[set_id] for s, set_id in rows if s == report.subject]
        path = await tree.inclusion(access.seq - 1, checkpoint.size)
        shown["proof"] = access_proof(entry, rows, encodings, path)
    data["log"] = {"origin": checkpoint.origin, "checkpoint": note.render()}
    sign_report(data, signer)
    return data


def best_checkpoint(
    candidates: Sequence[Note], log_key: Verifier, needed: int
) -> tuple[Note, Checkpoint] | None:
    """The largest checkpoint among ``candidates`` that the log signed, that carries at least
    one other signature (a cosignature) and covers ``needed`` entries; ``None`` if none."""
    best: tuple[Note, Checkpoint] | None = None
    for note in candidates:
        try:
            checkpoint, _ = open_checkpoint(note.render(), log_key)
        except NoteError:
            continue
        cosigned = any(s.name != log_key.name for s in note.signatures)
        if (
            cosigned
            and checkpoint.size >= needed
            and (best is None or checkpoint.size > best[1].size)
        ):
            best = (note, checkpoint)
    return best
