"""Signing in and out: a gateway token exchanged once for a session cookie.

``GET /`` shows the sign-in form (its CSRF token bound to a pre-session cookie) or, signed in,
the start page; ``POST /login`` verifies the token like the gateway does, checks the policy's
VERANTWOORDING grant, records the sign-in and starts the session; ``POST /afmelden`` ends it.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.admission.trail_reader import admit
from gateway.console.access import token_expiry
from gateway.console.sessions import LOGIN_COOKIE, LOGIN_FORM_SECONDS, SESSION_COOKIE, csrf_ok
from gateway.console.web import Console, Denied, console_of, read_form, record_view
from gateway.errors import GatewayError


def _cookie_flags(console: Console) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "secure": not console.development, "path": "/"}


async def start(request: Request) -> Response:
    """``GET /``: the sign-in form, or (signed in) the start page."""
    console = console_of(request)
    session = console.session(request)
    if session is not None:
        viewer = admit(console.policy, session.principal)
        if viewer is not None:
            await record_view(console, viewer, "Console.start")
            return console.render(request, "start.html", {}, viewer=viewer)
    nonce = secrets.token_urlsafe(24)
    response = console.render(
        request, "aanmelden.html", {"login_csrf": console.sessions.login_csrf(nonce)}
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_SECONDS, **_cookie_flags(console))
    return response


async def login(request: Request) -> Response:
    """``POST /login``: exchange a gateway token (form field ``token``) for a session."""
    console = console_of(request)
    form = await read_form(request)
    if not console.sessions.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        raise Denied(403, "Het aanmeldformulier is verlopen of komt niet van deze console.")
    token = form.get("token", "").strip()
    try:
        principal = await console.authenticator.authenticate(f"Bearer {token}")
    except GatewayError:
        raise Denied(401, "Het token is ongeldig of verlopen.") from None
    viewer = admit(console.policy, principal)
    if viewer is None:
        await console.record_refusal(principal, "/login")
        raise Denied(
            403,
            "Geen toegang: het beleid verleent uw organisatie en rol de doelbinding "
            "VERANTWOORDING niet.",
        )
    await record_view(console, viewer, "Console.aanmelden")
    session_id, session = console.sessions.start(principal, token_expiry(token))
    response = RedirectResponse("/zoeken", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=console.sessions.remaining(session),
        **_cookie_flags(console),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


async def logout(request: Request) -> Response:
    """``POST /afmelden``: end the session (CSRF-checked)."""
    console = console_of(request)
    await console.viewer(request)
    session = console.session(request)
    form = await read_form(request)
    if session is None or not csrf_ok(session, form.get("csrf")):
        raise Denied(403, "Ongeldig formulier (CSRF).")
    console.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
