"""The one validation of identifiers that come from outside: V-nummers, OINs, policy ids, officers.

Every check is the same shape: a ``str``, its length first (so a 15 MB string costs nothing),
ASCII only, then a whole-string match (``fullmatch`` with ``re.ASCII``). ``^…$`` with ``match``
is not used anywhere: ``$`` also matches before a trailing newline, and ``\\d`` matches every
Unicode digit (``"\\uff10"``, ``"\\u0663"``), which then breaks the keyed pseudonym or a registry.

Predicates only (a foundation module imports nothing of the project): the checks that refuse a
request with ``BAD_USER_INPUT`` are :func:`gateway.proportionality.counting.check_vnummer` and
``check_identifier``.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

#: An identifier kind: its length bounds and the whole-string pattern (ASCII only).
_KINDS: Final[dict[str, tuple[int, int, re.Pattern[str]]]] = {
    "vnummer": (10, 10, re.compile(r"[0-9]{10}", re.ASCII)),
    "oin": (20, 20, re.compile(r"[0-9]{20}", re.ASCII)),
    # Policy ids: organisations, roles, purposes (``TOEZICHT_VW``, ``nvik-toezicht-vw``).
    "policy_id": (1, 64, re.compile(r"[A-Za-z][A-Za-z0-9_.-]*", re.ASCII)),
    "activity": (1, 128, re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*", re.ASCII)),
    # An officer (X-Gebruiker, a token's ``sub``): printable ASCII without spaces, so that
    # "subject officer" joined by one space names one pair unambiguously (quota keys).
    "officer": (1, 128, re.compile(r"[!-~]+", re.ASCII)),
}

VNUMMER_LENGTH: Final = 10


def is_identifier(value: object, kind: str) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed identifier of ``kind`` (see :data:`_KINDS`)."""
    shortest, longest, pattern = _KINDS[kind]
    return (
        isinstance(value, str)
        and shortest <= len(value) <= longest
        and value.isascii()
        and pattern.fullmatch(value) is not None
    )


def is_vnummer(value: object) -> TypeGuard[str]:
    """Exactly ten ASCII digits."""
    return is_identifier(value, "vnummer")
