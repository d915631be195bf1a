"""The gateway service: one request from headers to an answer, recorded before it is sent.

Order of a request (DESIGN.md, One request): trace → authenticate → purpose → parse/validate
(cached by text) → plan (cached per document and grant), limits, caps, quota → fetch every
person named, one batch per registry → execute (strawberry; refusals are already laid over the
registry objects) → commit the audit batch → answer. If the commit fails the answer is
``AUDIT_UNAVAILABLE`` and no data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from graphql import DocumentNode, ExecutionResult, GraphQLError, GraphQLNonNull, GraphQLSchema
from graphql import execute as graphql_execute
from graphql.execution.values import get_variable_values
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider
from strawberry.types import ExecutionResult as StrawberryResult

from gateway.admission.officer import APPLICATION_QUOTA_FACTOR, officer_of, quota_keys
from gateway.admission.tokens import Authenticator, Principal
from gateway.audit.model import (
    AccessContext,
    AuditBatch,
    Decision,
    FieldDecision,
    SubjectAccess,
)
from gateway.audit.store import AuditStore
from gateway.errors import Code, GatewayError
from gateway.execution.cache import RecordCache
from gateway.execution.context import RequestState
from gateway.execution.fetch import Registries
from gateway.execution.fields import fetcher_for
from gateway.execution.introspection import filtered_schema
from gateway.execution.schema import schema_coordinates
from gateway.execution.strawberry_schema import build_schema
from gateway.identifiers import is_identifier
from gateway.internals import graphql_core_schema
from gateway.observability.tracing import RequestSpan, SpanSink
from gateway.pipeline.answer import REQUEST_LEVEL, Answer, error_answer, format_error, input_errors
from gateway.pipeline.refusals import (
    AnswerWouldBeNull,
    null_answer_refusal,
    refusal_decision,
    undelivered,
)
from gateway.planning.document import (
    Document,
    DocumentCache,
    errors_for_caller,
    variable_errors_for_caller,
)
from gateway.planning.plan import RequestPlan, build_plan, select_operation
from gateway.policy.model import Grant, Policy
from gateway.proportionality.counting import RootRequest, Tally, tally
from gateway.proportionality.quota import QuotaStore


def declared(headers: Mapping[str, str]) -> tuple[str, str]:
    """The purpose (``X-Doelbinding``) and processing activity (``X-Verwerking``) a request
    declares, stripped; read once per request, checked by :meth:`Gateway.admit`."""
    return headers.get("x-doelbinding", "").strip(), headers.get("x-verwerking", "").strip()


class Gateway:
    """Everything a request needs, built once at start (see :mod:`gateway.http.app`)."""

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
        limits: Any,
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
        self._plans: dict[tuple[Any, ...], RequestPlan] = {}
        self._admitted: dict[tuple[Principal, str, str], tuple[Grant, str] | GatewayError] = {}
        self._filtered: dict[tuple[str, frozenset[str], str], Any] = {}
        self._joined: dict[int, tuple[tuple[FieldDecision, ...], str, str]] = {}

    # ---- purpose ---------------------------------------------------------------------------

    def admit(self, principal: Principal, headers: Mapping[str, str]) -> tuple[Grant, str, str]:
        """Check the declared purpose; return (grant, processing activity URI, officer)."""
        return self._admit(principal, *declared(headers), headers)

    def _admit(
        self, principal: Principal, purpose_id: str, activity: str, headers: Mapping[str, str]
    ) -> tuple[Grant, str, str]:
        """:meth:`admit` of a purpose and activity already read by :func:`declared`."""
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
        key = (principal, purpose_id, activity)
        admitted = self._admitted.get(key)
        if admitted is None:
            try:
                admitted = self._admission(principal, purpose_id, activity)
            except GatewayError as error:
                admitted = error
            if len(self._admitted) > 4096:
                self._admitted.clear()
            self._admitted[key] = admitted
        if isinstance(admitted, GatewayError):
            raise admitted
        return admitted[0], admitted[1], officer

    def _admission(self, principal: Principal, purpose_id: str, activity: str) -> tuple[Grant, str]:
        """The policy's answer for a principal, a purpose and an activity (pure: cached)."""
        organisation = self.policy.organisation_by_oin(principal.oin)
        purpose = self.policy.purposes.get(purpose_id)
        if organisation is None or organisation.id != principal.organisation or purpose is None:
            raise GatewayError(
                Code.PURPOSE_NOT_GRANTED,
                f"Purpose {purpose_id} is not granted.",
                doelbinding=purpose_id,
            )
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
        granted = purpose_id in principal.purposes and purpose_id in self.policy.purposes_for(
            organisation.id, principal.roles
        )
        if not granted:
            raise GatewayError(
                Code.PURPOSE_NOT_GRANTED,
                f"Purpose {purpose_id} is not granted.",
                doelbinding=purpose_id,
            )
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
        grant = self.policy.grant(organisation.id, principal.roles, purpose_id)
        return grant, self.policy.processing_activity_uri(activity)

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
        self._check_limits(plan)
        if plan.introspection:
            if plan.roots:
                raise GatewayError(
                    Code.BAD_USER_INPUT, "Ask introspection in an operation of its own."
                )
            return
        counted = self._count(state, plan, variables)
        refusal = null_answer_refusal(plan, self.non_null_roots)
        if refusal is not None:
            raise refusal
        await self._charge(state, counted.units)
        state.plan = plan
        if counted.named:
            # Every person named by any root field (aliases included), one batch per registry.
            fetcher = fetcher_for(state)
            outcomes = await fetcher.persons(list(counted.named))
            state.persons = {outcome.vnummer: outcome for outcome in outcomes}

    def _check_limits(self, plan: RequestPlan) -> None:
        limits = self.limits
        if (
            plan.depth > limits.max_depth
            or plan.aliases > limits.max_aliases
            or plan.fields > limits.max_fields
        ):
            raise GatewayError(Code.QUERY_TOO_COMPLEX, "The query is too complex.")

    def _count(self, state: RequestState, plan: RequestPlan, variables: Mapping[str, Any]) -> Tally:
        """Validate every identifier and count every root (refused ones too) against the cap
        (:mod:`gateway.proportionality.counting`)."""
        roots = (
            RootRequest(root.field_name, root.argument_values(variables), root.refusal is not None)
            for root in plan.roots.values()
        )
        counted = tally(roots, state.purpose, into=state.tally)
        if plan.fields * max(counted.persons, 1) > self.limits.max_cost:
            raise GatewayError(Code.QUERY_TOO_COMPLEX, "The query is too costly.")
        return counted

    async def _charge(self, state: RequestState, units: int) -> None:
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
            decision = await self.quota_store.reserve(key, purpose.id, units, limit)
            if not decision.granted:
                raise GatewayError(
                    Code.QUOTA_EXCEEDED,
                    f"Daily quota of {decision.limit} persons for {purpose.id} reached.",
                    retryAfter=decision.retry_after,
                )

    def introspect(
        self,
        state: RequestState,
        document: DocumentNode,
        variables: Mapping[str, Any],
        operation_name: str | None,
    ) -> ExecutionResult:
        schema = self._filtered_schema(state.grant)
        if schema is None:
            return ExecutionResult(
                data=None, errors=[GraphQLError("Nothing in this schema is visible to you.")]
            )
        result = graphql_execute(
            schema, document, variable_values=dict(variables), operation_name=operation_name
        )
        assert isinstance(result, ExecutionResult)
        return result

    def _filtered_schema(self, grant: Grant) -> GraphQLSchema | None:
        """The schema this grant may see (cached per grant): introspection and validation
        messages are answered from it."""
        key = (grant.organisation, grant.roles, grant.purpose.id)
        if key not in self._filtered:
            self._filtered[key] = filtered_schema(self.core_schema, grant.allowed)
        schema: GraphQLSchema | None = self._filtered[key]
        return schema

    # ---- one request -----------------------------------------------------------------------

    def _context(
        self,
        principal: Principal,
        officer: str,
        purpose: str | None,
        grant: Grant | None,
        activity: str | None,
        span: RequestSpan,
        started: datetime,
    ) -> AccessContext:
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
            principal = self.authenticator.authenticate(headers.get("authorization"))
        except GatewayError as error:
            return error_answer(error)
        span.attributes["ketenpoort.organisation"] = principal.organisation
        # Only a well-formed purpose id is written to the trail, and only the token's
        # subject as officer until X-Gebruiker has been checked (gateway.admission.officer).
        recorded_purpose = purpose_id if is_identifier(purpose_id, "policy_id") else None
        officer = principal.subject
        try:
            grant, activity, officer = self._admit(principal, purpose_id, activity_id, headers)
        except GatewayError as error:
            context = self._context(principal, officer, recorded_purpose, None, None, span, started)
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
        context = self._context(
            principal, officer, grant.purpose.id, grant, activity, span, started
        )
        span.attributes["dpl.core.processing_activity_id"] = activity  # the register's URI
        try:
            query, variables, operation_name = self._document(payload)
        except GatewayError as error:
            return await self._record_refusal(context, error)
        document = self.documents.get(query)
        if document.errors:  # does not parse, too long, or not valid against the schema
            code = Code.QUERY_TOO_COMPLEX if document.too_complex else Code.BAD_USER_INPUT
            # Told against the caller's own schema: no type or field it may not see is named
            # or suggested ("Did you mean 'religie'?").
            caller_errors = errors_for_caller(document, self._filtered_schema(grant))
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
                    document, operation, variables or {}, self._filtered_schema(grant)
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
        result: ExecutionResult | StrawberryResult
        if plan.introspection:
            result = self.introspect(state, document.node, given, operation_name)
        else:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=state,
                operation_name=operation_name,
            )
        errors = [format_error(e) for e in result.errors or ()]
        body: dict[str, Any] = {"data": result.data}
        if errors:
            body["errors"] = errors
        status = 200
        if result.data is None and errors:
            code = errors[0]["extensions"].get("code")
            if code in REQUEST_LEVEL:
                status = GatewayError(Code(code), "").http_status
        batch = self._batch(context, state, result.data is None and bool(errors), errors)
        if batch.subjects or batch.request_decisions:
            try:
                await self.audit_store.commit(batch)
            except GatewayError as audit_error:
                span.error = audit_error.code.value
                return error_answer(audit_error)
        span.attributes["ketenpoort.subjects"] = len(batch.subjects)
        self._subject_spans(batch, span)
        answer = Answer(status, body)
        if status == 429:
            retry = errors[0]["extensions"].get("retryAfter")
            if retry is not None:
                answer.headers["retry-after"] = str(retry)
        return answer

    def _batch(
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

    def _document(
        self, payload: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        extensions = payload.get("extensions")
        if self.trusted_documents is not None:
            digest = None
            if isinstance(extensions, dict):
                persisted = extensions.get("persistedQuery")
                if isinstance(persisted, dict):
                    digest = persisted.get("sha256Hash")
            if digest is None and isinstance(query, str):
                import hashlib

                digest = hashlib.sha256(query.encode()).hexdigest()
            trusted = self.trusted_documents.get(digest) if isinstance(digest, str) else None
            if trusted is None:
                raise GatewayError(
                    Code.PERSISTED_QUERY_NOT_FOUND, "Only trusted documents are executed here."
                )
            query = trusted
        if not isinstance(query, str) or not query.strip():
            raise GatewayError(Code.BAD_USER_INPUT, "A request needs a query string.")
        if variables is not None and not isinstance(variables, dict):
            raise GatewayError(Code.BAD_USER_INPUT, "variables must be an object.")
        if operation_name is not None and not isinstance(operation_name, str):
            raise GatewayError(Code.BAD_USER_INPUT, "operationName must be a string.")
        return query, variables, operation_name

    def _subject_spans(self, batch: AuditBatch, request: RequestSpan) -> None:
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
        cached = self._joined.get(id(decisions))
        if cached is not None and cached[0] is decisions:
            return cached[1], cached[2]
        given = ",".join(d.coordinate for d in decisions if d.decision is Decision.GIVEN)
        refused = ",".join(
            f"{d.coordinate}:{d.reason}" for d in decisions if d.decision is not Decision.GIVEN
        )
        if len(self._joined) > 4096:
            self._joined.clear()
        self._joined[id(decisions)] = (decisions, given, refused)
        return given, refused


def outcome_code(answer: Answer) -> str:
    """The request's outcome for its trace: the code that refused it, else ``OK``."""
    errors = answer.body.get("errors") or ()
    if (not answer.executed or answer.status >= 400) and errors:
        return str(errors[0].get("extensions", {}).get("code", Code.INTERNAL_ERROR.value))
    return "OK"


__all__ = ["Gateway", "outcome_code"]
