"""Server-side sessions and CSRF tokens.

A sign-in exchanges a gateway token once for a session: a random id in a cookie (HttpOnly,
SameSite=Strict, Secure outside development) naming a server-side record of the viewer. The
session ends at a fixed time — the configured lifetime or the token's own expiry, whichever
comes first — and is not extended by use; signing out deletes it. Every session has its own
CSRF token for the forms it posts.

Before sign-in the form carries a CSRF token bound to a short-lived pre-session cookie
(an HMAC of the cookie's random value under a per-process key), so a login cannot be forged
from another site either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.admission.tokens import Principal

SESSION_COOKIE = "kp_sessie"
LOGIN_COOKIE = "kp_aanmelden"
#: How long a sign-in form stays usable.
LOGIN_FORM_SECONDS = 600
#: Most sessions kept at once; beyond it the oldest are dropped (each is one signed-in viewer).
MAX_SESSIONS = 10_000

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in viewer: who, until when, and the CSRF token of its forms."""

    principal: Principal
    expires_at: float
    csrf: str


class Sessions:
    """The live sessions of this console process (in memory: a restart signs everyone out)."""

    def __init__(self, lifetime: float, *, clock: Clock = time.time) -> None:
        self._lifetime = lifetime
        self._clock = clock
        self._by_id: dict[str, Session] = {}
        self._key = secrets.token_bytes(32)

    @staticmethod
    def _digest(session_id: str) -> str:
        # Stored by digest: a memory dump of the table does not hand out usable cookies.
        return hashlib.sha256(session_id.encode()).hexdigest()

    def start(self, principal: Principal, token_expiry: float | None) -> tuple[str, Session]:
        """A new session for ``principal``; returns (cookie value, session)."""
        now = self._clock()
        expires = now + self._lifetime
        if token_expiry is not None:
            expires = min(expires, token_expiry)
        self._expire(now)
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id, key=lambda k: self._by_id[k].expires_at)
            del self._by_id[oldest]
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, expires, secrets.token_urlsafe(32))
        self._by_id[self._digest(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session a cookie names, or ``None`` (unknown, expired or signed out)."""
        if not session_id:
            return None
        key = self._digest(session_id)
        session = self._by_id.get(key)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._by_id[key]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        """Sign out: the cookie no longer works."""
        if session_id:
            self._by_id.pop(self._digest(session_id), None)

    def remaining(self, session: Session) -> int:
        """Whole seconds the session still lives (for the cookie's Max-Age)."""
        return max(1, int(session.expires_at - self._clock()))

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._by_id.items() if s.expires_at <= now]:
            del self._by_id[key]

    # ---- the sign-in form's CSRF token ------------------------------------------------------

    def login_csrf(self, nonce: str) -> str:
        """The CSRF field of a sign-in form whose pre-session cookie holds ``nonce``."""
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def login_csrf_ok(self, nonce: str | None, field: str | None) -> bool:
        """Whether a posted sign-in form's CSRF field belongs to its pre-session cookie."""
        if not nonce or not field:
            return False
        return hmac.compare_digest(self.login_csrf(nonce), field)


def csrf_ok(session: Session, field: str | None) -> bool:
    """Whether a posted form's CSRF field is its session's token."""
    return bool(field) and hmac.compare_digest(session.csrf, field or "")
