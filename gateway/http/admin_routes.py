"""Admin endpoints of a running gateway: ``POST /admin/cache/purge``.

The registry cache holds personal data for up to ``KETENPOORT_CACHE_TTL`` seconds. A data
protection officer or security officer removes one person's cached answers at once — from this
process's memory cache, or from the Redis cache every process shares — with::

    POST /admin/cache/purge
    Authorization: Bearer <token>
    Content-Type: application/json

    {"vnummer": "1234567890"}

→ ``200 {"cache": "memory" | "redis", "removed": <entries>, "trace_id": "<32 hex>"}``.

Who may: the principals the policy grants ``VERANTWOORDING`` (default NVIK ``beveiliging`` and
``fg``), admitted exactly as the accountability console admits them
(:func:`gateway.admission.trail_reader.admit`): the roles that answer for the processing and
already read the trail are the ones who act on the gateway's copies of the data. No
``X-Doelbinding`` header is needed; the purge is recorded under VERANTWOORDING.

Recorded first: the purge is committed to the trail (coordinate ``Cache.purge``, the person as
data subject, reason the granting rule) through the same path as every use of the trail
(:func:`gateway.audit.reading.record_reading`) *before* anything is removed or answered; when the
trail cannot take it, nothing is purged (503 ``AUDIT_UNAVAILABLE``). A token the policy turns
away is recorded as a refused attempt (``PURPOSE_NOT_GRANTED``), then answered 403 — the same
gate as the log's content pages (:func:`gateway.http.log_pages.admitted_reader`).

Errors carry a stable ``extensions.code``: ``UNAUTHENTICATED`` (401), ``PURPOSE_NOT_GRANTED``
(403), ``BAD_USER_INPUT`` (400: not a JSON object, no 10-digit ``vnummer``),
``UNSUPPORTED_MEDIA_TYPE`` (415), ``REQUEST_TOO_LARGE`` (413), ``METHOD_NOT_ALLOWED`` (405),
``AUDIT_UNAVAILABLE`` (503: the trail, or the gateway still starting), ``CACHE_UNAVAILABLE`` (503:
Redis could not be purged now; the purge is recorded, run it again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.reading import CACHE_PURGE, record_reading
from gateway.audit.store import AuditUnavailable
from gateway.errors import Code
from gateway.execution.cache import CacheUnavailable
from gateway.http.json_body import BodyRefused, read_json_object
from gateway.http.log_pages import PageSource, admitted_reader
from gateway.http.log_routes import error_response
from gateway.identifiers import is_vnummer
from gateway.pipeline.service import Gateway

log = logging.getLogger("ketenpoort.admin")

CACHE_PURGE_PATH: Final = "/admin/cache/purge"
#: Largest body accepted (``{"vnummer": "..."}`` is some 30 bytes).
MAX_ADMIN_BODY: Final = 4 * 1024
_NO_STORE: Final = {"cache-control": "no-store"}

#: The running gateway (``None`` while starting).
Source = Callable[[], Gateway | None]


def _error(code: Code, message: str, status: int, **headers: str) -> JSONResponse:
    return error_response(code, message, status, {**_NO_STORE, **headers})


def admin_routes(source: Source) -> list[Route]:
    """The admin routes, acting on the running gateway from ``source``."""

    async def cache_purge(request: Request) -> Response:
        if request.method != "POST":
            return _error(Code.METHOD_NOT_ALLOWED, "Use POST.", 405, allow="POST")
        gateway = source()
        if gateway is None:
            return _error(Code.AUDIT_UNAVAILABLE, "The gateway is starting.", 503)
        viewer = await admitted_reader(
            PageSource(gateway.audit_store, gateway.authenticator, gateway.policy),
            request,
            coordinate=CACHE_PURGE,
            refused="Only a reader of the trail (the VERANTWOORDING purpose) may purge the cache.",
            unavailable="The audit trail cannot record this attempt now.",
        )
        if isinstance(viewer, Response):
            return viewer
        try:
            payload = await read_json_object(request, MAX_ADMIN_BODY)
        except BodyRefused as exc:
            return _error(exc.code, exc.message, exc.status)
        vnummer = payload.get("vnummer")
        if not is_vnummer(vnummer) or set(payload) != {"vnummer"}:
            # The value is not echoed: it may be a real, mistyped V-nummer.
            return _error(
                Code.BAD_USER_INPUT,
                'Send {"vnummer": "<10 digits>"} and nothing else.',
                400,
            )
        subject = gateway.pseudonym(vnummer)
        context = viewer.context()
        try:
            await record_reading(
                gateway.audit_store,
                context,
                coordinate=CACHE_PURGE,
                reason=viewer.rule,
                subjects=[subject],
            )
        except AuditUnavailable:
            return _error(
                Code.AUDIT_UNAVAILABLE,
                "The audit trail cannot record this purge now; nothing was purged.",
                503,
            )
        try:
            removed = await gateway.cache.purge(subject)
        except CacheUnavailable as exc:
            log.warning("cache purge failed: %s", exc)
            return _error(
                Code.CACHE_UNAVAILABLE,
                "The cache could not be purged now (the attempt is recorded); try again.",
                503,
            )
        return JSONResponse(
            {"cache": gateway.cache.kind, "removed": removed, "trace_id": context.trace_id},
            headers=_NO_STORE,
        )

    return [
        Route(
            CACHE_PURGE_PATH,
            cache_purge,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        )
    ]
