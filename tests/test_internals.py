"""The reaches into other libraries' internals (gateway/internals.py) still hold.

Each test fails loudly when a library upgrade moves the attribute the gateway relies on.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest
import strawberry
from graphql import GraphQLSchema
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.internals import (
    LibraryChanged,
    graphql_core_schema,
    run_on_sqlite_thread,
    span_processor_fanout,
)


@strawberry.type
class _Query:
    answer: int = 42


def test_strawberry_core_schema_is_the_executed_one() -> None:
    schema = strawberry.Schema(query=_Query)
    core = graphql_core_schema(schema)
    assert isinstance(core, GraphQLSchema)
    assert core.query_type is not None and "answer" in core.query_type.fields


def test_span_fanout_reaches_processors_added_later() -> None:
    provider = TracerProvider()
    fanout = span_processor_fanout(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # added after the fan-out was taken
    with provider.get_tracer("t").start_as_current_span("probe") as span:
        assert isinstance(span, ReadableSpan)
        finished = span
    exporter.clear()
    fanout.on_end(finished)
    assert [s.name for s in exporter.get_finished_spans()] == ["probe"]
    assert isinstance(fanout, SpanProcessor)


async def test_sqlite_call_runs_on_the_connection_thread(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "probe.db") as conn:

        def probe(raw: sqlite3.Connection, value: int) -> tuple[int, str]:
            row = raw.execute("SELECT ?", (value,)).fetchone()
            return int(row[0]), threading.current_thread().name

        value, thread = await run_on_sqlite_thread(conn, probe, 7)
        assert value == 7
        assert thread != threading.current_thread().name


def test_a_moved_attribute_fails_loudly() -> None:
    with pytest.raises(LibraryChanged, match="checked against"):
        graphql_core_schema(object())  # type: ignore[arg-type]
