"""``/graphql`` as GraphQL over HTTP reads it: requests in, answers out, per media type.

* POST takes ``application/json`` in UTF-8 only (415 otherwise, also without a Content-Type);
  GET takes the parameters from the query string and executes queries, never mutations (405).
* The answer's media type is negotiated (:mod:`gateway.http.media`): a GraphQL request error
  (the document does not parse or validate, the variables do not coerce) is 200 under
  ``application/json`` and 400 under ``application/graphql-response+json``; every other status
  is the pipeline's. A request that did not execute has no ``data`` entry.
* A GET from a browser asking for HTML gets the explorer (development mode only).
* ``query``, ``variables``, ``operationName`` and ``extensions`` must have their types (400).
* 401 answers carry ``WWW-Authenticate: Bearer``; oversized headers and bodies get a JSON
  refusal with ``REQUEST_TOO_LARGE`` (431, 413).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import Code, GatewayError
from gateway.http.json_body import NOT_UNICODE, holds_lone_surrogate
from gateway.http.media import GRAPHQL_RESPONSE, HTML, JSON, ContentType, negotiate
from gateway.pipeline.answer import Answer, error_answer

#: Largest request body read (bytes).
MAX_BODY: Final = 256 * 1024
#: Largest sum of header names and values the endpoint accepts (bytes). The HTTP server must
#: let larger headers through (see :data:`SERVER_MAX_HEADER_BYTES`) for this refusal to be ours.
MAX_HEADER_BYTES: Final = 32 * 1024
#: What the HTTP server (uvicorn's h11) buffers for one request head: far above
#: :data:`MAX_HEADER_BYTES`, so an oversized header gets our JSON answer, not a plain-text 400.
SERVER_MAX_HEADER_BYTES: Final = 1024 * 1024
METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PARAMETERS: Final = ("query", "variables", "operationName", "extensions")

Handle = Callable[[Mapping[str, str], Mapping[str, Any]], Awaitable[Answer]]
Explorer = Callable[[Request], Response]


def _refuse(code: Code, message: str, status: int | None = None, **headers: str) -> Answer:
    answer = error_answer(GatewayError(code, message))
    if status is not None:
        answer.status = status
    answer.headers.update(headers)
    return answer


def encode(answer: Answer, media_type: str, *, authorization_sent: bool) -> Response:
    """The HTTP response of ``answer`` in ``media_type`` (JSON or graphql-response+json)."""
    status = answer.status
    if answer.request_error:
        status = 200 if media_type == JSON else 400
    headers = dict(answer.headers)
    if status == 401:
        # RFC 6750: the scheme to use; ``invalid_token`` when a token was sent and refused.
        challenge = 'Bearer realm="ketenpoort"'
        if authorization_sent:
            challenge += ', error="invalid_token"'
        headers["www-authenticate"] = challenge
    return Response(
        answer.encode(),
        status_code=status,
        headers=headers,
        media_type=f"{media_type}; charset=utf-8",
    )


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise GatewayError(
                Code.REQUEST_TOO_LARGE, f"The request body is larger than {MAX_BODY} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def post_parameters(request: Request) -> dict[str, Any]:
    """The parameters of a POST: a JSON object in UTF-8. Raises :class:`GatewayError`."""
    content_type = ContentType.parse(request.headers.get("content-type"))
    if content_type is None or not content_type.is_json_utf8:
        raise GatewayError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            "Send the request as Content-Type: application/json (UTF-8).",
        )
    body = await _read_body(request)
    if not body.strip():
        raise GatewayError(Code.BAD_USER_INPUT, "The request body is empty.")
    try:
        # Decoded here, strictly: json.loads on bytes would guess UTF-16 and UTF-32 too.
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise GatewayError(Code.BAD_USER_INPUT, "The body must be a JSON object (UTF-8).")
    return payload


def get_parameters(request: Request, max_tokens: int) -> dict[str, Any]:
    """The parameters of a GET (query string; ``variables``/``extensions`` as JSON text).

    Raises :class:`GatewayError`: bad JSON (400), or a mutation (405: GET never changes state).
    """
    params: dict[str, Any] = {}
    for name in _PARAMETERS:
        value = request.query_params.get(name)
        if value is None:
            continue
        if name in ("variables", "extensions"):
            try:
                params[name] = json.loads(value)
            except (ValueError, RecursionError):
                raise GatewayError(Code.BAD_USER_INPUT, f"{name} must be a JSON object.") from None
        else:
            params[name] = value
    query, operation_name = params.get("query"), params.get("operationName")
    if isinstance(query, str) and (operation_name is None or isinstance(operation_name, str)):
        try:
            document = parse(query, max_tokens=max_tokens)
        except GraphQLError:
            return params  # the pipeline answers the syntax error, with its record
        operation = get_operation_ast(document, operation_name)
        if operation is not None and operation.operation is not OperationType.QUERY:
            raise GatewayError(
                Code.METHOD_NOT_ALLOWED,
                f"A {operation.operation.value} is not executed over GET; use POST.",
            )
    return params


def check_parameters(params: Mapping[str, Any]) -> None:
    """The types of the request parameters (null is absent), and Unicode text in every string
    (:mod:`gateway.http.json_body`). Raises :class:`GatewayError`."""
    kinds: dict[str, tuple[type, str]] = {
        "query": (str, "a string"),
        "operationName": (str, "a string"),
        "variables": (dict, "an object"),
        "extensions": (dict, "an object"),
    }
    for name, (kind, described) in kinds.items():
        value = params.get(name)
        if value is not None and not isinstance(value, kind):
            raise GatewayError(Code.BAD_USER_INPUT, f"{name} must be {described}.")
    if holds_lone_surrogate(params):  # before anything reads, echoes or records them
        raise GatewayError(Code.BAD_USER_INPUT, NOT_UNICODE)


def _header_bytes(request: Request) -> int:
    return sum(len(name) + len(value) for name, value in request.headers.raw)


async def graphql_over_http(
    request: Request,
    handle: Handle,
    *,
    max_tokens: int,
    explorer: Explorer | None,
) -> Response:
    """Answer one request to ``/graphql``. ``explorer``: the page for browsers (None: none)."""
    get = request.method == "GET"
    offered = [GRAPHQL_RESPONSE, JSON]
    if get and explorer is not None:
        offered.append(HTML)
    media_type = negotiate(request.headers.get("accept"), offered)
    authorization_sent = "authorization" in request.headers

    def send(answer: Answer) -> Response:
        return encode(answer, media_type or JSON, authorization_sent=authorization_sent)

    if request.method not in ("GET", "POST"):
        return send(_refuse(Code.METHOD_NOT_ALLOWED, "Use GET or POST.", allow="GET, POST"))
    if media_type is None:
        return send(
            _refuse(
                Code.NOT_ACCEPTABLE,
                f"The answer is {GRAPHQL_RESPONSE} or {JSON}; accept one of them.",
            )
        )
    if media_type == HTML and explorer is not None:
        return explorer(request)
    if _header_bytes(request) > MAX_HEADER_BYTES:
        return send(
            _refuse(
                Code.REQUEST_TOO_LARGE,
                f"The request headers are larger than {MAX_HEADER_BYTES} bytes.",
                status=431,
            )
        )
    try:
        params = get_parameters(request, max_tokens) if get else await post_parameters(request)
        check_parameters(params)
    except GatewayError as error:
        answer = error_answer(error)
        if error.code is Code.METHOD_NOT_ALLOWED:
            answer.headers["allow"] = "POST"
        return send(answer)
    # Starlette's header names are lower-case already.
    return send(await handle(request.headers, params))
