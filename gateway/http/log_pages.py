"""The audit log's content pages, for witnesses that check the entries (docs/audit-log.md).

``GET /.well-known/ketenpoort/log/leaves?start=I&size=N[&limit=L]``,
``GET /.well-known/ketenpoort/log/entries?after=S&size=N[&limit=L]`` and
``GET /.well-known/ketenpoort/log/purged?after=S&size=N[&limit=L]``: the stored rows behind a
tree of size ``N`` (:mod:`gateway.audit.log_pages` has their shape and encoding), at most
``L`` rows a page (default and maximum per page kind).

Unlike the checkpoint and the proofs these carry content of the trail (officers, pseudonyms),
so they answer only a reader of the trail: ``Authorization: Bearer`` of a principal the one
check of trail readers admits (:func:`gateway.admission.trail_reader.admit`, the policy's
VERANTWOORDING grant, as for the console). Every page answered is first recorded in the trail
(:func:`gateway.audit.reading.record_reading`, coordinate ``Audit.logPage``, the page and its
bounds as path). A page names every subject of its entries, so the record names the range,
not the subjects: a witness reads the whole log each round, and copying every pseudonym into
the trail again on every read would grow it without bound. A principal the policy turns away is
recorded as a refused attempt.

Errors (``{"errors": [{"message", "extensions": {"code"}}]}``): no or an invalid token 401
``UNAUTHENTICATED`` (``WWW-Authenticate: Bearer``); not a reader 403 ``PURPOSE_NOT_GRANTED``; a
missing or malformed parameter 400 ``BAD_USER_INPUT``; a store that cannot read the page or
record the read 503 ``AUDIT_UNAVAILABLE`` (nothing is answered unrecorded).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admission.tokens import Authenticator
from gateway.admission.trail_reader import Viewer, admit, refused_context
from gateway.audit.log_pages import (
    ENTRIES_PATH,
    LEAVES_PATH,
    MAX_ENTRIES,
    MAX_LEAVES,
    MAX_PURGED,
    PURGED_PATH,
    LogPages,
    encode_rows,
)
from gateway.audit.model import Decision
from gateway.audit.reading import record_reading
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.errors import Code, GatewayError
from gateway.http.log_routes import BadInput, error_response, int_param
from gateway.policy.model import Policy

#: The coordinate every page read (and refused attempt) is recorded with.
PAGE_COORDINATE = "Audit.logPage"


@dataclass(frozen=True, slots=True)
class PageSource:
    """What the pages need of the running gateway: its store, token verifier and policy."""

    store: AuditStore
    authenticator: Authenticator
    policy: Policy


#: The running gateway's parts (``None`` while starting).
Source = Callable[[], PageSource | None]
#: Reads one page from the store: (first bound, limit, size) → the JSON body's rows.
Reader = Callable[[LogPages, int, int, int], Awaitable[dict[str, Any]]]

_UNAVAILABLE = "The audit log cannot be read or cannot record this read now."
_NOT_A_READER = "Only a reader of the trail (the VERANTWOORDING purpose) may read the log's pages."


def _limit(request: Request, most: int) -> int:
    if request.query_params.get("limit") is None:
        return most
    limit = int_param(request, "limit")
    if not 1 <= limit <= most:
        raise BadInput(f"query parameter 'limit' must be between 1 and {most}")
    return limit


async def _leaves(store: LogPages, start: int, limit: int, size: int) -> dict[str, Any]:
    return {"leaves": encode_rows(await store.log_leaves(start, limit, size))}


async def _entries(store: LogPages, after: int, limit: int, size: int) -> dict[str, Any]:
    page = await store.log_entries(after, limit, size)
    return {
        "entries": encode_rows(page.entries),
        "subjects": encode_rows(page.subjects),
        "sets": encode_rows(page.sets),
    }


async def _purged(store: LogPages, after: int, limit: int, size: int) -> dict[str, Any]:
    return {"purged": encode_rows(await store.log_purged(after, limit, size))}


async def admitted_reader(
    source: PageSource,
    request: Request,
    *,
    coordinate: str = PAGE_COORDINATE,
    refused: str = _NOT_A_READER,
    unavailable: str = _UNAVAILABLE,
) -> Viewer | Response:
    """The admitted reader of the trail, or the 401/403/503 answer (a refusal recorded first,
    under ``coordinate``). Shared with the admin endpoints (:mod:`gateway.http.admin_routes`)."""
    authorization = request.headers.get("authorization")
    try:
        principal = await source.authenticator.authenticate(authorization)
    except GatewayError as exc:
        # RFC 6750, as /graphql: the scheme, and ``invalid_token`` when a token was refused.
        challenge = 'Bearer realm="ketenpoort"'
        if authorization:
            challenge += ', error="invalid_token"'
        return error_response(exc.code, exc.message, 401, {"www-authenticate": challenge})
    viewer = admit(source.policy, principal)
    if viewer is not None:
        return viewer
    try:
        await record_reading(
            source.store,
            refused_context(source.policy, principal),
            coordinate=coordinate,
            reason=Code.PURPOSE_NOT_GRANTED.value,
            path=request.url.path,
            decision=Decision.REFUSED,
        )
    except AuditUnavailable:
        return error_response(Code.AUDIT_UNAVAILABLE, unavailable, 503)
    return error_response(Code.PURPOSE_NOT_GRANTED, refused, 403)


def _page_route(source: Source, path: str, first: str, most: int, read: Reader) -> Route:
    kind = path.rsplit("/", 1)[-1]

    async def page(request: Request) -> Response:
        running = source()
        if running is None:
            return error_response(Code.AUDIT_UNAVAILABLE, "The gateway is starting.", 503)
        reader = await admitted_reader(running, request)
        if isinstance(reader, Response):
            return reader
        try:
            bound, size = int_param(request, first), int_param(request, "size")
            limit = _limit(request, most)
        except BadInput as exc:
            return error_response(Code.BAD_USER_INPUT, str(exc), 400)
        store = running.store
        if not isinstance(store, LogPages):
            return error_response(Code.AUDIT_UNAVAILABLE, "This store serves no log pages.", 503)
        try:
            body = await read(store, bound, limit, size)
            rows = len(body[kind])
            await record_reading(
                running.store,
                reader.context(),
                coordinate=PAGE_COORDINATE,
                reason=reader.rule,
                path=f"{kind};{first}={bound};size={size};limit={limit};rows={rows}",
            )
        except AuditUnavailable:
            return error_response(Code.AUDIT_UNAVAILABLE, _UNAVAILABLE, 503)
        return JSONResponse(
            {first: bound, "size": size, "limit": limit, **body},
            headers={"Cache-Control": "no-store"},
        )

    return Route(path, page, methods=["GET"])


def log_page_routes(source: Source) -> list[Route]:
    """The three page routes, reading the running gateway through ``source``."""
    return [
        _page_route(source, LEAVES_PATH, "start", MAX_LEAVES, _leaves),
        _page_route(source, ENTRIES_PATH, "after", MAX_ENTRIES, _entries),
        _page_route(source, PURGED_PATH, "after", MAX_PURGED, _purged),
    ]
