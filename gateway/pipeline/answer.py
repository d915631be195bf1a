"""What a caller receives: an HTTP status, a JSON body with stable error codes.

Every error carries ``extensions.code``; an error the gateway did not mean to give (an internal
one) is masked, keeping only its path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import GraphQLError

from gateway.errors import Code, GatewayError

#: Codes that refuse a request as a whole: their HTTP status is the answer's status.
REQUEST_LEVEL = {
    Code.UNAUTHENTICATED,
    Code.PURPOSE_REQUIRED,
    Code.PURPOSE_NOT_GRANTED,
    Code.PURPOSE_SUSPENDED,
    Code.PURPOSE_FORBIDDEN,
    Code.PROCESSING_ACTIVITY_NOT_REGISTERED,
    Code.TOO_MANY_SUBJECTS,
    Code.QUOTA_EXCEEDED,
    Code.QUOTA_UNAVAILABLE,
    Code.QUERY_TOO_COMPLEX,
    Code.PERSISTED_QUERY_NOT_FOUND,
    Code.BAD_USER_INPUT,
    Code.AUDIT_UNAVAILABLE,
}


@dataclass(slots=True)
class Answer:
    """An HTTP answer: status, JSON body, extra headers.

    ``executed`` is False for a request refused before execution: its wire form has no ``data``
    entry (GraphQL over HTTP), though :attr:`body` keeps ``"data": None`` for in-process
    callers. ``request_error`` marks a GraphQL request error (the document does not parse or
    validate, the variables do not coerce): its status depends on the media type the caller
    accepts, which the HTTP layer decides (200 for ``application/json``, 400 otherwise).
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    executed: bool = True
    request_error: bool = False

    def wire(self) -> dict[str, Any]:
        """The body as sent: without ``data`` when the request did not execute."""
        if self.executed:
            return self.body
        return {k: v for k, v in self.body.items() if k != "data"}

    def encode(self) -> bytes:
        """The body as sent (:meth:`wire`), UTF-8 JSON; never fails on the strings in it.

        orjson encodes it (several times faster than the standard library, which matters for a
        50-person answer). What orjson refuses — a lone surrogate, an integer beyond 64 bits —
        goes to the standard library. The HTTP boundary refuses bodies with lone surrogates, so
        none should reach an answer; should one all the same (echoed in an error message, say),
        the body is sent with ``\\u`` escapes instead: the same JSON value the trail describes,
        not an HTTP 500.
        """
        wire = self.wire()
        try:
            return orjson.dumps(wire)
        except orjson.JSONEncodeError:
            pass
        text = json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
        try:
            return text.encode()
        except UnicodeEncodeError:
            return json.dumps(wire, separators=(",", ":")).encode()


def error_answer(error: GatewayError) -> Answer:
    headers = {}
    if "retryAfter" in error.extensions:
        headers["retry-after"] = str(error.extensions["retryAfter"])
    return Answer(
        error.http_status,
        {"data": None, "errors": [{"message": error.message, "extensions": error.extensions}]},
        headers,
        executed=False,
    )


def input_errors(errors: Iterable[GraphQLError], code: Code) -> list[dict[str, Any]]:
    """Errors about the caller's own document or variables, all with ``code``: whatever
    caused them (a scalar refusing a value, say), they are the caller's input, not ours."""
    return [{**error.formatted, "extensions": {"code": code.value}} for error in errors]


def format_error(error: GraphQLError, default: Code = Code.BAD_USER_INPUT) -> dict[str, Any]:
    """A GraphQL error as sent: a stable code always (``default`` where graphql-core gave
    none: validation and variable errors); internal errors masked."""
    original = error.original_error
    formatted: dict[str, Any]
    if original is None or isinstance(original, GatewayError) or "code" in (error.extensions or {}):
        formatted = error.formatted  # type: ignore[assignment]
        extensions = dict(formatted.get("extensions") or {})
        extensions.setdefault("code", default.value)
        return {**formatted, "extensions": extensions}
    formatted = {"message": "Internal error.", "extensions": {"code": Code.INTERNAL_ERROR.value}}
    if error.path is not None:
        formatted["path"] = error.path
    return formatted
