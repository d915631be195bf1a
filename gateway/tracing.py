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

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)


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
