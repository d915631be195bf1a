"""``ketenpoort cache purge``: remove one person's cached registry answers now.

Two reaches, each recorded in the trail before anything is removed:

* ``--gateway URL`` (repeatable): a running gateway's ``POST /admin/cache/purge`` with the
  bearer token in ``$KETENPOORT_TOKEN`` (or the variable ``--token-env`` names). It purges that
  process's in-process memory cache, or the Redis cache it uses, and records the purge under the
  token's officer. With memory caches on N processes, name every process.
* Redis directly, as before, when ``--cache``/``KETENPOORT_CACHE`` is ``redis://...``: SCAN and
  DEL by the person's pseudonym (the state directory's key), recorded in the audit store
  (``--store``/``KETENPOORT_AUDIT_STORE``) as ``--as`` (default ``$USER``), organisation
  KETENPOORT, like the ``audit`` commands' own uses of the trail.

Every input is checked before anything is done; then every reach is tried. A problem is one line
on stderr, ``ketenpoort: cache purge: <CODE>: <message>``, never a stack trace; the exit code is
that of the first problem: 1 a dependency failed (``GATEWAY_UNREACHABLE``,
``UNEXPECTED_ANSWER``, ``AUDIT_UNAVAILABLE``, ``CACHE_UNAVAILABLE``), 2 bad input
(``BAD_USER_INPUT`` here or from the gateway), 3 the gateway refused the token
(``UNAUTHENTICATED``, ``PURPOSE_NOT_GRANTED``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import httpx
import typer

from gateway.audit.reading import CACHE_PURGE
from gateway.audit.store import AuditUnavailable
from gateway.audit.stores import open_store
from gateway.cli.audit_support import (
    BadInputError,
    acting_officer,
    pseudonym_of,
    record_use,
    resolve_paths,
)
from gateway.config import ConfigError, Settings
from gateway.execution.cache import CacheUnavailable, purge_subject
from gateway.identifiers import is_vnummer

app = typer.Typer(help="The registry cache.", no_args_is_help=True)

#: The gateway's admin endpoint (gateway/http/admin_routes.py).
PURGE_PATH = "/admin/cache/purge"
DEFAULT_TOKEN_ENV = "KETENPOORT_TOKEN"  # noqa: S105 - the name of a variable, no secret
#: Seconds a gateway gets to record and purge (its own Redis purge is bounded at 10 s).
GATEWAY_TIMEOUT = httpx.Timeout(20.0, connect=5.0)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REFUSED = 1, 2, 3
#: Exit code of each code a gateway may answer with; anything else is a failure (1).
GATEWAY_EXITS = {
    "BAD_USER_INPUT": EXIT_BAD_INPUT,
    "UNSUPPORTED_MEDIA_TYPE": EXIT_BAD_INPUT,
    "REQUEST_TOO_LARGE": EXIT_BAD_INPUT,
    "UNAUTHENTICATED": EXIT_REFUSED,
    "PURPOSE_NOT_GRANTED": EXIT_REFUSED,
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that went wrong: a stable code, a message and the exit code it gives."""

    code: str
    message: str
    exit_code: int


def _say(problem: Problem) -> None:
    typer.echo(f"ketenpoort: cache purge: {problem.code}: {problem.message}", err=True)


def _refuse(message: str) -> NoReturn:
    _say(Problem("BAD_USER_INPUT", message, EXIT_BAD_INPUT))
    raise typer.Exit(EXIT_BAD_INPUT)


def _gateway_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _refuse(f"--gateway {raw!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        _refuse(f"--gateway {raw!r}: give the gateway's base URL, without query or fragment")
    return raw.strip().rstrip("/")


def _token(variable: str) -> str:
    value = os.environ.get(variable, "").strip()
    if not value:
        _refuse(
            f"no token: put a bearer token in ${variable} (a token the policy grants "
            "VERANTWOORDING)"
        )
    if not value.isascii() or not value.isprintable() or " " in value:
        _refuse(f"${variable} does not hold a bearer token")
    return value


def purge_at_gateway(base: str, token: str, vnummer: str) -> tuple[str, Problem | None]:
    """Ask one running gateway to purge; (the line to print, or a problem)."""
    url = base + PURGE_PATH
    try:
        with httpx.Client(timeout=GATEWAY_TIMEOUT, follow_redirects=False) as client:
            response = client.post(
                url,
                json={"vnummer": vnummer},
                headers={"authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        return "", Problem(
            "GATEWAY_UNREACHABLE", f"{base}: {type(exc).__name__}: {exc}", EXIT_FAILED
        )
    body = _json(response)
    if response.status_code == 200 and isinstance(body, dict) and "removed" in body:
        return (
            f"{base}: removed {body['removed']} cached answer(s) about this person "
            f"({body.get('cache')} cache; recorded, trace {body.get('trace_id')})"
        ), None
    code, message = _gateway_error(body)
    if code is None:
        return "", Problem(
            "UNEXPECTED_ANSWER",
            f"{base}: HTTP {response.status_code} without a Ketenpoort error "
            f"(is {PURGE_PATH} served there?)",
            EXIT_FAILED,
        )
    return "", Problem(code, f"{base}: {message}", GATEWAY_EXITS.get(code, EXIT_FAILED))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _gateway_error(body: Any) -> tuple[str | None, str]:
    """The stable code and message of a gateway's error answer, if it is one."""
    try:
        error = body["errors"][0]
        code, message = error["extensions"]["code"], error["message"]
    except (TypeError, KeyError, IndexError):
        return None, ""
    if not isinstance(code, str) or not isinstance(message, str):
        return None, ""
    return code, message


def purge_redis(
    cache: str, store_url: str, officer: str, subject: str, started: dt.datetime
) -> tuple[str, Problem | None]:
    """Record the purge in the audit store, then purge Redis; (the line to print, or a problem)."""

    async def record() -> None:
        store = open_store(store_url)
        try:
            await store.open()
            await record_use(
                store, officer=officer, coordinate=CACHE_PURGE, subject=subject, started=started
            )
        finally:
            await store.close()

    try:
        asyncio.run(record())
    except (AuditUnavailable, OSError) as exc:
        return "", Problem(
            "AUDIT_UNAVAILABLE",
            f"the purge cannot be recorded, nothing was purged from Redis: {exc}",
            EXIT_FAILED,
        )
    except ValueError as exc:
        return "", Problem("BAD_USER_INPUT", f"audit store: {exc}", EXIT_BAD_INPUT)
    try:
        removed = asyncio.run(purge_subject(cache, subject))
    except CacheUnavailable as exc:
        return "", Problem("CACHE_UNAVAILABLE", f"{exc} (the attempt is recorded)", EXIT_FAILED)
    host = urlsplit(cache)
    return (
        f"redis://{host.hostname or '127.0.0.1'}:{host.port or 6379}{host.path}: removed "
        f"{removed} cached answer(s) about this person (recorded)"
    ), None


@app.command("purge")
def cache_purge(
    vnummer: Annotated[str, typer.Option("--vnummer", help="The data subject's V-nummer.")],
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway",
            help="Base URL of a running gateway whose cache to purge (repeatable; "
            "POST /admin/cache/purge).",
        ),
    ] = None,
    token_env: Annotated[
        str,
        typer.Option(
            "--token-env", help="Environment variable holding the bearer token for --gateway."
        ),
    ] = DEFAULT_TOKEN_ENV,
    cache: Annotated[
        str | None,
        typer.Option(help="redis://... to purge directly (KETENPOORT_CACHE)."),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="State directory with the pseudonym key (KETENPOORT_STATE)."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Audit store a direct Redis purge is recorded in."),
    ] = None,
    officer: Annotated[
        str | None,
        typer.Option("--as", help="Who purges Redis directly (recorded); default: $USER."),
    ] = None,
) -> None:
    """Remove one person's cached registry answers now: from running gateways (--gateway) and
    from Redis directly (KETENPOORT_CACHE=redis://...). Each purge is recorded in the trail."""
    started = dt.datetime.now(dt.UTC)
    if not is_vnummer(vnummer):
        _refuse("a V-nummer is exactly 10 digits")  # the value is not echoed
    gateways = [_gateway_url(g) for g in gateway or []]
    token = _token(token_env) if gateways else ""
    try:
        cache_url = cache or Settings.from_env().cache
    except ConfigError as exc:
        _refuse(str(exc))
    direct = cache_url != "memory"
    if direct and not cache_url.startswith("redis://"):
        _refuse(f"--cache must be 'memory' or redis://..., got {cache_url!r}")
    if not direct and not gateways:
        _refuse(
            "KETENPOORT_CACHE is memory: that cache lives inside the running gateway; "
            "purge it there with --gateway URL"
        )
    if direct:
        try:
            store_url, state_dir = resolve_paths(store, state)
            me = acting_officer(officer)
            subject = pseudonym_of(vnummer, state_dir)
        except BadInputError as exc:
            _refuse(str(exc))

    outcomes = [purge_at_gateway(base, token, vnummer) for base in gateways]
    if direct:
        outcomes.append(purge_redis(cache_url, store_url, me, subject, started))
    problems = [problem for _, problem in outcomes if problem is not None]
    for line, problem in outcomes:
        if problem is None:
            typer.echo(line)
        else:
            _say(problem)
    if problems:
        raise typer.Exit(problems[0].exit_code)
