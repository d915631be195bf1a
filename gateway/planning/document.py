"""Parsed and validated documents, cached by their text.

The gateway plans a request before it executes it, so it needs the document first: parsing
(with the token limit) and validation happen here once per distinct text, bounded in number,
and strawberry executes that same document (``PreparedDocument``) without parsing or
validating it again.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    specified_rules,
)
from graphql.execution.values import get_variable_values
from strawberry.schema.schema import validate_document

from gateway.planning.plan import directive_variables

_TOKEN_LIMIT = re.compile(r"more than \d+ tokens")


@dataclass(frozen=True, slots=True)
class Document:
    """A document and what validation said of it (no errors: it may be executed)."""

    node: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    #: Variables used by @skip/@include: they change the plan, so they are part of its key.
    directive_variables: tuple[str, ...] = ()
    #: The parsed document even when it is not valid (for :func:`errors_for_caller`).
    parsed: DocumentNode | None = None

    @property
    def too_complex(self) -> bool:
        return any(_TOKEN_LIMIT.search(e.message) for e in self.errors)


class DocumentCache:
    """``get(text)`` → :class:`Document`; least recently used texts leave first."""

    def __init__(self, schema: GraphQLSchema, *, max_tokens: int, size: int = 512) -> None:
        self._schema = schema
        self._max_tokens = max_tokens
        self._size = size
        self._documents: OrderedDict[str, Document] = OrderedDict()

    def get(self, text: str) -> Document:
        document = self._documents.get(text)
        if document is not None:
            self._documents.move_to_end(text)
            return document
        document = self._load(text)
        self._documents[text] = document
        if len(self._documents) > self._size:
            self._documents.popitem(last=False)
        return document

    def _load(self, text: str) -> Document:
        try:
            node = parse(text, max_tokens=self._max_tokens)
        except GraphQLError as error:
            return Document(None, (error,))
        # Strawberry's validation: graphql's rules plus strawberry's own (oneOf, Maybe).
        errors = tuple(validate_document(self._schema, node, tuple(specified_rules)))
        if errors:
            return Document(None, errors, parsed=node)
        return Document(node, (), directive_variables(node), node)


def errors_for_caller(document: Document, schema: GraphQLSchema | None) -> list[GraphQLError]:
    """A refused document's errors as the caller may read them: validated against the schema
    that caller may see, so no message names or suggests a type or field hidden from it.

    Parse errors (and the token limit) do not depend on the schema and are returned as they are.
    """
    if document.parsed is None:
        return list(document.errors)
    errors = (
        validate_document(schema, document.parsed, tuple(specified_rules))
        if schema is not None
        else []
    )
    return list(errors) or [GraphQLError("The document is not valid against your schema.")]


def variable_errors_for_caller(
    document: Document,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
    schema: GraphQLSchema | None,
) -> list[GraphQLError]:
    """Why ``variables`` do not fit ``operation``, as the caller may read it: the document is
    checked and the variables coerced against the schema that caller may see, so no message
    names or suggests an enum value, type or field hidden from it.

    A document valid against the full schema but not against the caller's gets the caller's
    validation errors (``Unknown type 'StatistiekGroepering'.``), as :func:`errors_for_caller`.
    """
    fallback = [GraphQLError("The variables are not valid against your schema.")]
    if schema is None or document.parsed is None:
        return fallback
    errors = validate_document(schema, document.parsed, tuple(specified_rules))
    if errors:
        return list(errors)
    told = get_variable_values(schema, operation.variable_definitions or (), dict(variables))
    return told if isinstance(told, list) else fallback
