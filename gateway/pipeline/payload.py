"""The GraphQL request a payload carries: query, variables, operation name — or a refusal.

With a trusted-documents manifest only its documents run: the payload names one by its SHA-256
(``extensions.persistedQuery.sha256Hash``) or sends its exact text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from gateway.errors import Code, GatewayError


def read_payload(
    payload: Mapping[str, Any], trusted_documents: Mapping[str, str] | None
) -> tuple[str, dict[str, Any] | None, str | None]:
    """``(query, variables, operation_name)``; raises :class:`GatewayError` (BAD_USER_INPUT, or
    PERSISTED_QUERY_NOT_FOUND for a document outside the manifest)."""
    query = payload.get("query")
    variables = payload.get("variables")
    operation_name = payload.get("operationName")
    if trusted_documents is not None:
        query = _trusted(payload.get("extensions"), query, trusted_documents)
    if not isinstance(query, str) or not query.strip():
        raise GatewayError(Code.BAD_USER_INPUT, "A request needs a query string.")
    if variables is not None and not isinstance(variables, dict):
        raise GatewayError(Code.BAD_USER_INPUT, "variables must be an object.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise GatewayError(Code.BAD_USER_INPUT, "operationName must be a string.")
    return query, variables, operation_name


def _trusted(extensions: Any, query: Any, trusted_documents: Mapping[str, str]) -> str:
    digest = None
    if isinstance(extensions, dict):
        persisted = extensions.get("persistedQuery")
        if isinstance(persisted, dict):
            digest = persisted.get("sha256Hash")
    if digest is None and isinstance(query, str):
        digest = hashlib.sha256(query.encode()).hexdigest()
    trusted = trusted_documents.get(digest) if isinstance(digest, str) else None
    if trusted is None:
        raise GatewayError(
            Code.PERSISTED_QUERY_NOT_FOUND, "Only trusted documents are executed here."
        )
    return trusted
