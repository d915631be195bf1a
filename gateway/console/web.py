"""What every console page shares: the running console, who is asking, rendering, headers.

:class:`Console` holds the opened audit store, the policy, the pseudonym key, the token
verifier and the sessions. :meth:`Console.viewer` is the one gate of every page: a session
cookie (or, for scripts, ``Authorization: Bearer``) whose principal the policy grants
VERANTWOORDING *now*; otherwise :class:`Denied` (401 or 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admission.tokens import Authenticator, Principal
from gateway.admission.trail_reader import Viewer, admit, refused_context
from gateway.audit.logcheck import LogCheck
from gateway.audit.model import Decision
from gateway.audit.reading import record_reading
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.audit.verify import VerifyResult
from gateway.console.sessions import SESSION_COOKIE, Session, Sessions
from gateway.console.settings import ConsoleSettings
from gateway.errors import Code, GatewayError
from gateway.observability.pseudonym import Pseudonymizer
from gateway.policy.model import Policy

HERE = Path(__file__).resolve().parent
#: No page loads anything from another origin; no inline script; never framed.
CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
#: Most bytes of a posted form (a token is a few kB).
MAX_FORM = 32 * 1024


class Denied(Exception):
    """The request may not see this page: ``status`` 400/401/403/404/503 and a Dutch message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SecurityHeaders:
    """ASGI middleware: the security headers on every response; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(slots=True)
class IntegrityRun:
    """The last verification this console ran (kept in memory), and one running now."""

    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    by: str | None = None
    result: VerifyResult | None = None
    error: str | None = None
    #: The store against the log's published, signed checkpoints (None: not checked).
    log: LogCheck | None = None
    #: Why the checkpoints could not be checked (no file, no key, a bad signature).
    log_error: str | None = None
    running: bool = False


@dataclass(slots=True)
class Console:
    """The running console's components (built by :func:`gateway.console.app.create_console`)."""

    store: AuditStore
    policy: Policy
    pseudonym: Pseudonymizer
    authenticator: Authenticator
    sessions: Sessions
    settings: ConsoleSettings
    development: bool
    #: The published checkpoint file and the log's public key (``KETENPOORT_CHECKPOINTS``,
    #: ``<state>/checkpoint.pub``); None when checkpoints are not published to a file.
    checkpoint_file: Path | None = None
    log_key_file: Path | None = None
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
    )
    integrity: IntegrityRun = field(default_factory=IntegrityRun)
    #: Background verifications (kept referenced until they finish).
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def viewer(self, request: Request) -> Viewer:
        """Who is asking, admitted by the policy now; :class:`Denied` otherwise.

        An authenticated caller the policy turns away is recorded (decision refused, reason
        ``PURPOSE_NOT_GRANTED``, the page's path without its query) before the 403.
        """
        authorization = request.headers.get("authorization")
        if authorization:
            try:
                principal = await self.authenticator.authenticate(authorization)
            except GatewayError:
                raise Denied(401, "Het token is ongeldig of verlopen.") from None
        else:
            session = self.session(request)
            if session is None:
                raise Denied(401, "Meld u eerst aan.")
            principal = session.principal
        viewer = admit(self.policy, principal)
        if viewer is None:
            await self.record_refusal(principal, request.url.path)
            raise Denied(
                403,
                "Geen toegang: het beleid verleent uw organisatie en rol de doelbinding "
                "VERANTWOORDING niet.",
            )
        return viewer

    async def record_refusal(self, principal: Principal, path: str) -> None:
        """Record an attempt to read the trail that the policy refused (best effort: the
        caller gets 403 whether or not the trail can take it)."""
        with contextlib.suppress(AuditUnavailable):
            await record_reading(
                self.store,
                refused_context(self.policy, principal),
                coordinate="Console.toegang",
                reason=Code.PURPOSE_NOT_GRANTED.value,
                path=path,
                decision=Decision.REFUSED,
            )

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        viewer: Viewer | None = None,
    ) -> HTMLResponse:
        """A page: the template with the navigation, the viewer and the session's CSRF token."""
        session = self.session(request)
        page = self.templates.get_template(template).render(
            {
                "request_path": request.url.path,
                "viewer": viewer,
                "csrf": session.csrf if session is not None and viewer is not None else None,
                "trace_url": self.settings.trace_url,
                **context,
            }
        )
        return HTMLResponse(page, status_code=status)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def record_view(
    console: Console,
    viewer: Viewer,
    coordinate: str,
    *,
    path: str = "",
    subjects: Iterable[str | None] = (),
) -> None:
    """Record one page view or export before it is shown; 503 when the trail cannot."""
    try:
        await record_reading(
            console.store,
            viewer.context(),
            coordinate=coordinate,
            reason=viewer.rule,
            path=path,
            subjects=[s for s in subjects if s],
        )
    except AuditUnavailable:
        raise Denied(
            503,
            "Het verantwoordingslog kan deze raadpleging niet vastleggen; daarom wordt niets "
            "getoond. Probeer het later opnieuw.",
        ) from None


async def read_form(request: Request) -> dict[str, str]:
    """A posted ``application/x-www-form-urlencoded`` form (bounded), first value per field."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise Denied(400, "Onverwacht formulier.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Denied(413, "Het formulier is te groot.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise Denied(400, "Onleesbaar formulier.") from None
    return {k: v[0] for k, v in parsed.items()}
