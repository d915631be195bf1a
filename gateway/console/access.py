"""What only the console's sessions need of a token: when it expires.

Who may use the console (the policy's VERANTWOORDING grant, checked on every page) is decided
by :mod:`gateway.admission.accountability`, shared with the gateway's admin endpoints.
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
