"""What one request leaves in the trail and in the traces: its context, its batch, its spans.

The audit batch is built from the plan's decisions and the subjects the request returned (never
per field); the per-subject spans are built from that same batch, so traces and trail agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.admission.tokens import Principal
from gateway.audit.model import AccessContext, AuditBatch, Decision, FieldDecision, SubjectAccess
from gateway.execution.context import RequestState
from gateway.observability.tracing import RequestSpan, SpanSink
from gateway.pipeline.refusals import refusal_decision, undelivered
from gateway.policy.model import Grant, Policy

#: Joined decision texts kept before the memo starts afresh (decision sets are shared per plan).
MEMO_BOUND = 4096


class Recorder:
    """Builds a request's :class:`AccessContext` and :class:`AuditBatch`, and its subject spans."""

    def __init__(self, policy: Policy, pseudonym: Any, spans: SpanSink) -> None:
        self.policy = policy
        self.pseudonym = pseudonym
        self.spans = spans
        self._joined: dict[int, tuple[tuple[FieldDecision, ...], str, str]] = {}

    def context(
        self,
        principal: Principal,
        officer: str,
        purpose: str | None,
        grant: Grant | None,
        activity: str | None,
        span: RequestSpan,
        started: datetime,
    ) -> AccessContext:
        """Who asked, for what, under which policy version: the request's part of each record."""
        organisation = self.policy.organisation_by_oin(principal.oin)
        legal_basis = grant.purpose.grondslag if grant is not None else None
        if grant is None and purpose is not None and purpose in self.policy.purposes:
            legal_basis = self.policy.purposes[purpose].grondslag
        return AccessContext(
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            start_time=started,
            organisation_oin=principal.oin,
            organisation=organisation.id if organisation else principal.organisation,
            officer=officer,
            authenticated_as=principal.subject,
            roles=principal.roles,
            purpose=purpose,
            legal_basis=legal_basis,
            processing_activity=activity,
            policy_version=self.policy.version,
        )

    def batch(
        self,
        context: AccessContext,
        state: RequestState,
        nulled: bool,
        errors: list[dict[str, Any]],
    ) -> AuditBatch:
        """The request's audit batch. An answer nulled by an error carried nothing: then no
        decision stays 'given', and the request-level record says why."""
        accesses = [(self.pseudonym(a.vnummer), a.decisions) for a in state.accesses]
        request_decisions = list(state.request_decisions)
        if nulled:
            code = str(errors[0]["extensions"].get("code"))
            accesses = [(subject, undelivered(d, code)) for subject, d in accesses]
            request_decisions = [
                refusal_decision(code, state.tally.identifiers),
                *undelivered(request_decisions, code),
            ]
        return AuditBatch(
            context,
            datetime.now(UTC),
            [SubjectAccess(subject, decisions) for subject, decisions in accesses],
            request_decisions,
        )

    def subject_spans(self, batch: AuditBatch, request: RequestSpan) -> None:
        """One span per data subject with the LDV attributes and the coordinates decided."""
        if not batch.subjects:
            return
        parent = request.context
        start = int(batch.context.start_time.timestamp() * 1e9)
        end = int(batch.end_time.timestamp() * 1e9)
        activity = batch.context.processing_activity or ""
        spans = self.spans
        for subject in batch.subjects:
            given, refused = self._joined_decisions(subject.decisions)
            spans.emit(
                "betrokkene",
                spans.child(parent),
                parent,
                start,
                end,
                {
                    "dpl.core.processing_activity_id": activity,
                    "dpl.core.data_subject_id": subject.subject,
                    "dpl.core.data_subject_id_type": "vnummer",
                    "ketenpoort.given": given,
                    "ketenpoort.refused": refused,
                },
            )

    def _joined_decisions(self, decisions: tuple[FieldDecision, ...]) -> tuple[str, str]:
        # Decision tuples are shared by every request of a plan: join each once.
        cached = self._joined.get(id(decisions))
        if cached is not None and cached[0] is decisions:
            return cached[1], cached[2]
        given = ",".join(d.coordinate for d in decisions if d.decision is Decision.GIVEN)
        refused = ",".join(
            f"{d.coordinate}:{d.reason}" for d in decisions if d.decision is not Decision.GIVEN
        )
        if len(self._joined) > MEMO_BOUND:
            self._joined.clear()
        self._joined[id(decisions)] = (decisions, given, refused)
        return given, refused
