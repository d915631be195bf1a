"""The declared purpose and processing activity, checked against the policy for a principal.

``X-Doelbinding`` names the purpose, ``X-Verwerking`` the processing activity (the Haal Centraal
protocollering convention). The policy's answer for a (principal, purpose, activity) is pure, so
it is computed once and kept (bounded); the officer comes from :mod:`gateway.admission.officer`.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.admission.officer import officer_of
from gateway.admission.tokens import Principal
from gateway.errors import Code, GatewayError
from gateway.identifiers import is_identifier
from gateway.policy.model import Grant, Policy

#: Admissions kept before the memo starts afresh (callers' organisation, roles and granted
#: purposes × purposes × activities in use: not one per officer).
MEMO_BOUND = 4096

#: What the policy's answer depends on: the caller's OIN, organisation, roles and granted
#: purposes — never the officer — plus the declared purpose and activity.
_MemoKey = tuple[str, str, tuple[str, ...], frozenset[str], str, str]


def declared(headers: Mapping[str, str]) -> tuple[str, str]:
    """The purpose (``X-Doelbinding``) and processing activity (``X-Verwerking``) a request
    declares, stripped; read once per request, checked by :meth:`Admission.admit`."""
    return headers.get("x-doelbinding", "").strip(), headers.get("x-verwerking", "").strip()


class Admission:
    """Admits (principal, purpose, activity) by the policy; refusals carry their stable code."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._memo: dict[_MemoKey, tuple[Grant, str] | GatewayError] = {}

    def admit(
        self, principal: Principal, purpose_id: str, activity: str, headers: Mapping[str, str]
    ) -> tuple[Grant, str, str]:
        """(grant, processing activity URI, officer) for a purpose and activity read by
        :func:`declared`; raises :class:`GatewayError` to refuse."""
        if not purpose_id or not activity:
            raise GatewayError(
                Code.PURPOSE_REQUIRED,
                "Declare the purpose (X-Doelbinding) and processing activity (X-Verwerking).",
            )
        if not is_identifier(purpose_id, "policy_id") or not is_identifier(activity, "activity"):
            raise GatewayError(
                Code.BAD_USER_INPUT,
                "X-Doelbinding and X-Verwerking are identifiers (ASCII letters, digits, _ . -).",
            )
        officer = officer_of(principal, headers)
        # Keyed by what decides, not by the principal: every officer of an organisation and
        # role shares one entry, so the memo does not grow (and start afresh) with officers.
        key = (
            principal.oin,
            principal.organisation,
            principal.roles,
            principal.purposes,
            purpose_id,
            activity,
        )
        admitted = self._memo.get(key)
        if admitted is None:
            try:
                admitted = self._decide(principal, purpose_id, activity)
            except GatewayError as error:
                # Kept without its traceback: that names this request's frames (headers,
                # payload, span), which would stay alive with the memo entry.
                admitted = error.fresh()
            if len(self._memo) > MEMO_BOUND:
                self._memo.clear()
            self._memo[key] = admitted
        if isinstance(admitted, GatewayError):
            raise admitted.fresh()  # never the memoised object: see GatewayError.fresh
        return admitted[0], admitted[1], officer

    def _decide(self, principal: Principal, purpose_id: str, activity: str) -> tuple[Grant, str]:
        """The policy's answer for a principal, a purpose and an activity (pure: memoised).
        Reads only the principal's OIN, organisation, roles and purposes (the memo's key)."""
        policy = self.policy
        organisation = policy.organisation_by_oin(principal.oin)
        purpose = policy.purposes.get(purpose_id)
        if organisation is None or organisation.id != principal.organisation or purpose is None:
            raise _not_granted(purpose_id)
        if purpose.status == "verboden":
            raise GatewayError(
                Code.PURPOSE_FORBIDDEN,
                f"Purpose {purpose_id} is forbidden: {purpose.status_reason}",
                doelbinding=purpose_id,
                reden=purpose.status_reason,
            )
        if purpose.status == "opgeschort":
            raise GatewayError(
                Code.PURPOSE_SUSPENDED,
                f"Purpose {purpose_id} is suspended: {purpose.status_reason}",
                doelbinding=purpose_id,
                reden=purpose.status_reason,
            )
        granted = purpose_id in principal.purposes and purpose_id in policy.purposes_for(
            organisation.id, principal.roles
        )
        if not granted:
            raise _not_granted(purpose_id)
        if activity not in purpose.processing_activities:
            # Granted, so the caller may know the activities: name them, it is the fix.
            registered = list(purpose.processing_activities)
            raise GatewayError(
                Code.PROCESSING_ACTIVITY_NOT_REGISTERED,
                f"Processing activity {activity!r} (X-Verwerking) is not registered for "
                f"purpose {purpose_id}; registered: {', '.join(registered) or 'none'}.",
                doelbinding=purpose_id,
                verwerking=activity,
                geregistreerd=registered,
            )
        grant = policy.grant(organisation.id, principal.roles, purpose_id)
        return grant, policy.processing_activity_uri(activity)


def _not_granted(purpose_id: str) -> GatewayError:
    return GatewayError(
        Code.PURPOSE_NOT_GRANTED, f"Purpose {purpose_id} is not granted.", doelbinding=purpose_id
    )
