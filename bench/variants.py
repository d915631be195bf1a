"""The three variants: ``bare``, ``naive`` and ``ketenpoort``, each one awaitable per request.

All three serve the same GraphQL types (:mod:`gateway.domain`) over the same merged registry
records (dicts read with ``operator.getitem``, as the gateway does), so what differs is exactly
what accountability adds.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import strawberry
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.extensions.tracing import OpenTelemetryExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from bench.common import ORGANISATION, PURPOSE, ROLES
from bench.store import ChainBufferStore
from gateway import domain
from gateway.admission.tokens import Principal, load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import Running, start_gateway
from gateway.audit.logcheck import LogCheck
from gateway.audit.merkle import Node
from gateway.audit.model import AccessContext, AuditBatch, AuditQuery, AuditRecord
from gateway.audit.note import Checkpoint
from gateway.audit.querying import EntryRows
from gateway.audit.tree import TreeReader
from gateway.audit.verify import VerifyResult
from gateway.config import Settings
from gateway.execution.schema import schema_config
from gateway.pipeline.answer import Answer
from gateway.pipeline.service import Gateway
from gateway.policy.model import Grant

# --- shared pieces ------------------------------------------------------------------------------


class NullExporter(SpanExporter):
    """Accepts every span and drops it (counting): spans still go through the batch processor."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class MemoryAuditStore:
    """An :class:`~gateway.audit.store.AuditStore` whose commit appends the batch to a list.

    It isolates the gateway's own cost from the database's (measured apart, in ``store_write``).
    The list is bounded: past ``keep`` batches it starts again (the counts go on).
    """

    def __init__(self, keep: int = 10_000) -> None:
        self.batches: list[AuditBatch] = []
        self.commits = 0
        self.records = 0
        self._keep = keep

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.batches.clear()

    async def commit(self, batch: AuditBatch) -> None:
        if len(self.batches) >= self._keep:
            self.batches.clear()
        self.batches.append(batch)
        self.commits += 1
        self.records += batch.record_count()

    async def search(self, q: AuditQuery) -> list[AuditRecord]:
        return []

    async def verify(self) -> VerifyResult:
        return VerifyResult(True, 0, None, "in-memory benchmark store: nothing to verify")

    async def purge(
        self,
        older_than: dt.timedelta,
        context: AccessContext,
        protect: Mapping[str, dt.timedelta] | None = None,
    ) -> int:
        return 0

    async def purge_expired(
        self,
        retention: Mapping[str, dt.timedelta],
        context: AccessContext,
        now: dt.datetime | None = None,
    ) -> int:
        return 0

    async def ready(self) -> bool:
        return True

    on_append: Callable[[int], None] | None = None

    def tree(self) -> TreeReader:
        # No leaves: the Merkle log's own cost is measured apart (bench/store.py).
        async def nodes(wanted: list[Node]) -> dict[Node, bytes]:
            return {}

        async def size() -> int:
            return 0

        return TreeReader(nodes, size)

    async def check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        return LogCheck(True, "in-memory benchmark store: nothing to check")

    async def entries(self, seqs: list[int]) -> EntryRows:
        return EntryRows([], [], {})


class SpanCounter(SpanProcessor):
    """Counts ended spans (the batch processor may drop some under load; this never does)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def sdk_provider(exporter: SpanExporter, counter: SpanCounter | None = None) -> TracerProvider:
    """An SDK provider exporting through a batch processor, as the gateway builds its own."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if counter is not None:
        provider.add_span_processor(counter)
    return provider


def _extensions() -> list[Any]:
    # Factories, as the gateway passes them: strawberry builds fresh extensions per request.
    return [lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512)]


def _persons(records: Mapping[str, Any], vnummers: Sequence[str]) -> list[Any]:
    return [records.get(v) for v in vnummers]


# --- bare ---------------------------------------------------------------------------------------


def bare_schema(records: Mapping[str, Any]) -> strawberry.Schema:
    """The floor: same types, root resolvers return the stored records; nothing else."""

    @strawberry.type(name="Query")
    class BareQuery:
        @strawberry.field
        async def vreemdeling(self, vnummer: strawberry.ID) -> domain.Vreemdeling | None:
            return records.get(vnummer)

        @strawberry.field
        async def vreemdelingen(
            self, vnummers: list[strawberry.ID]
        ) -> list[domain.Vreemdeling | None]:
            return _persons(records, vnummers)

    return strawberry.Schema(
        query=BareQuery,
        extensions=_extensions(),
        config=schema_config(),
    )


# --- naive --------------------------------------------------------------------------------------


class PolicyPermission(BasePermission):
    """What a Strawberry user writes: each field asks whether its coordinate is in the set."""

    message = "FIELD_NOT_PERMITTED"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        allowed: frozenset[str] = info.context["allowed"]
        return f"{info.path.typename}.{info.field_name}" in allowed


_NAIVE_MODULE = "bench._naive_domain"
#: The domain types a person query reaches (all of Vreemdeling's object fields, recursively).
_GUARDED = (
    domain.Naam,
    domain.Geboorte,
    domain.Nationaliteit,
    domain.Verblijfsstatus,
    domain.Meldplicht,
    domain.Signalering,
    domain.Biometrie,
    domain.Gezondheid,
    domain.StrafrechtelijkGegeven,
    domain.Locatie,
    domain.Opvang,
    domain.Overlastmelding,
    domain.Procedure,
    domain.Vreemdeling,
)


def _naive_domain() -> types.ModuleType:
    """Copies of the domain types with ``permission_classes`` on every field (built once).

    The copies live in a module of their own so the string annotations of :mod:`gateway.domain`
    (``Naam | None`` ...) resolve to the guarded copies, not the originals.
    """
    module = sys.modules.get(_NAIVE_MODULE)
    if module is not None:
        return module
    module = types.ModuleType(_NAIVE_MODULE)
    module.__dict__.update(
        Date=domain.Date,
        SignaleringSoort=domain.SignaleringSoort,
        strawberry=strawberry,
    )
    sys.modules[_NAIVE_MODULE] = module  # strawberry reads the namespace from sys.modules
    for original in _GUARDED:
        annotations = dict(original.__annotations__)
        namespace: dict[str, Any] = {
            "__annotations__": annotations,
            "__module__": _NAIVE_MODULE,
            "__qualname__": original.__name__,
        }
        for name in annotations:
            namespace[name] = strawberry.field(permission_classes=[PolicyPermission])
        cls = type(original.__name__, (), namespace)
        module.__dict__[original.__name__] = strawberry.type(cls, name=original.__name__)
    return module


#: Built at import: the root resolvers' (string) annotations name ``_naive.Vreemdeling``.
_naive: Any = _naive_domain()


def naive_schema(records: Mapping[str, Any], provider: TracerProvider) -> strawberry.Schema:
    """A permission class on every field (each field asks the policy's allowed set) plus
    Strawberry's OpenTelemetry extension: spans for the operation's phases and the root
    resolver — strawberry does not trace fields read by the default resolver, so a person
    query ends the same few spans at any size (the summary prints the count)."""

    @strawberry.type(name="Query")
    class NaiveQuery:
        @strawberry.field(permission_classes=[PolicyPermission])
        async def vreemdeling(self, vnummer: strawberry.ID) -> _naive.Vreemdeling | None:
            return records.get(vnummer)

        @strawberry.field(permission_classes=[PolicyPermission])
        async def vreemdelingen(
            self, vnummers: list[strawberry.ID]
        ) -> list[_naive.Vreemdeling | None]:
            return _persons(records, vnummers)

    # The extension takes the provider as an argument, so no global provider is set.
    return strawberry.Schema(
        query=NaiveQuery,
        extensions=[
            *_extensions(),
            lambda: OpenTelemetryExtension(tracer_provider=provider),
        ],
        config=schema_config(),
    )


# --- the three runners --------------------------------------------------------------------------


def encode(result: Any) -> dict[str, Any]:
    """The body a bare Strawberry endpoint would send."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [e.formatted for e in result.errors]
    return body


class SchemaRunner:
    """One request of ``bare`` or ``naive``: ``schema.execute`` with the payload."""

    def __init__(self, schema: strawberry.Schema, context: Any = None) -> None:
        self.schema = schema
        self.context = context

    async def __call__(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        result = await self.schema.execute(
            payload["query"],
            variable_values=payload.get("variables"),
            operation_name=payload.get("operationName"),
            context_value=self.context,
        )
        return encode(result)


@dataclass
class KetenpoortRunner:
    """The gateway's path after authentication: request span, then :meth:`Gateway.execute`."""

    running: Running
    store: ChainBufferStore
    exporter: NullExporter
    spans: SpanCounter
    principal: Principal
    grant: Grant
    activity: str
    officer: str
    token: str

    @property
    def gateway(self) -> Gateway:
        return self.running.gateway

    async def __call__(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self.execute(payload)
        if answer.status != 200:
            raise RuntimeError(f"ketenpoort answered {answer.status}: {answer.body}")
        return answer.body

    async def execute(self, payload: Mapping[str, Any]) -> Answer:
        # As Gateway.handle does it, minus authentication and admission (done once).
        gateway = self.running.gateway
        started = dt.datetime.now(dt.UTC)
        with gateway.request_span({}) as span:
            return await gateway.execute(
                self.principal,
                self.officer,
                self.grant,
                self.activity,
                payload,
                span,
                started,
            )

    async def close(self) -> None:
        await self.running.close()


def dev_token(settings: Settings, policy_oin: str, subject: str = "regievoerder-bench") -> str:
    return mint_dev_token(
        load_or_create_dev_key(settings.state_dir),
        issuer=settings.issuer,
        audience=settings.audience,
        subject=subject,
        oin=policy_oin,
        organisation=ORGANISATION,
        roles=list(ROLES),
        purposes=[PURPOSE],
        ttl=6 * 3600,
    )


async def start_ketenpoort(settings: Settings, mocks: Any) -> KetenpoortRunner:
    """A gateway committing to :class:`ChainBufferStore` (the real audit path minus the SQL
    write), spans through a batch processor to a no-op exporter."""
    store = ChainBufferStore()
    exporter = NullExporter()
    running = await start_gateway(settings, audit_store=store, exporter=exporter, mocks=mocks)
    gateway = running.gateway
    counter = SpanCounter()
    gateway.tracer_provider.add_span_processor(counter)
    oin = gateway.policy.organisations[ORGANISATION].oin
    token = dev_token(settings, oin)
    principal = await gateway.authenticator.authenticate(f"Bearer {token}")
    activity_id = gateway.policy.purposes[PURPOSE].processing_activities[0]
    grant, activity, officer = gateway.admit(
        principal, {"x-doelbinding": PURPOSE, "x-verwerking": activity_id}
    )
    return KetenpoortRunner(
        running, store, exporter, counter, principal, grant, activity, officer, token
    )


def state_settings(state: Path, policy: Path, **overrides: Any) -> Settings:
    """Settings of every benchmark gateway: the policy copy, a long cache TTL, traces off
    (the exporter is passed in), and a cost limit that admits the 100-person growth point."""
    from gateway.config import Limits

    base = Settings(
        state_dir=state,
        policy=policy,
        traces="none",
        cache_ttl=24 * 3600.0,
        limits=Limits(max_cost=50_000),
    )
    return base.with_(**overrides) if overrides else base
