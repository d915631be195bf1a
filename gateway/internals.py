"""The one place Ketenpoort reaches into other libraries' private attributes.

Each reach has no public equivalent in the version named beside it; it is wrapped here so that
a library upgrade that moves it fails loudly (:class:`LibraryChanged`, and
``tests/test_internals.py``) instead of silently misbehaving. Nothing else in the project
touches another library's underscore names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosqlite
import strawberry
from graphql import GraphQLSchema
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

T = TypeVar("T")


class LibraryChanged(RuntimeError):
    """A library no longer has the internal attribute Ketenpoort was checked against."""


def _attribute(owner: object, name: str, checked: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError as exc:
        raise LibraryChanged(
            f"{type(owner).__module__}.{type(owner).__name__} has no {name!r} any more "
            f"(checked against {checked}): see gateway/internals.py"
        ) from exc


def graphql_core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema strawberry built (strawberry-graphql 0.341.2: ``Schema._schema``).

    Strawberry exposes no accessor for it; the gateway needs it to validate and plan documents
    and to filter the schema per grant before strawberry executes.
    """
    core = _attribute(schema, "_schema", "strawberry-graphql 0.341.2")
    if not isinstance(core, GraphQLSchema):
        raise LibraryChanged("strawberry.Schema._schema is no GraphQLSchema any more")
    return core


def span_processor_fanout(provider: TracerProvider) -> SpanProcessor:
    """The provider's fan-out to every processor added to it, now or later.

    opentelemetry-sdk 1.45.2: ``TracerProvider._active_span_processor``. Finished spans built by
    the gateway go through it so that processors added later (tests, the benchmark) see them.
    """
    processor = _attribute(provider, "_active_span_processor", "opentelemetry-sdk 1.45.2")
    if not isinstance(processor, SpanProcessor):
        raise LibraryChanged("TracerProvider._active_span_processor is no SpanProcessor any more")
    return processor


async def run_on_sqlite_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` on the connection's own thread, as one call.

    aiosqlite 0.22.1: ``Connection._execute`` (its own mechanism for every call) with the
    thread's ``sqlite3`` connection ``Connection._conn``. One hand-back to the event loop per
    transaction instead of one per statement.
    """
    execute = _attribute(conn, "_execute", "aiosqlite 0.22.1")
    raw = _attribute(conn, "_conn", "aiosqlite 0.22.1")
    return cast(T, await execute(fn, raw, *args))
