"""The console's side of access: how long a session a token may start.

Who may use the console at all is decided by the one check of every reader of the trail,
:func:`gateway.admission.trail_reader.admit` (the policy's VERANTWOORDING grant), repeated on
every page.
"""

from __future__ import annotations

import jwt


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a token the authenticator has already verified (for the session's end)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None
