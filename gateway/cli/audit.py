"""``ketenpoort audit``: search the trail, report to a data subject, verify, purge.

Reading the trail is processing of personal data too, so every search and report is itself
committed to the trail before its result is shown; if that record cannot be written, nothing is
shown (:mod:`gateway.cli.audit_support` holds the options, parsing and recording these commands
share; :mod:`gateway.cli.audit_log` the Merkle log's commands).

Exit codes: 0 success; 1 the store failed or the chain is broken; 2 bad input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.audit.merkle import ProofError
from gateway.audit.model import AuditQuery
from gateway.audit.note import NoteError
from gateway.audit.report import subject_report
from gateway.audit.store import AuditStore
from gateway.cli import audit_log
from gateway.cli.audit_support import (
    ActorOpt,
    BadInputError,
    JsonOpt,
    OfficerOpt,
    StateOpt,
    StoreOpt,
    acting_officer,
    cli_context,
    fail,
    parse_duration,
    parse_time,
    pseudonym_of,
    record_line,
    record_to_dict,
    record_use,
    recorded_search,
    resolve_paths,
    run_on_store,
)

app = typer.Typer(
    help="The accountability trail: search, data-subject report, verify, retention purge.",
    no_args_is_help=True,
    add_completion=False,
)


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
        url, state_dir = resolve_paths(store, state)
        me = acting_officer(actor)
        subject = pseudonym_of(vnummer, state_dir) if vnummer is not None else None
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
        fail(str(exc), 2)

    records = recorded_search(
        url, query, officer=me, coordinate="Audit.search", subject=subject, started=started
    )
    if as_json:
        typer.echo(json.dumps([record_to_dict(r) for r in records], indent=2))
        return
    for r in records:
        typer.echo(record_line(r))
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
        url, state_dir = resolve_paths(store, state)
        me = acting_officer(officer)
        subject = pseudonym_of(vnummer, state_dir)
        settings = audit_log.settings_for(state_dir)
    except (BadInputError, audit_log.LogInputError) as exc:
        fail(str(exc), 2)

    async def action(s: AuditStore) -> Any:
        result = await subject_report(s, subject)
        await record_use(s, officer=me, coordinate="Audit.report", subject=subject, started=started)
        if as_json:
            try:
                return await audit_log.proofs_for(s, result, settings, cosigned)
            except (audit_log.LogInputError, NoteError, ProofError) as exc:
                raise BadInputError(f"report proofs: {exc}") from exc
        return result

    result = run_on_store(url, action)
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
        url, state_dir = resolve_paths(store, state)
        if checkpoint is not None:
            key = audit_log.log_key(pubkey, state_dir)
            checkpoints = audit_log.read_checkpoints(checkpoint, key)
    except (BadInputError, audit_log.LogInputError) as exc:
        fail(str(exc), 2)
    if checkpoint is not None:

        async def check(s: AuditStore) -> Any:
            return await s.check_log(checkpoints)

        audit_log.print_log_check(run_on_store(url, check))
        return

    async def action(s: AuditStore) -> Any:
        return await s.verify()

    result = run_on_store(url, action)
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
        url, state_dir = resolve_paths(store, state)
        me = acting_officer(officer)
        age = parse_duration(older_than) if older_than is not None else None
        retention = audit_log.retention_of(audit_log.settings_for(state_dir))
    except (BadInputError, audit_log.LogInputError) as exc:
        fail(str(exc), 2)
    question = (
        f"Delete audit records older than {age}?"
        if age is not None
        else "Remove the content of audit records past their purpose's retention?"
    )
    if not yes and not typer.confirm(question, default=False):
        fail("purge cancelled", 1)
    context = cli_context(me, started)

    async def action(s: AuditStore) -> int:
        if age is None:
            return await s.purge_expired(retention, context)
        return await s.purge(age, context, protect=retention)

    deleted = run_on_store(url, action)
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
        url, _ = resolve_paths(store, state)
        me = acting_officer(actor)
        query = AuditQuery(since=parse_time(since, started), limit=limit)
    except BadInputError as exc:
        fail(str(exc), 2)

    records = recorded_search(
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
