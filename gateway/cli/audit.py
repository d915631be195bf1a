"""``ketenpoort audit``: search the trail, report to a data subject, verify, purge.

Reading the trail is processing of personal data too, so every search and report is itself
committed to the trail (organisation ``KETENPOORT``, purpose ``VERANTWOORDING``) before its
result is shown; if that record cannot be written, nothing is shown. A V-nummer given on the
command line is turned into its pseudonym at once with the state directory's key; the raw
number is never printed or stored.

Exit codes: 0 success; 1 the store failed or the chain is broken; 2 bad input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from gateway.audit.merkle import ProofError
from gateway.audit.model import AccessContext, AuditQuery, AuditRecord
from gateway.audit.note import NoteError
from gateway.audit.reading import READING_PURPOSE, record_reading
from gateway.audit.report import subject_report
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.audit.stores import open_store
from gateway.cli import audit_log
from gateway.config import ConfigError, Settings
from gateway.observability.pseudonym import KEY_FILE, Pseudonymizer, load_or_create_key

app = typer.Typer(
    help="The accountability trail: search, data-subject report, verify, retention purge.",
    no_args_is_help=True,
    add_completion=False,
)

KETENPOORT_OIN = "00000000000000000000"
AUDIT_PURPOSE = READING_PURPOSE
AUDIT_LEGAL_BASIS = "AVG art. 5 lid 2 en art. 24 (verantwoordingsplicht)"
#: Reason recorded on the CLI's own records (the "rule" that allowed them).
CLI_REASON = "AUDIT_CLI"

_VNUMMER = re.compile(r"\d{10}")
_DURATION = re.compile(r"(\d+)\s*([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

T = TypeVar("T")


class BadInputError(Exception):
    """A user error: one line on stderr, exit 2."""


# ---- settings ---------------------------------------------------------------------------


def _resolve(store: str | None, state: Path | None) -> tuple[str, Path]:
    """The audit store URL and state directory: options, else ``Settings.from_env()``.

    ``--state`` without a store URL (option or env) moves the default SQLite store with it.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise BadInputError(f"configuration: {exc}") from exc
    if state is not None:
        settings = settings.with_(state_dir=state)
    if store is not None:
        settings = settings.with_(audit_store=store)
    return settings.audit_store_url, settings.state_dir


StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Audit store URL (env KETENPOORT_AUDIT_STORE)."),
]
StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="State directory with the pseudonym key (env KETENPOORT_STATE)."),
]
OfficerOpt = Annotated[
    str | None,
    typer.Option("--officer", "--as", help="Who is doing this (recorded); default: $USER."),
]
#: On ``search`` ``--officer`` is a filter, so the actor is only ``--as`` there.
ActorOpt = Annotated[
    str | None,
    typer.Option("--as", help="Who is searching (recorded); default: $USER."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


# ---- input parsing ----------------------------------------------------------------------


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` or a sum like ``1d12h``; positive."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact.replace(" ", ""):
        raise BadInputError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m")
    total = dt.timedelta()
    try:
        for number, unit in parts:
            total += dt.timedelta(**{_UNITS[unit]: int(number)})
    except OverflowError as exc:
        raise BadInputError(f"duration {text!r} is too large") from exc
    if total <= dt.timedelta(0):
        raise BadInputError("duration must be positive")
    return total


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """ISO 8601 date or date-time (UTC when no offset is given), or an age like ``7d``."""
    try:
        return now - parse_duration(text)
    except BadInputError:
        pass
    except OverflowError as exc:
        raise BadInputError(f"time {text!r} is out of range") from exc
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadInputError(
            f"invalid time {text!r}: use ISO 8601 (2025-01-31T12:00) or an age like 7d"
        ) from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _pseudonym(vnummer: str, state: Path) -> str:
    if not _VNUMMER.fullmatch(vnummer):
        # The value itself is not echoed: it may be a real (mistyped) V-nummer.
        raise BadInputError("a V-nummer is exactly 10 digits")
    if not (state / KEY_FILE).is_file():
        # A new key would give a pseudonym nobody was recorded under: an empty AVG art. 15
        # report from a misconfiguration. Refuse, naming where the key was looked for.
        raise BadInputError(
            f"the state directory {state} has no pseudonym key ({KEY_FILE}): point --state "
            "(or KETENPOORT_STATE) at the gateway's state directory; no key is created here"
        )
    return Pseudonymizer(load_or_create_key(state))(vnummer)


def _officer(option: str | None) -> str:
    officer = option or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not officer:
        raise BadInputError(
            "cannot tell who you are: pass --officer/--as (every use of the trail is recorded)"
        )
    return officer


# ---- running ----------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(url: str, action: Callable[[AuditStore], Awaitable[T]]) -> T:
    """Open the store, run ``action``, close; map errors to one line and an exit code."""

    async def main() -> T:
        store = open_store(url)
        try:
            await store.open()
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except BadInputError as exc:
        _fail(str(exc), 2)
    except ValueError as exc:
        _fail(str(exc), 2)
    except AuditUnavailable as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        _fail(f"audit store unavailable: {exc.message}{cause}", 1)
    except OSError as exc:
        _fail(f"audit store unavailable: {exc}", 1)


def _cli_context(officer: str, started: dt.datetime) -> AccessContext:
    """The request context of a use of the trail from this CLI (its own trace, no token)."""
    return AccessContext(
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        parent_span_id=None,
        start_time=started,
        organisation_oin=KETENPOORT_OIN,
        organisation="KETENPOORT",
        officer=officer,
        authenticated_as=officer,
        roles=(),
        purpose=AUDIT_PURPOSE,
        legal_basis=AUDIT_LEGAL_BASIS,
        processing_activity=None,
        policy_version="-",
    )


async def _record_use(
    store: AuditStore,
    *,
    officer: str,
    coordinate: str,
    subject: str | None,
    started: dt.datetime,
) -> None:
    """Commit the record of this use of the trail (before anything is shown)."""
    await record_reading(
        store,
        _cli_context(officer, started),
        coordinate=coordinate,
        reason=CLI_REASON,
        subjects=[subject] if subject is not None else [],
    )


def record_to_dict(record: AuditRecord) -> dict[str, Any]:
    """JSON-able form of a record."""
    out = dataclasses.asdict(record)
    for key in ("start_time", "end_time", "recorded_at"):
        out[key] = out[key].isoformat()
    out["roles"] = list(record.roles)
    out["decision"] = record.decision.value
    return out


def _line(r: AuditRecord) -> str:
    subject = f"subject={r.data_subject_id[:12]}…" if r.data_subject_id else "subject=-"
    # An officer named by an application token shows with the application that named it.
    who = r.officer if r.officer == r.authenticated_as else f"{r.officer} via {r.authenticated_as}"
    return (
        f"{r.seq:>8}  {r.start_time:%Y-%m-%d %H:%M:%S}Z  {r.organisation:<10} {who:<16} "
        f"{r.purpose or '-':<14} {r.decision.value:<7} {r.reason:<22} {r.path or r.coordinate}  "
        f"{subject}  trace={r.trace_id}"
    )


# ---- commands ---------------------------------------------------------------------------


def _recorded_search(
    url: str,
    query: AuditQuery,
    *,
    officer: str,
    coordinate: str,
    subject: str | None,
    started: dt.datetime,
) -> list[AuditRecord]:
    """Search the trail and record the search itself (viewing the log is processing too)."""

    async def action(s: AuditStore) -> list[AuditRecord]:
        found = await s.search(query)
        await _record_use(
            s, officer=officer, coordinate=coordinate, subject=subject, started=started
        )
        return found

    return _run(url, action)


@app.command()
def search(
    vnummer: Annotated[str | None, typer.Option("--vnummer", help="Data subject.")] = None,
    officer_filter: Annotated[
        str | None, typer.Option("--officer", help="Records of this officer.")
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Organisation id or OIN.")] = None,
    doelbinding: Annotated[str | None, typer.Option("--doelbinding", help="Purpose id.")] = None,
    trace_id: Annotated[str | None, typer.Option("--trace-id", help="32-hex trace id.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start time >= (ISO 8601 or e.g. 7d).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Start time < (ISO or 7d).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000)] = 1000,
    as_json: JsonOpt = False,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    state: StateOpt = None,
) -> None:
    """Search the trail (filters combine with AND); oldest first."""
    started = dt.datetime.now(dt.UTC)
    try:
        url, state_dir = _resolve(store, state)
        me = _officer(actor)
        subject = _pseudonym(vnummer, state_dir) if vnummer is not None else None
        query = AuditQuery(
            subject=subject,
            officer=officer_filter,
            organisation=org,
            purpose=doelbinding,
            trace_id=trace_id,
            since=parse_time(since, started) if since else None,
            until=parse_time(until, started) if until else None,
            limit=limit,
        )
    except BadInputError as exc:
        _fail(str(exc), 2)

    records = _recorded_search(
        url, query, officer=me, coordinate="Audit.search", subject=subject, started=started
    )
    if as_json:
        typer.echo(json.dumps([record_to_dict(r) for r in records], indent=2))
        return
    for r in records:
        typer.echo(_line(r))
    typer.echo(f"{len(records)} record(s)")


@app.command()
def report(
    vnummer: Annotated[str, typer.Option("--vnummer", help="The data subject's V-nummer.")],
    as_json: JsonOpt = False,
    cosigned: Annotated[
        Path | None,
        typer.Option(
            "--cosigned", help="A witness's cosigned checkpoints (prove against the newest)."
        ),
    ] = None,
    officer: OfficerOpt = None,
    store: StoreOpt = None,
    state: StateOpt = None,
) -> None:
    """Data-subject access report (AVG art. 15): who saw what of this person, and why.

    With --json every access carries an inclusion proof against a signed checkpoint
    (``audit check-report`` verifies it offline).
    """
    started = dt.datetime.now(dt.UTC)
    try:
        url, state_dir = _resolve(store, state)
        me = _officer(officer)
        subject = _pseudonym(vnummer, state_dir)
        settings = audit_log.settings_for(state_dir)
    except (BadInputError, audit_log.LogInputError) as exc:
        _fail(str(exc), 2)

    async def action(s: AuditStore) -> Any:
        result = await subject_report(s, subject)
        await _record_use(
            s, officer=me, coordinate="Audit.report", subject=subject, started=started
        )
        if as_json:
            try:
                return await audit_log.proofs_for(s, result, settings, cosigned)
            except (audit_log.LogInputError, NoteError, ProofError) as exc:
                raise BadInputError(f"report proofs: {exc}") from exc
        return result

    result = _run(url, action)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        typer.echo(result.to_markdown(), nl=False)


@app.command("check-report")
def check_report(
    report_file: Annotated[Path, typer.Argument(metavar="REPORT.json", help="A --json report.")],
    pubkey: Annotated[str, typer.Option("--pubkey", help="The log's verifier key (text or file).")],
    witness_key: Annotated[
        list[str] | None,
        typer.Option("--witness-key", help="Require this witness's cosignature (repeatable)."),
    ] = None,
) -> None:
    """Verify an access report's proofs offline: no database, only the log's public key."""
    audit_log.check_report_command(report_file, pubkey, witness_key or [])


@app.command()
def verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="Check the Merkle log against this file's signed checkpoints."
        ),
    ] = None,
    pubkey: Annotated[
        str | None,
        typer.Option("--pubkey", help="The log's verifier key (default <state>/checkpoint.pub)."),
    ] = None,
    store: StoreOpt = None,
    state: StateOpt = None,
) -> None:
    """Verify the hash chain; exit 1 naming the first broken entry (request) by its seq.

    With --checkpoint: verify every leaf and entry against published signed checkpoints;
    exit 1 naming the first bad leaf or the inconsistent size.
    """
    try:
        url, state_dir = _resolve(store, state)
        if checkpoint is not None:
            key = audit_log.log_key(pubkey, state_dir)
            checkpoints = audit_log.read_checkpoints(checkpoint, key)
    except (BadInputError, audit_log.LogInputError) as exc:
        _fail(str(exc), 2)
    if checkpoint is not None:

        async def check(s: AuditStore) -> Any:
            return await s.check_log(checkpoints)

        audit_log.print_log_check(_run(url, check))
        return

    async def action(s: AuditStore) -> Any:
        return await s.verify()

    result = _run(url, action)
    if result.ok:
        typer.echo(f"OK: {result.detail}")
        return
    where = (
        f"entry seq {result.first_broken_seq}" if result.first_broken_seq is not None else "head"
    )
    typer.echo(f"BROKEN at {where}: {result.detail} ({result.checked} entries checked)", err=True)
    raise typer.Exit(1)


@app.command()
def purge(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Manual: delete the oldest records older than this age (w d h m s); refused "
            "if that would remove a record younger than its purpose's retention.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    officer: OfficerOpt = None,
    store: StoreOpt = None,
    state: StateOpt = None,
) -> None:
    """Retention purge: remove the content of every record past its own purpose's
    bewaartermijn_dagen (the policy's); the leaf hashes stay, so the log still verifies. The
    purge is itself recorded."""
    started = dt.datetime.now(dt.UTC)
    try:
        url, state_dir = _resolve(store, state)
        me = _officer(officer)
        age = parse_duration(older_than) if older_than is not None else None
        retention = audit_log.retention_of(audit_log.settings_for(state_dir))
    except (BadInputError, audit_log.LogInputError) as exc:
        _fail(str(exc), 2)
    question = (
        f"Delete audit records older than {age}?"
        if age is not None
        else "Remove the content of audit records past their purpose's retention?"
    )
    if not yes and not typer.confirm(question, default=False):
        _fail("purge cancelled", 1)
    context = _cli_context(me, started)

    async def action(s: AuditStore) -> int:
        if age is None:
            return await s.purge_expired(retention, context)
        return await s.purge(age, context, protect=retention)

    deleted = _run(url, action)
    what = f"older than {age}" if age is not None else "past their purpose's retention"
    typer.echo(f"purged {deleted} record(s) {what}; the purge itself is recorded")


@app.command()
def anomalies(
    since: Annotated[
        str, typer.Option("--since", help="Window start (ISO 8601 or an age like 7d).")
    ] = "7d",
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000_000, help="Most records read.")
    ] = 1_000_000,
    as_json: JsonOpt = False,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    state: StateOpt = None,
) -> None:
    """Signals of bulk extraction in the window: unusual breadth, repeated cap refusals."""
    from gateway.audit.anomalies import find_anomalies, render_anomalies

    started = dt.datetime.now(dt.UTC)
    try:
        url, _ = _resolve(store, state)
        me = _officer(actor)
        query = AuditQuery(since=parse_time(since, started), limit=limit)
    except BadInputError as exc:
        _fail(str(exc), 2)

    records = _recorded_search(
        url, query, officer=me, coordinate="Audit.anomalies", subject=None, started=started
    )
    if len(records) >= limit:
        typer.echo(
            f"warning: read the oldest {limit} records of the window only; raise --limit or "
            "narrow --since",
            err=True,
        )
    found = find_anomalies(records)
    if as_json:
        rows = [{**dataclasses.asdict(a), "day": a.day.isoformat()} for a in found]
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(render_anomalies(found), nl=False)


def main() -> None:  # pragma: no cover - for `python -m gateway.cli.audit`
    """Run the audit CLI on its own."""
    app(prog_name="ketenpoort audit")


if __name__ == "__main__":  # pragma: no cover
    main()
