"""Stable error codes and the exceptions that carry them.

Every refusal a caller can see has a code from :class:`Code`; the HTTP status that goes with a
request-level refusal lives beside it, so the HTTP layer never guesses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    """The `extensions.code` values (docs/design.md, Interfaces): stable, clients switch on them."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    PURPOSE_REQUIRED = "PURPOSE_REQUIRED"
    PURPOSE_NOT_GRANTED = "PURPOSE_NOT_GRANTED"
    PURPOSE_SUSPENDED = "PURPOSE_SUSPENDED"
    PURPOSE_FORBIDDEN = "PURPOSE_FORBIDDEN"
    PROCESSING_ACTIVITY_NOT_REGISTERED = "PROCESSING_ACTIVITY_NOT_REGISTERED"
    FIELD_NOT_PERMITTED = "FIELD_NOT_PERMITTED"
    SUBJECT_OUT_OF_SCOPE = "SUBJECT_OUT_OF_SCOPE"
    TOO_MANY_SUBJECTS = "TOO_MANY_SUBJECTS"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    QUOTA_UNAVAILABLE = "QUOTA_UNAVAILABLE"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    CACHE_UNAVAILABLE = "CACHE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


#: HTTP status of a request refused as a whole with this code (200 for field-level codes).
HTTP_STATUS: dict[Code, int] = {
    Code.UNAUTHENTICATED: 401,
    Code.PURPOSE_REQUIRED: 400,
    Code.PURPOSE_NOT_GRANTED: 403,
    Code.PURPOSE_SUSPENDED: 403,
    Code.PURPOSE_FORBIDDEN: 403,
    Code.PROCESSING_ACTIVITY_NOT_REGISTERED: 403,
    Code.QUOTA_EXCEEDED: 429,
    Code.QUOTA_UNAVAILABLE: 503,
    Code.AUDIT_UNAVAILABLE: 503,
    Code.CACHE_UNAVAILABLE: 503,
    Code.BAD_USER_INPUT: 400,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.NOT_ACCEPTABLE: 406,
    Code.UNSUPPORTED_MEDIA_TYPE: 415,
    Code.REQUEST_TOO_LARGE: 413,  # 431 when it is the headers that are too large
    Code.PERSISTED_QUERY_NOT_FOUND: 400,
    Code.QUERY_TOO_COMPLEX: 400,
    Code.TOO_MANY_SUBJECTS: 400,
    Code.INTERNAL_ERROR: 500,
}


class GatewayError(Exception):
    """An error a caller may see: a stable code, a human message and extra extensions.

    Raised inside resolvers it becomes a GraphQL error at the field's path (graphql-core copies
    ``extensions`` from the original error); raised before execution it refuses the request.
    """

    def __init__(self, code: Code, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extensions: dict[str, Any] = {"code": code.value, **extensions}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 200)

    def fresh(self) -> GatewayError:
        """A new plain error with this one's code, message and extensions, and no traceback.

        What a cache of refusals raises. Raising the cached object itself would chain the
        raising request's frames onto its ``__traceback__``, so every request refused by that
        entry would stay reachable (headers, payload, span) for as long as the cache keeps it.
        """
        extensions = {k: v for k, v in self.extensions.items() if k != "code"}
        return GatewayError(self.code, self.message, **extensions)

    def __repr__(self) -> str:
        return f"GatewayError({self.code.value}, {self.message!r})"
