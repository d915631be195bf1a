"""Traces: what is recorded (spans with LDV attributes) apart from where it goes (exporters).

The tracer provider is built here and injected; nothing sets the global provider. Export is
best effort (batched, in the background): the audit store is the record of truth, and a slow or
absent collector never blocks or fails a request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags


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

        return OTLPSpanExporter(endpoint=spec.removeprefix("otlp:"), timeout=5)
    raise ValueError(
        f"KETENPOORT_TRACES must be console, file:PATH, otlp:URL or none; got {spec!r}"
    )


def build_tracer_provider(spec: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider exporting per ``spec`` (or to ``exporter``). Spans are always created: their
    ids are the audit records' ``trace_id``/``span_id`` even when nothing is exported."""
    provider = TracerProvider()
    chosen = exporter if exporter is not None else exporter_for(spec)
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider


class SubjectSpans:
    """Finished spans, one per data subject, handed straight to the provider's processors.

    LDV asks for one log line per data subject and no sampling, so these spans skip the
    sampler on purpose; they are built finished (name, ids, times, a few attributes) instead of
    as live spans, which is most of their cost. They go through the same processors and
    exporters as every other span of the provider.
    """

    def __init__(self, provider: TracerProvider) -> None:
        # The provider's own fan-out to its processors (the SDK's SynchronousMultiSpanProcessor):
        # processors added later (by tests, by the benchmark) see these spans too.
        self._processor: SpanProcessor = provider._active_span_processor
        self._resource = provider.resource
        self._ids = provider.id_generator
        self._scope = InstrumentationScope("ketenpoort.subjects")
        self._flags = TraceFlags(TraceFlags.SAMPLED)

    def emit(
        self, name: str, parent: SpanContext, start: int, end: int, attributes: dict[str, str]
    ) -> None:
        """One finished span below ``parent`` (times in ns since the epoch)."""
        context = SpanContext(
            parent.trace_id, self._ids.generate_span_id(), is_remote=False, trace_flags=self._flags
        )
        self._processor.on_end(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                kind=SpanKind.INTERNAL,
                start_time=start,
                end_time=end,
                instrumentation_scope=self._scope,
            )
        )
