"""A witness of the audit log: cosigns a checkpoint only when it extends what it saw before.

The witness is run by a party without access to the audit database (the FG, the Autoriteit
Persoonsgegevens, a partner). Each run fetches the log's latest signed checkpoint, verifies
the log's signature, fetches a consistency proof from the last checkpoint it cosigned, and
cosigns (C2SP tlog-cosignature/v1) only when the proof holds. A checkpoint that is not an
extension — a rewritten, truncated or restored history — is refused, naming the size.

With ``entries`` (``--check-entries``) it also reads the stored leaves and entries up to the
checkpoint's size over HTTP (:mod:`gateway.audit.remote_log`, a reader's bearer token) and runs
the check of ``audit verify --checkpoint`` (:func:`~gateway.audit.logcheck.check_log`) against
every checkpoint it cosigned and the new one, like a Certificate Transparency monitor: then a
change that leaves the stored tree alone (an altered field, deleted entries) is refused too,
naming the first bad leaf.

State (``--state DIR``): ``log.vkey`` (the log's verifier key, pinned on first use),
``latest.checkpoint`` (the last cosigned checkpoint, with the log's and the witness's
signatures) and ``cosigned.txt`` (every checkpoint it cosigned, appended).
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.audit.checkpoints import signed_checkpoints
from gateway.audit.log_pages import PageError
from gateway.audit.logcheck import LogCheck, check_log
from gateway.audit.merkle import ProofError, verify_consistency
from gateway.audit.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
    open_checkpoint,
    parse_note,
    verify_cosignature,
)
from gateway.audit.remote_log import PagesRefused, RemoteLog

CHECKPOINT_PATH = "/.well-known/ketenpoort/checkpoint"
CONSISTENCY_PATH = "/.well-known/ketenpoort/proof/consistency"
LOG_KEY_FILE = "log.vkey"
LATEST_FILE = "latest.checkpoint"
COSIGNED_FILE = "cosigned.txt"


class WitnessRefusal(Exception):
    """The log's checkpoint is not an extension of what this witness cosigned, or (checking
    entries) the stored entries do not match it: ``size`` or ``leaf`` names where (exit 1)."""

    def __init__(self, message: str, size: int | None, leaf: int | None = None) -> None:
        super().__init__(message)
        self.size = size
        self.leaf = leaf


class WitnessSetupError(Exception):
    """Keys, state or the log cannot be used as given (exit 2 for input, 1 when unreachable)."""


class WitnessAccessError(WitnessSetupError):
    """The log refused the witness's token for its content pages (exit 2: the token given)."""


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A checkpoint the witness cosigned, and the size it extended from (``None``: first)."""

    note: Note
    checkpoint: Checkpoint
    previous_size: int | None


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_or_create_witness_key(path: Path, name: str) -> Signer:
    """The witness's cosigning key (type 0x04) at ``path``; created (0600) if absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, Signer.generate(name, COSIGNATURE_V1).skey() + "\n", 0o600)
    try:
        signer = Signer.parse(path.read_text(encoding="ascii"))
    except (NoteError, UnicodeDecodeError) as exc:
        raise WitnessSetupError(f"{path}: not a witness key ({exc})") from exc
    if signer.sig_type != COSIGNATURE_V1:
        raise WitnessSetupError(f"{path}: not a cosigning key (signature type 0x04)")
    return signer


def pinned_log_key(state: Path, given: Verifier | None) -> Verifier:
    """The log's key: pinned in the state on first use; a different one later is refused."""
    path = state / LOG_KEY_FILE
    pinned = Verifier.parse(path.read_text(encoding="ascii")) if path.exists() else None
    if pinned is not None and given is not None and pinned != given:
        raise WitnessSetupError(
            f"the log key given differs from the one pinned in {path}: a witness follows one log"
        )
    key = pinned or given
    if key is None:
        raise WitnessSetupError(f"no log key: pass --log-key the first time (pinned in {path})")
    if pinned is None:
        state.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, key.vkey() + "\n")
    return key


def _last_cosigned(state: Path, log_key: Verifier, me: Signer) -> tuple[Checkpoint, Note] | None:
    path = state / LATEST_FILE
    if not path.exists():
        return None
    try:
        checkpoint, note = open_checkpoint(path.read_text(encoding="utf-8"), log_key)
        verify_cosignature(note, me.verifier)
    except NoteError as exc:
        raise WitnessSetupError(f"{path} is damaged ({exc}); the witness will not guess") from exc
    return checkpoint, note


def _b64_list(value: Any) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProofError("the log's proof is not a list of base64 hashes")
    try:
        return [base64.b64decode(v, validate=True) for v in value]
    except ValueError as exc:
        raise ProofError("the log's proof is not valid base64") from exc


async def _fetch_checkpoint(
    client: httpx.AsyncClient, base: str, log_key: Verifier
) -> tuple[Checkpoint, Note]:
    """The log's latest checkpoint, its signature verified (a refusal when it does not)."""
    try:
        response = await client.get(base + CHECKPOINT_PATH)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise WitnessSetupError(f"cannot fetch the checkpoint from {base}: {exc}") from exc
    try:
        return open_checkpoint(response.text, log_key)
    except NoteError as exc:
        raise WitnessRefusal(f"the log's checkpoint does not verify: {exc}", None) from exc


async def _check_extension(
    client: httpx.AsyncClient, base: str, old: Checkpoint | None, checkpoint: Checkpoint
) -> None:
    """Refuse ``checkpoint`` unless it extends ``old`` (the last one cosigned; None: first)."""
    if old is None:
        return
    if checkpoint.size < old.size:
        raise WitnessRefusal(
            f"inconsistent size {checkpoint.size}: the log now signs {checkpoint.size} "
            f"entries but this witness cosigned {old.size} (entries removed or an older "
            "copy restored)",
            checkpoint.size,
        )
    if old.size == 0:
        return
    proof: list[bytes] = []
    if checkpoint.size != old.size:
        try:
            got = await client.get(
                base + CONSISTENCY_PATH, params={"from": old.size, "to": checkpoint.size}
            )
            got.raise_for_status()
            proof = _b64_list(got.json().get("consistency"))
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise WitnessRefusal(
                f"inconsistent size {checkpoint.size}: the log gave no usable "
                f"consistency proof from {old.size} ({exc})",
                checkpoint.size,
            ) from exc
    try:
        verify_consistency(old.size, checkpoint.size, old.root, checkpoint.root, proof)
    except ProofError as exc:
        raise WitnessRefusal(
            f"inconsistent size {checkpoint.size}: not an extension of the checkpoint "
            f"of size {old.size} this witness cosigned ({exc})",
            checkpoint.size,
        ) from exc


def _cosigned_checkpoints(state: Path, log_key: Verifier) -> list[Checkpoint]:
    """Every checkpoint this witness cosigned (``cosigned.txt``), signatures verified."""
    path = state / COSIGNED_FILE
    if not path.exists():
        return []
    try:
        return signed_checkpoints(path.read_text(encoding="utf-8"), log_key)
    except (NoteError, OSError, UnicodeDecodeError) as exc:
        raise WitnessSetupError(f"{path} is damaged ({exc}); the witness will not guess") from exc


async def _check_log_over_http(
    remote: RemoteLog, base: str, size: int, checkpoints: list[Checkpoint]
) -> LogCheck:
    """``check_log`` over the log's pages up to ``size``; page errors become setup errors
    (the token: :class:`WitnessAccessError`) or refusals (a malformed page)."""
    try:
        return await check_log(await remote.reads(size), checkpoints)
    except PagesRefused as exc:
        if exc.status in (401, 403):
            raise WitnessAccessError(
                f"the log refused the token for its pages ({exc}): --check-entries needs the "
                "token of a reader of the trail (VERANTWOORDING)"
            ) from exc
        raise WitnessSetupError(f"the log cannot serve its pages now ({exc})") from exc
    except PageError as exc:
        raise WitnessRefusal(f"the log's pages are malformed: {exc}", None) from exc
    except httpx.HTTPError as exc:
        raise WitnessSetupError(f"cannot read the log's pages from {base}: {exc}") from exc


async def _check_entries(
    client: httpx.AsyncClient,
    base: str,
    log_key: Verifier,
    state: Path,
    remote: RemoteLog,
    old: Checkpoint | None,
    fetched: tuple[Checkpoint, Note],
) -> tuple[Checkpoint, Note]:
    """The checkpoint to cosign once the stored leaves and entries up to its size pass
    ``check_log`` against it and every checkpoint cosigned before; a refusal naming the first
    bad leaf or the smallest inconsistent size otherwise.

    A purge recorded after the checkpoint removes entries the checkpoint covers, and its own
    entry lies beyond the size read: such a round fails. If the log has signed a newer
    checkpoint by then (one covering the purge), the round is repeated once with that one.
    """
    cosigned = _cosigned_checkpoints(state, log_key)
    checkpoint = fetched[0]
    result = await _check_log_over_http(remote, base, checkpoint.size, [*cosigned, checkpoint])
    if result.ok:
        return fetched
    newer, newer_note = await _fetch_checkpoint(client, base, log_key)
    if newer.size > checkpoint.size:
        await _check_extension(client, base, old, newer)
        again = [*cosigned, checkpoint, newer]
        result = await _check_log_over_http(remote, base, newer.size, again)
        if result.ok:
            return newer, newer_note
    raise WitnessRefusal(result.detail, result.bad_size, result.bad_leaf)


async def witness_once(
    client: httpx.AsyncClient,
    log_url: str,
    log_key: Verifier,
    me: Signer,
    state: Path,
    now: int,
    *,
    entries: RemoteLog | None = None,
) -> Cosigned:
    """One round: fetch, verify, check consistency, (with ``entries``) check the stored
    entries like ``audit verify --checkpoint``, cosign, store. Raises
    :class:`WitnessRefusal` for a checkpoint that does not extend the last cosigned one or
    whose entries do not match."""
    base = log_url.rstrip("/")
    fetched = await _fetch_checkpoint(client, base, log_key)
    last = _last_cosigned(state, log_key, me)
    old = last[0] if last is not None else None
    await _check_extension(client, base, old, fetched[0])
    if entries is not None:
        fetched = await _check_entries(client, base, log_key, state, entries, old, fetched)
    checkpoint, note = fetched
    rendered = note.with_signature(cosign(note, me, now)).render()
    _store_cosigned(state, rendered)
    return Cosigned(parse_note(rendered), checkpoint, old.size if old is not None else None)


def _store_cosigned(state: Path, rendered: str) -> None:
    """Append to ``cosigned.txt`` and replace ``latest.checkpoint`` (both fsynced)."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / COSIGNED_FILE).open("a", encoding="utf-8") as handle:
        handle.write(rendered + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _write_atomic(state / LATEST_FILE, rendered)
