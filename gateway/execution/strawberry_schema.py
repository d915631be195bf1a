"""The strawberry schema the gateway executes, and the one extension it runs per request.

Nothing of ours runs per field inside strawberry: limits, plan, caps, quota and fetching are
decided before execution (``Gateway.prepare``), so a refusal never reaches a resolver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from gateway.errors import GatewayError
from gateway.execution.context import RequestState
from gateway.execution.schema import Query, schema_config

log = logging.getLogger("ketenpoort.execution")


class KetenpoortSchema(strawberry.Schema):
    """Strawberry's schema, logging only what is unexpected (refusals are not errors of ours).

    Messages are not logged: they could carry input values. Type and path are enough to find
    the cause in the trace.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, GatewayError):
                log.error(
                    "internal error at %s: %s",
                    error.path,
                    type(original).__name__,
                    exc_info=(type(original), original, original.__traceback__),
                )


class PreparedDocument(SchemaExtension):
    """Hands strawberry the document the gateway already parsed and validated.

    The gateway needs the document before execution (to plan, check limits and fetch), so it
    parses and validates it first (:mod:`gateway.planning.document`, cached by text); strawberry
    then neither parses nor validates it again.
    """

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        state: RequestState = context.context
        context.graphql_document = state.document
        context.pre_execution_errors = []  # validated: see gateway.planning.document
        yield


def build_schema() -> KetenpoortSchema:
    """The gateway's schema. Nothing of ours runs per field or per hook inside strawberry:
    limits, plan, caps, quota and fetching are decided before execution
    (:meth:`Gateway.prepare`), so a refusal never reaches a resolver."""
    return KetenpoortSchema(query=Query, extensions=[PreparedDocument], config=schema_config())
