"""Traces: what is recorded (spans with LDV attributes) apart from where it goes (exporters).

The tracer provider is built here and injected; nothing sets the global provider. Export is
best effort (batched, in the background): the audit store is the record of truth, and a slow or
absent collector never blocks or fails a request.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.context import attach, detach
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from gateway import __version__
from gateway.internals import span_processor_fanout

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
#: The OTLP/HTTP path of traces (OTLP specification), added to a collector URL without a path.
OTLP_TRACES_PATH: Final = "/v1/traces"
_UNSET = Status(StatusCode.UNSET)


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON object per line to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(
            json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n" for span in spans
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def exporter_for(spec: str) -> SpanExporter | None:
    """``console`` | ``file:PATH`` | ``otlp:URL`` | ``none``."""
    if spec == "none":
        return None
    if spec == "console":
        return ConsoleSpanExporter()
    if spec.startswith("file:"):
        return JsonLinesSpanExporter(Path(spec.removeprefix("file:")))
    if spec.startswith("otlp:"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=otlp_endpoint(spec.removeprefix("otlp:")), timeout=5)
    raise ValueError(
        f"KETENPOORT_TRACES must be console, file:PATH, otlp:URL or none; got {spec!r}"
    )


def otlp_endpoint(url: str) -> str:
    """The OTLP/HTTP traces endpoint for ``url``.

    A URL without a path (``http://collector:4318``, the form people type) gets the standard
    ``/v1/traces``; posting to ``/`` would lose every span without a word. A URL with a path is
    used as given. Anything but an http(s) URL with a host raises :class:`ValueError`.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"KETENPOORT_TRACES=otlp:URL needs an http(s) URL of an OTLP/HTTP collector, "
            f"e.g. otlp:http://127.0.0.1:4318; got {url!r}"
        )
    if parts.path in ("", "/"):
        return urlunsplit(parts._replace(path=OTLP_TRACES_PATH))
    return urlunsplit(parts)


def check_traces_spec(spec: str) -> None:
    """Raise :class:`ValueError` with a clear message if ``spec`` cannot export (checked at
    start-up, before any span could be lost)."""
    if spec in ("none", "console") or (spec.startswith("file:") and spec != "file:"):
        return
    if spec.startswith("otlp:"):
        otlp_endpoint(spec.removeprefix("otlp:"))
        return
    raise ValueError(
        f"KETENPOORT_TRACES must be console, file:PATH, otlp:URL or none; got {spec!r}"
    )


def service_resource() -> Resource:
    """The resource every span carries: ``service.name`` and ``service.version``."""
    return Resource.create({SERVICE_NAME: "ketenpoort", SERVICE_VERSION: __version__})


def build_tracer_provider(spec: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting per ``spec`` (or to ``exporter``). Spans are always created: their
    ids are the audit records' ``trace_id``/``span_id`` even when nothing is exported."""
    if exporter is None:
        check_traces_spec(spec)
    provider = TracerProvider(resource=service_resource())
    chosen = exporter if exporter is not None else exporter_for(spec)
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider


class SpanSink:
    """Finished spans handed straight to the provider's processors.

    The gateway knows a span's whole life when it records it (a request, a data subject), so it
    builds it finished instead of live, which is most of a span's cost. LDV asks for one log line
    per data subject and no sampling: these spans skip the sampler on purpose. They go through
    the same processors and exporters as every other span of the provider.
    """

    def __init__(self, provider: TracerProvider) -> None:
        # The provider's own fan-out to its processors (the SDK's SynchronousMultiSpanProcessor):
        # processors added later (by tests, by the benchmark) see these spans too.
        self._processor: SpanProcessor = span_processor_fanout(provider)
        self._resource = provider.resource
        self.ids = provider.id_generator
        self._scope = InstrumentationScope("ketenpoort")

    def emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start: int,
        end: int,
        attributes: dict[str, str | int],
        kind: SpanKind = SpanKind.INTERNAL,
        status: Status = _UNSET,
    ) -> None:
        """Export one finished span (times in ns since the epoch)."""
        self._processor.on_end(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                kind=kind,
                status=status,
                start_time=start,
                end_time=end,
                instrumentation_scope=self._scope,
            )
        )

    def child(self, parent: SpanContext) -> SpanContext:
        """A new span context in ``parent``'s trace."""
        return SpanContext(
            parent.trace_id,
            self.ids.generate_span_id(),
            False,
            SAMPLED,
            trace_state=parent.trace_state,
        )

    def request(self, incoming: SpanContext | None, name: str = "POST /graphql") -> RequestSpan:
        return RequestSpan(self, incoming, name)


class RequestSpan:
    """The span of one request: its ids exist from the start (registry calls and audit records
    name them), it is current while the request runs, and it is exported when it ends.

    ``incoming`` is the caller's ``traceparent`` span, if valid: the request continues its trace.
    """

    __slots__ = ("_sink", "_start", "_token", "attributes", "context", "error", "name", "parent")

    def __init__(self, sink: SpanSink, incoming: SpanContext | None, name: str) -> None:
        self._sink = sink
        self.name = name
        self.parent = incoming if incoming is not None and incoming.is_valid else None
        trace_id = self.parent.trace_id if self.parent else sink.ids.generate_trace_id()
        # The caller's tracestate travels on (W3C Trace Context): to the registries too.
        self.context = SpanContext(
            trace_id,
            sink.ids.generate_span_id(),
            False,
            SAMPLED,
            trace_state=self.parent.trace_state if self.parent else None,
        )
        self.attributes: dict[str, str | int] = {}
        self.error: str | None = None
        self._start = 0
        self._token: object = None

    @property
    def trace_id(self) -> str:
        return format(self.context.trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self.context.span_id, "016x")

    @property
    def parent_span_id(self) -> str | None:
        return format(self.parent.span_id, "016x") if self.parent else None

    def __enter__(self) -> RequestSpan:
        self._start = time.time_ns()
        # Current while the request runs, so registry client spans are its children and the
        # traceparent sent to registries names it.
        self._token = attach(set_span_in_context(NonRecordingSpan(self.context)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        detach(self._token)  # type: ignore[arg-type]
        status = Status(StatusCode.ERROR, self.error) if self.error else _UNSET
        self._sink.emit(
            self.name,
            self.context,
            self.parent,
            self._start,
            time.time_ns(),
            self.attributes,
            SpanKind.SERVER,
            status,
        )
