"""What the ``ketenpoort audit`` commands share: options, input parsing, running against the
store, and recording the CLI's own use of the trail.

Reading the trail is processing of personal data too, so every search and report is itself
committed to the trail (organisation ``KETENPOORT``, purpose ``VERANTWOORDING``) before its
result is shown (:func:`record_use`, :func:`recorded_search`). A V-nummer given on the command
line is turned into its pseudonym at once with the state directory's key
(:func:`pseudonym_of`); the raw number is never printed or stored. Errors become one line on
stderr and an exit code (:func:`run_on_store`, :func:`fail`): 1 the store failed, 2 bad input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from gateway.audit.model import AccessContext, AuditQuery, AuditRecord
from gateway.audit.reading import READING_PURPOSE, record_reading
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.audit.stores import open_store
from gateway.config import ConfigError, Settings
from gateway.observability.pseudonym import KEY_FILE, Pseudonymizer, load_or_create_key

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


def resolve_paths(store: str | None, state: Path | None) -> tuple[str, Path]:
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


def pseudonym_of(vnummer: str, state: Path) -> str:
    """The pseudonym of a V-nummer under the state directory's key; never creates a key."""
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


def acting_officer(option: str | None) -> str:
    """Who is using the trail: the option, else $USER/$LOGNAME; refused when unknown."""
    officer = option or os.environ.get("USER") or os.environ.get("LOGNAME")
    if not officer:
        raise BadInputError(
            "cannot tell who you are: pass --officer/--as (every use of the trail is recorded)"
        )
    return officer


# ---- running ----------------------------------------------------------------------------


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run_on_store(url: str, action: Callable[[AuditStore], Awaitable[T]]) -> T:
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
        fail(str(exc), 2)
    except ValueError as exc:
        fail(str(exc), 2)
    except AuditUnavailable as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        fail(f"audit store unavailable: {exc.message}{cause}", 1)
    except OSError as exc:
        fail(f"audit store unavailable: {exc}", 1)


def cli_context(officer: str, started: dt.datetime) -> AccessContext:
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


async def record_use(
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
        cli_context(officer, started),
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


def record_line(r: AuditRecord) -> str:
    """One record as a line of ``audit search`` output (the subject shortened)."""
    subject = f"subject={r.data_subject_id[:12]}…" if r.data_subject_id else "subject=-"
    # An officer named by an application token shows with the application that named it.
    who = r.officer if r.officer == r.authenticated_as else f"{r.officer} via {r.authenticated_as}"
    return (
        f"{r.seq:>8}  {r.start_time:%Y-%m-%d %H:%M:%S}Z  {r.organisation:<10} {who:<16} "
        f"{r.purpose or '-':<14} {r.decision.value:<7} {r.reason:<22} {r.path or r.coordinate}  "
        f"{subject}  trace={r.trace_id}"
    )


def recorded_search(
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
        await record_use(
            s, officer=officer, coordinate=coordinate, subject=subject, started=started
        )
        return found

    return run_on_store(url, action)
