"""The gateway service: one request from headers to an answer, recorded before it is sent.

Order of a request (docs/design.md, One request): trace → authenticate → purpose → parse/validate
(cached by text) → plan (cached per document and grant), limits, caps, quota → fetch every
person named, one batch per registry → execute (strawberry; refusals are already laid over the
registry objects) → commit the audit batch → answer. If the commit fails the answer is
``AUDIT_UNAVAILABLE`` and no data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from graphql import DocumentNode, ExecutionResult, GraphQLNonNull
from graphql.execution.values import get_variable_values
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider
from strawberry.types import ExecutionResult as StrawberryResult

from gateway.admission.purpose import Admission, declared
from gateway.admission.tokens import Authenticator, Principal
from gateway.audit.model import (
    AccessContext,
    AuditBatch,
    FieldDecision,
)
from gateway.audit.store import AuditStore
from gateway.config import Limits
from gateway.errors import Code, GatewayError
from gateway.execution.cache import RecordCache
from gateway.execution.compiled import CompiledAnswers
from gateway.execution.context import RequestState
from gateway.execution.fetch import Registries
from gateway.execution.fields import fetcher_for
from gateway.execution.introspection import VisibleSchemas, introspect
from gateway.execution.schema import schema_coordinates
from gateway.execution.strawberry_schema import build_schema
from gateway.identifiers import is_identifier
from gateway.internals import graphql_core_schema
from gateway.observability.tracing import RequestSpan, SpanSink
from gateway.pipeline.answer import REQUEST_LEVEL, Answer, error_answer, format_error, input_errors
from gateway.pipeline.payload import read_payload
from gateway.pipeline.proportion import charge_quota, check_limits, count_persons
from gateway.pipeline.recording import Recorder
from gateway.pipeline.refusals import (
    AnswerWouldBeNull,
    null_answer_refusal,
    refusal_decision,
)
from gateway.planning.builder import build_plan
from gateway.planning.document import (
    Document,
    DocumentCache,
    errors_for_caller,
    variable_errors_for_caller,
)
from gateway.planning.plan import RequestPlan, select_operation
from gateway.policy.model import Grant, Policy
from gateway.proportionality.quota import QuotaStore


class Gateway:
    """Everything a request needs, built once at start (:mod:`gateway.assembly.runtime`)."""

    def __init__(
        self,
        *,
        policy: Policy,
        registries: Registries,
        cache: RecordCache,
        audit_store: AuditStore,
        quota_store: QuotaStore,
        tracer_provider: TracerProvider,
        pseudonym: Any,
        authenticator: Authenticator,
        limits: Limits,
        trusted_documents: Mapping[str, str] | None = None,
        development: bool = True,
    ) -> None:
        self.policy = policy
        self.registries = registries
        self.cache = cache
        self.audit_store = audit_store
        self.quota_store = quota_store
        self.tracer_provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("ketenpoort")
        self.spans = SpanSink(tracer_provider)
        self.pseudonym = pseudonym
        self.authenticator = authenticator
        self.limits = limits
        self.trusted_documents = trusted_documents
        self.development = development
        self.schema = build_schema()
        self.core_schema = graphql_core_schema(self.schema)
        query_type = self.core_schema.query_type
        assert query_type is not None
        #: Root fields whose refusal nulls the whole answer (gateway.pipeline.refusals).
        self.non_null_roots = frozenset(
            name for name, f in query_type.fields.items() if isinstance(f.type, GraphQLNonNull)
        )
        self.documents = DocumentCache(self.core_schema, max_tokens=limits.max_tokens)
        self.coordinates = schema_coordinates(self.core_schema)
        self.compiled = CompiledAnswers(self.core_schema)
        self._plans: dict[tuple[Any, ...], RequestPlan] = {}
        self.admission = Admission(policy)
        self.recorder = Recorder(policy, pseudonym, self.spans)
        self.visible = VisibleSchemas(self.core_schema)

    # ---- purpose ---------------------------------------------------------------------------

    def admit(self, principal: Principal, headers: Mapping[str, str]) -> tuple[Grant, str, str]:
        """Check the declared purpose; return (grant, processing activity URI, officer)."""
        return self.admission.admit(principal, *declared(headers), headers)

    # ---- before execution: plan, limits, caps, quota, fetch ----------------------------------

    def plan_for(
        self,
        state: RequestState,
        document: Document,
        query: str,
        operation_name: str | None,
        variables: Mapping[str, Any],
    ) -> RequestPlan:
        """The plan of this document for this grant (cached; @skip/@include variables key it)."""
        grant = state.grant
        key = (
            query,
            operation_name,
            grant.organisation,
            grant.roles,
            grant.purpose.id,
            tuple(repr(variables.get(n)) for n in document.directive_variables)
            if document.directive_variables
            else (),
        )
        plan = self._plans.get(key)
        if plan is None:
            assert document.node is not None
            plan = build_plan(document.node, operation_name, self.coordinates, grant, variables)
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    async def prepare(
        self, state: RequestState, plan: RequestPlan, variables: Mapping[str, Any]
    ) -> None:
        """Limits, validation, caps, refusals that null the answer, quota; then fetch every
        person the operation names, in one batch.

        Raises a :class:`GatewayError` to refuse the request: nothing has been fetched then.
        ``state.tally`` holds what was counted, also when refused.
        """
        check_limits(plan, self.limits)
        if plan.introspection:
            if plan.roots:
                raise GatewayError(
                    Code.BAD_USER_INPUT, "Ask introspection in an operation of its own."
                )
            return
        counted = count_persons(state, plan, variables, self.limits)
        refusal = null_answer_refusal(plan, self.non_null_roots)
        if refusal is not None:
            raise refusal
        await charge_quota(self.quota_store, state, counted.units)
        state.plan = plan
        if counted.named:
            # Every person named by any root field (aliases included), one batch per registry.
            fetcher = fetcher_for(state)
            outcomes = await fetcher.persons(list(counted.named))
            state.persons = {outcome.vnummer: outcome for outcome in outcomes}

    # ---- one request -----------------------------------------------------------------------

    def request_span(self, headers: Mapping[str, str]) -> RequestSpan:
        """The request's span, continuing the caller's W3C ``traceparent`` if it sent one."""
        incoming = trace.get_current_span(extract(headers)).get_span_context()
        return self.spans.request(incoming)

    async def handle(self, headers: Mapping[str, str], payload: Mapping[str, Any]) -> Answer:
        """Authenticate, admit the purpose, then :meth:`execute`. Header names are lower-case."""
        started = datetime.now(UTC)
        with self.request_span(headers) as span:
            # What the caller declared, refused or not: a trace shows what was asked for. Only
            # well-formed identifiers: a header's free text never reaches an exporter. Read once
            # here; admission checks these same values.
            purpose_id, activity_id = declared(headers)
            span.attributes["ketenpoort.purpose"] = (
                purpose_id if is_identifier(purpose_id, "policy_id") else ""
            )
            span.attributes["ketenpoort.processing_activity"] = (
                activity_id if is_identifier(activity_id, "activity") else ""
            )
            span.attributes["ketenpoort.subjects"] = 0
            answer = await self._handle(headers, payload, span, started, purpose_id, activity_id)
            span.attributes["ketenpoort.code"] = outcome_code(answer)
            return answer

    async def _handle(
        self,
        headers: Mapping[str, str],
        payload: Mapping[str, Any],
        span: RequestSpan,
        started: datetime,
        purpose_id: str,
        activity_id: str,
    ) -> Answer:
        try:
            principal = await self.authenticator.authenticate(headers.get("authorization"))
        except GatewayError as error:
            return error_answer(error)
        span.attributes["ketenpoort.organisation"] = principal.organisation
        # Only a well-formed purpose id is written to the trail, and only the token's
        # subject as officer until X-Gebruiker has been checked (gateway.admission.officer).
        recorded_purpose = purpose_id if is_identifier(purpose_id, "policy_id") else None
        officer = principal.subject
        try:
            grant, activity, officer = self.admission.admit(
                principal, purpose_id, activity_id, headers
            )
        except GatewayError as error:
            context = self.recorder.context(
                principal, officer, recorded_purpose, None, None, span, started
            )
            return await self._record_refusal(context, error)
        return await self.execute(principal, officer, grant, activity, payload, span, started)

    async def _record_refusal(
        self,
        context: AccessContext,
        error: GatewayError,
        errors: list[dict[str, Any]] | None = None,
        identifiers: int = 0,
        decisions: tuple[FieldDecision, ...] = (),
        *,
        request_error: bool = False,
    ) -> Answer:
        """Record a request refused as a whole, then answer it: one request-level record with
        the count of identifiers it named (and the refused roots' decisions), no data subject.

        ``request_error``: the document or its variables were refused (a GraphQL request error).
        """
        batch = AuditBatch(
            context,
            datetime.now(UTC),
            request_decisions=[refusal_decision(error.code, identifiers), *decisions],
        )
        try:
            await self.audit_store.commit(batch)
        except GatewayError as audit_error:
            return error_answer(audit_error)
        answer = error_answer(error)
        answer.request_error = request_error
        if errors is not None:
            answer.body["errors"] = errors
        return answer

    async def execute(
        self,
        principal: Principal,
        officer: str,
        grant: Grant,
        activity: str,
        payload: Mapping[str, Any],
        span: RequestSpan,
        started: datetime,
    ) -> Answer:
        """Run one admitted request and commit its audit batch before answering.

        ``span`` is the request's span (entered); ``started`` its start, for the records.
        """
        state = RequestState(
            principal=principal,
            officer=officer,
            purpose=grant.purpose,
            grant=grant,
            processing_activity=activity,
            started=started,
            registries=self.registries,
            cache=self.cache,
            audit_store=self.audit_store,
            pseudonym=self.pseudonym,
        )
        context = self.recorder.context(
            principal, officer, grant.purpose.id, grant, activity, span, started
        )
        span.attributes["dpl.core.processing_activity_id"] = activity  # the register's URI
        try:
            query, variables, operation_name = read_payload(payload, self.trusted_documents)
        except GatewayError as error:
            return await self._record_refusal(context, error)
        document = self.documents.get(query)
        if document.errors:  # does not parse, too long, or not valid against the schema
            code = Code.QUERY_TOO_COMPLEX if document.too_complex else Code.BAD_USER_INPUT
            # Told against the caller's own schema: no type or field it may not see is named
            # or suggested ("Did you mean 'religie'?").
            caller_errors = errors_for_caller(document, self.visible.schema_for(grant))
            return await self._record_refusal(
                context,
                GatewayError(code, caller_errors[0].message),
                input_errors(caller_errors, code),
                request_error=not document.too_complex,
            )
        assert document.node is not None
        state.document = document.node
        try:
            # The variables as execution will see them (defaults applied, values coerced), so
            # what is planned, capped, charged and fetched is what will be resolved.
            operation = select_operation(document.node, operation_name)
            coerced = get_variable_values(
                self.core_schema, operation.variable_definitions or (), variables or {}
            )
            if isinstance(coerced, list):
                # Told against the caller's own schema, like validation errors: no enum value
                # or type it may not see is named or suggested ("Did you mean 'LOCATIE'?").
                told = variable_errors_for_caller(
                    document, operation, variables or {}, self.visible.schema_for(grant)
                )
                return await self._record_refusal(
                    context,
                    GatewayError(Code.BAD_USER_INPUT, told[0].message),
                    input_errors(told, Code.BAD_USER_INPUT),
                    request_error=True,
                )
            given: Mapping[str, Any] = coerced.coerced
            plan = self.plan_for(state, document, query, operation_name, given)
            await self.prepare(state, plan, given)
        except AnswerWouldBeNull as refusal:
            return await self._record_refusal(
                context, refusal, refusal.errors, state.tally.identifiers, refusal.decisions
            )
        except GatewayError as error:
            return await self._record_refusal(context, error, identifiers=state.tally.identifiers)
        data, errors = await self._answer(
            state, plan, document.node, query, given, variables, operation_name, span
        )
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        status = 200
        if data is None and errors:
            code = errors[0]["extensions"].get("code")
            if code in REQUEST_LEVEL:
                status = GatewayError(Code(code), "").http_status
        batch = self.recorder.batch(context, state, data is None and bool(errors), errors)
        if batch.subjects or batch.request_decisions:
            try:
                await self.audit_store.commit(batch)
            except GatewayError as audit_error:
                span.error = audit_error.code.value
                return error_answer(audit_error)
        span.attributes["ketenpoort.subjects"] = len(batch.subjects)
        self.recorder.subject_spans(batch, span)
        answer = Answer(status, body)
        if status == 429:
            retry = errors[0]["extensions"].get("retryAfter")
            if retry is not None:
                answer.headers["retry-after"] = str(retry)
        return answer

    async def _answer(
        self,
        state: RequestState,
        plan: RequestPlan,
        document: DocumentNode,
        query: str,
        given: Mapping[str, Any],
        variables: dict[str, Any] | None,
        operation_name: str | None,
        span: RequestSpan,
    ) -> tuple[Any, list[dict[str, Any]]]:
        """The response's data and errors: the plan's compiled builder, else strawberry's
        execution (introspection, and whatever the compiler leaves to it)."""
        compiled = self.compiled.answer(
            state, plan, document, operation_name, given, span.attributes
        )
        if compiled is not None:
            return compiled
        result: ExecutionResult | StrawberryResult
        if plan.introspection:
            result = introspect(
                self.visible.schema_for(state.grant), document, given, operation_name
            )
        else:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=state,
                operation_name=operation_name,
            )
        return result.data, [format_error(e) for e in result.errors or ()]


def outcome_code(answer: Answer) -> str:
    """The request's outcome for its trace: the code that refused it, else ``OK``."""
    errors = answer.body.get("errors") or ()
    if (not answer.executed or answer.status >= 400) and errors:
        return str(errors[0].get("extensions", {}).get("code", Code.INTERNAL_ERROR.value))
    return "OK"


__all__ = ["Gateway", "outcome_code"]
