"""The audit log's command-line side: verify against checkpoints, report proofs, check a
report offline, and the witness (docs/audit-log.md).

Exit codes as in :mod:`gateway.cli.audit`: 0 success; 1 something does not verify (or the
store failed); 2 bad input.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer

from gateway.audit.checkpoints import (
    PUBLIC_FILE,
    iter_notes,
    load_signer,
    load_verifier,
    publishers_for,
    signed_checkpoints,
)
from gateway.audit.evidence import ReportError, best_checkpoint, check_report, report_with_proofs
from gateway.audit.logcheck import LogCheck
from gateway.audit.note import Checkpoint, Note, NoteError, Verifier
from gateway.audit.remote_log import RemoteLog
from gateway.audit.report import SubjectReport
from gateway.audit.store import AuditStore
from gateway.audit.witness import (
    WitnessAccessError,
    WitnessRefusal,
    WitnessSetupError,
    load_or_create_witness_key,
    pinned_log_key,
    witness_once,
)
from gateway.config import ConfigError, Settings


class LogInputError(Exception):
    """A bad file, key or option: one line on stderr, exit 2."""


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_for(state: Path | None) -> Settings:
    """``Settings.from_env()`` with ``--state`` applied."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise LogInputError(f"configuration: {exc}") from exc
    return settings.with_(state_dir=state) if state is not None else settings


def retention_of(settings: Settings) -> dict[str, dt.timedelta]:
    """Each purpose's retention (``bewaartermijn_dagen``) from the policy in ``settings``."""
    from gateway.assembly.policy_file import load_policy
    from gateway.cli.policy import gateway_coordinates
    from gateway.policy.model import PolicyError

    try:
        policy = load_policy(settings.policy, gateway_coordinates())
    except (PolicyError, OSError) as exc:
        raise LogInputError(f"policy: {exc}") from exc
    return {pid: dt.timedelta(days=p.retention_days) for pid, p in policy.purposes.items()}


def log_key(pubkey: str | None, state_dir: Path) -> Verifier:
    """The log's verifier key: ``--pubkey`` (text or file), else ``<state>/checkpoint.pub``."""
    source: str | Path = pubkey if pubkey is not None else state_dir / PUBLIC_FILE
    if pubkey is None and not (state_dir / PUBLIC_FILE).exists():
        raise LogInputError(
            f"no log key: pass --pubkey, or use the state directory {state_dir} that holds "
            f"{PUBLIC_FILE}"
        )
    try:
        return load_verifier(source)
    except (NoteError, OSError, UnicodeDecodeError) as exc:
        raise LogInputError(f"log key {source}: {exc}") from exc


def read_checkpoints(path: Path, key: Verifier) -> list[Checkpoint]:
    """Every checkpoint of a checkpoint file, each signature verified (exit 1 if one fails)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LogInputError(f"cannot read checkpoint file {path}: {exc}") from exc
    try:
        found = signed_checkpoints(text, key)
    except NoteError as exc:
        _fail(f"{path}: {exc}", 1)
    if not found:
        raise LogInputError(f"{path} holds no checkpoint")
    return found


def print_log_check(result: LogCheck) -> None:
    """OK on stdout, or BROKEN naming the leaf or size on stderr and exit 1."""
    if result.ok:
        typer.echo(f"OK: {result.detail}")
        return
    typer.echo(f"BROKEN: {result.detail}", err=True)
    raise typer.Exit(1)


def _cosigned_notes(path: Path) -> list[Note]:
    try:
        return list(iter_notes(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        raise LogInputError(f"cannot read cosigned checkpoints {path}: {exc}") from exc


async def proofs_for(
    store: AuditStore,
    report: SubjectReport,
    settings: Settings,
    cosigned: Path | None,
) -> dict[str, Any]:
    """The report with proofs: against the newest cosigned checkpoint of ``cosigned`` that
    covers it, else against a checkpoint signed now (and published like the gateway's)."""
    signer = load_signer(settings.state_dir, settings.log_origin, create=True)
    needed = max((a.seq for a in report.accesses), default=0)
    chosen: tuple[Note, Checkpoint] | None = None
    if cosigned is not None:
        chosen = best_checkpoint(_cosigned_notes(cosigned), signer.verifier, needed)
    if chosen is None:
        from gateway.audit.checkpoints import Checkpointer

        signing = Checkpointer(
            signer,
            store.tree().head,
            publishers_for(settings.checkpoints, settings.state_dir),
            interval=3600,
            every=1,
        )
        chosen = await signing.checkpoint(force=True)
    note, checkpoint = chosen
    return await report_with_proofs(store, report, note, checkpoint, signer)


def check_report_command(report: Path, pubkey: str, witness_keys: list[str]) -> None:
    """``audit check-report``: verify a report with proofs offline (no database)."""
    try:
        key = load_verifier(pubkey)
        witnesses = [load_verifier(w) for w in witness_keys]
    except (NoteError, OSError, UnicodeDecodeError) as exc:
        _fail(f"key: {exc}", 2)
    try:
        data = json.loads(report.read_bytes().decode("utf-8"))
    except OSError as exc:
        _fail(f"cannot read {report}: {exc}", 2)
    except (UnicodeDecodeError, ValueError) as exc:
        _fail(f"{report} is not a valid JSON report (altered?): {exc}", 1)
    try:
        checkpoint, count = check_report(data, key, witnesses)
    except ReportError as exc:
        _fail(f"report does not verify: {exc}", 1)
    by = f" and cosigned by {', '.join(w.name for w in witnesses)}" if witnesses else ""
    typer.echo(
        f"OK: {count} access(es) proven in the log {checkpoint.origin} at size "
        f"{checkpoint.size} (signed{by})"
    )


def witness_token(
    check_entries: bool, token_env: str | None, token_file: Path | None
) -> str | None:
    """The bearer token ``--check-entries`` reads the log's pages with (exit 2 when missing or
    unusable). Never an option value of its own: a command line is visible to every user of
    the host and stays in shell histories."""
    given = [o for o, v in (("--token-env", token_env), ("--token-file", token_file)) if v]
    if not check_entries:
        if given:
            _fail(f"{given[0]} goes with --check-entries", 2)
        return None
    if len(given) != 1:
        _fail(
            "--check-entries needs the bearer token of a reader of the trail: give one of "
            "--token-env VAR or --token-file FILE",
            2,
        )
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            _fail(f"--token-env: the environment variable {token_env} is empty or not set", 2)
    else:
        assert token_file is not None
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"--token-file: cannot read {token_file}: {exc}", 2)
    # A header value: printable ASCII without spaces (a JWT is base64url and dots).
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        _fail("the bearer token is empty or not a token (printable ASCII, no spaces)", 2)
    return token


def witness_command(
    log: str, key: Path, state: Path, given_log_key: str | None, name: str, token: str | None
) -> None:
    """``ketenpoort witness``: one round of fetch, verify, check consistency, (with a token:
    check the entries over HTTP,) cosign."""
    try:
        me = load_or_create_witness_key(key, name)
        given = load_verifier(given_log_key) if given_log_key is not None else None
        log_verifier = pinned_log_key(state, given)
    except (WitnessSetupError, NoteError, OSError, UnicodeDecodeError) as exc:
        _fail(str(exc), 2)
    if not log.startswith(("http://", "https://")):
        _fail("--log must be an http(s) URL of the gateway", 2)

    async def run() -> Any:
        async with httpx.AsyncClient(timeout=30.0) as client:
            entries = RemoteLog(client, log, token) if token is not None else None
            return await witness_once(
                client, log, log_verifier, me, state, int(time.time()), entries=entries
            )

    try:
        result = asyncio.run(run())
    except WitnessRefusal as exc:
        _fail(f"REFUSED: {exc}", 1)
    except WitnessAccessError as exc:
        _fail(str(exc), 2)
    except WitnessSetupError as exc:
        _fail(str(exc), 1)
    since = (
        f" (consistent with size {result.previous_size})"
        if result.previous_size is not None
        else " (first checkpoint seen)"
    )
    checked = " (entries checked)" if token is not None else ""
    typer.echo(
        f"cosigned {result.checkpoint.origin} at size {result.checkpoint.size}{since}{checked}"
    )
    typer.echo(f"witness key: {me.verifier.vkey()}", err=True)
