"""What the trail says of refusals: exactly what the answer carried, never invented subjects.

* A request refused as a whole is one request-level record (coordinate ``Query``) whose path
  says how many identifiers it named (``identifiers:15000``): no data subject is created from
  strings the caller supplied.
* A request whose answer would be ``data: null`` (a refused non-null root field) is refused
  before anything is fetched (:func:`null_answer_refusal`).
* When an answer turns out ``data: null`` after execution all the same (a registry failing a
  search, say), nothing in it is recorded as given (:func:`undelivered`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from gateway.audit.model import Decision, FieldDecision
from gateway.errors import Code, GatewayError
from gateway.planning.plan import RequestPlan


def refusal_decision(code: Code | str, identifiers: int = 0) -> FieldDecision:
    """The request-level record of a refusal, with the count of identifiers the request named."""
    path = f"identifiers:{identifiers}" if identifiers else ""
    return FieldDecision("Query", path, Decision.REFUSED, str(code), None)


class AnswerWouldBeNull(GatewayError):
    """A refused non-null root field nulls the whole answer: refuse before fetching anything.

    ``errors`` are the answer's errors (one per refused root, at its path, as execution would
    have given them); ``decisions`` the refused roots' request-level records.
    """

    def __init__(self, errors: list[dict[str, Any]], decisions: tuple[FieldDecision, ...]):
        super().__init__(Code.FIELD_NOT_PERMITTED, str(errors[0]["message"]))
        self.errors = errors
        self.decisions = decisions


def null_answer_refusal(
    plan: RequestPlan, non_null_roots: Collection[str]
) -> AnswerWouldBeNull | None:
    """The refusal of a request whose answer a refused non-null root would null, or None."""
    refused = [root for root in plan.roots.values() if root.refusal is not None]
    if not any(root.field_name in non_null_roots for root in refused):
        return None
    errors: list[dict[str, Any]] = []
    decisions: list[FieldDecision] = []
    for root in refused:
        assert root.refusal is not None
        error = root.refusal
        errors.append(
            {"message": error.message, "path": [root.key], "extensions": error.extensions}
        )
        decisions.extend(root.request_decisions)
    return AnswerWouldBeNull(errors, tuple(dict.fromkeys(decisions)))


def undelivered(decisions: Iterable[FieldDecision], code: str) -> tuple[FieldDecision, ...]:
    """``decisions`` of an answer that was not delivered: every 'given' becomes an error."""
    return tuple(
        FieldDecision(d.coordinate, d.path, Decision.ERROR, code, d.registry)
        if d.decision is Decision.GIVEN
        else d
        for d in decisions
    )
