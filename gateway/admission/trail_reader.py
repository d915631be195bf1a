"""Who may read the accountability trail's content: the policy's VERANTWOORDING grant, now.

The one check for every way into the trail's content outside GraphQL: the accountability
console's pages (:mod:`gateway.console`) and the audit log's entry pages a witness reads
(:mod:`gateway.http.log_pages`). A reader is an authenticated
:class:`~gateway.admission.tokens.Principal` that the gateway's own admission (the same
:class:`~gateway.admission.purpose.Admission` that admits ``auditZoeken``) admits for
``X-Doelbinding: VERANTWOORDING``: its organisation matches its OIN in the policy, its token
claims the purpose, the policy grants it to its roles, the purpose is active. The check is pure
and cheap, so every request repeats it instead of trusting a session.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from gateway.admission.purpose import Admission
from gateway.admission.tokens import Principal
from gateway.audit.model import AccessContext
from gateway.audit.reading import READING_PURPOSE
from gateway.errors import GatewayError
from gateway.policy.model import Policy

#: Reason recorded when the policy names no rule for the grant (cannot happen once admitted).
CONSOLE_REASON = "AUDIT_CONSOLE"


@dataclass(frozen=True, slots=True)
class Viewer:
    """An admitted reader of the trail and what their uses of it are recorded with."""

    principal: Principal
    legal_basis: str
    processing_activity: str
    policy_version: str
    rule: str

    @property
    def name(self) -> str:
        return self.principal.subject

    def context(self) -> AccessContext:
        """The request context of one use of the trail by this reader (a trace of its own)."""
        return _context(
            self.principal, self.legal_basis, self.processing_activity, self.policy_version
        )


def refused_context(policy: Policy, principal: Principal) -> AccessContext:
    """The request context recording an attempt the policy turned away."""
    return _context(principal, None, None, policy.version)


def _context(
    p: Principal, legal_basis: str | None, activity: str | None, policy_version: str
) -> AccessContext:
    return AccessContext(
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        parent_span_id=None,
        start_time=dt.datetime.now(dt.UTC),
        organisation_oin=p.oin,
        organisation=p.organisation,
        officer=p.subject,
        authenticated_as=p.subject,
        roles=p.roles,
        purpose=READING_PURPOSE,
        legal_basis=legal_basis,
        processing_activity=activity,
        policy_version=policy_version,
    )


def admit(policy: Policy, principal: Principal) -> Viewer | None:
    """The reader, when the policy grants this principal VERANTWOORDING now; else ``None``.

    The gateway's own admission decides (:class:`~gateway.admission.purpose.Admission`), for the
    purpose's first registered processing activity.
    """
    purpose = policy.purposes.get(READING_PURPOSE)
    if purpose is None or not purpose.processing_activities:
        return None
    try:
        grant, activity, _ = Admission(policy).admit(
            principal, READING_PURPOSE, purpose.processing_activities[0], {}
        )
    except GatewayError:
        return None
    rules = sorted({grant.reasons[c] for c in grant.approved})
    return Viewer(
        principal=principal,
        legal_basis=grant.purpose.grondslag,
        processing_activity=activity,
        policy_version=policy.version,
        rule=",".join(rules) or CONSOLE_REASON,
    )
