"""A planned request measured against its limits, the purpose's cap and the daily quota.

Run before anything is fetched: a request over a limit, the cap or the quota is refused whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.admission.officer import APPLICATION_QUOTA_FACTOR, quota_keys
from gateway.config import Limits
from gateway.errors import Code, GatewayError
from gateway.execution.context import RequestState
from gateway.planning.plan import RequestPlan
from gateway.proportionality.counting import RootRequest, Tally, tally
from gateway.proportionality.quota import QuotaStore


def check_limits(plan: RequestPlan, limits: Limits) -> None:
    """Depth, aliases and fields within the limits, else QUERY_TOO_COMPLEX."""
    if (
        plan.depth > limits.max_depth
        or plan.aliases > limits.max_aliases
        or plan.fields > limits.max_fields
    ):
        raise GatewayError(Code.QUERY_TOO_COMPLEX, "The query is too complex.")


def count_persons(
    state: RequestState, plan: RequestPlan, variables: Mapping[str, Any], limits: Limits
) -> Tally:
    """Validate every identifier and count every root (refused ones too) against the cap
    (:mod:`gateway.proportionality.counting`); the cost limit weighs fields by persons."""
    roots = (
        RootRequest(root.field_name, root.argument_values(variables), root.refusal is not None)
        for root in plan.roots.values()
    )
    counted = tally(roots, state.purpose, into=state.tally)
    if plan.fields * max(counted.persons, 1) > limits.max_cost:
        raise GatewayError(Code.QUERY_TOO_COMPLEX, "The query is too costly.")
    return counted


async def charge_quota(quota_store: QuotaStore, state: RequestState, units: int) -> None:
    """Charge the daily quota: per (token subject, officer), and for an application acting
    for officers also against its application-wide ceiling (gateway.admission.officer)."""
    purpose = state.purpose
    if not units or not purpose.quota_per_day:
        return
    own, ceiling = quota_keys(state.principal, state.officer)
    charges = [(own, purpose.quota_per_day)]
    if ceiling is not None:
        charges.append((ceiling, purpose.quota_per_day * APPLICATION_QUOTA_FACTOR))
    for key, limit in charges:
        decision = await quota_store.reserve(key, purpose.id, units, limit)
        if not decision.granted:
            raise GatewayError(
                Code.QUOTA_EXCEEDED,
                f"Daily quota of {decision.limit} persons for {purpose.id} reached.",
                retryAfter=decision.retry_after,
            )
