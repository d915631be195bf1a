"""Who the officer of a request is: the token's subject, or whom an application acts for.

A personal token names its officer: ``sub``. ``X-Gebruiker`` may only repeat it. An application
token (one process serving many officers) may name the officer it acts for in ``X-Gebruiker``
only when it carries the claim ``ketenpoort:act_for_officers``; the trail then keeps both the
application (``authenticated_as``) and the asserted officer, and quotas count per (application,
officer) under an application-wide ceiling (:func:`quota_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.admission.tokens import Principal
from gateway.errors import Code, GatewayError
from gateway.identifiers import is_identifier

#: An application acting for officers may use, per purpose and day, this many officers' quotas
#: in all: enough for a desk of officers, not for spreading a bulk extraction over names.
APPLICATION_QUOTA_FACTOR = 10


def officer_of(principal: Principal, headers: Mapping[str, str]) -> str:
    """The request's officer; ``BAD_USER_INPUT`` for an ``X-Gebruiker`` the token cannot assert.

    The header is checked like every identifier from outside (printable ASCII, no spaces).
    """
    named = headers.get("x-gebruiker", "")
    if named == "" or named == principal.subject:
        return principal.subject
    if not is_identifier(named, "officer"):
        raise GatewayError(
            Code.BAD_USER_INPUT,
            "X-Gebruiker is not a well-formed officer id (printable ASCII, no spaces, "
            "at most 128 characters).",
            header="X-Gebruiker",
        )
    if not principal.acts_for_officers:
        raise GatewayError(
            Code.BAD_USER_INPUT,
            "X-Gebruiker differs from the token's subject, and the token may not act for officers.",
            header="X-Gebruiker",
        )
    return named


def quota_keys(principal: Principal, officer: str) -> tuple[str, str | None]:
    """(the key of this officer's quota, the key of the application-wide ceiling or None).

    A token that may act for officers is always charged against its ceiling, also for its own
    requests (no ``X-Gebruiker``): else it could use its own quota on top of the ceiling.
    Neither part holds a space (:mod:`gateway.identifiers`), so ``"subject officer"`` names one
    pair; the ceiling's key ``"subject (application)"`` holds a second space, so it is never an
    officer's key.
    """
    own = principal.subject if officer == principal.subject else f"{principal.subject} {officer}"
    ceiling = f"{principal.subject} (application)" if principal.acts_for_officers else None
    return own, ceiling
