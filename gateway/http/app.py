"""The ASGI application: ``POST /graphql``, the explorer (development), ``/healthz``, ``/readyz``.

:func:`create_app` wraps :func:`gateway.assembly.runtime.start_gateway` for uvicorn: the
components start in the lifespan and close at shutdown.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.assembly.runtime import Running, start_gateway
from gateway.config import Settings
from gateway.errors import Code, GatewayError
from gateway.http.explorer import explorer_page, explorer_routes
from gateway.pipeline.answer import Answer, error_answer

log = logging.getLogger("ketenpoort.app")
MAX_BODY = 256 * 1024


def _json(answer: Answer) -> Response:
    return Response(
        answer.encode(),
        status_code=answer.status,
        headers=answer.headers,
        media_type="application/json",
    )


def create_app(settings: Settings | None = None, **start_options: Any) -> Starlette:
    """The ASGI app; components start in the lifespan and close at shutdown."""
    settings = settings or Settings.from_env()
    holder: dict[str, Running] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        holder["running"] = await start_gateway(settings, **start_options)
        try:
            yield
        finally:
            await holder["running"].close()

    async def graphql_post(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _json(
                error_answer(GatewayError(Code.BAD_USER_INPUT, "The request body is too large."))
            )
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
            payload = None
        if not isinstance(payload, dict):
            return _json(
                error_answer(GatewayError(Code.BAD_USER_INPUT, "The body must be a JSON object."))
            )
        try:
            # Starlette's header names are lower-case already.
            answer = await holder["running"].gateway.handle(request.headers, payload)
        except Exception as exc:  # a bug of ours: no data, no detail, a stable code
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # Type and place only: an exception's message could carry input values.
            log.error(
                "internal error %s at %s:%s", type(exc).__name__, where.filename, where.lineno
            )
            answer = error_answer(GatewayError(Code.INTERNAL_ERROR, "Internal error."))
        return _json(answer)

    async def graphql_get(request: Request) -> Response:
        # The explorer only for a browser asking for HTML, and only in development mode.
        if settings.development and "text/html" in request.headers.get("accept", ""):
            return explorer_page()
        return JSONResponse(
            {"errors": [{"message": "Use POST.", "extensions": {"code": "BAD_USER_INPUT"}}]},
            405,
        )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        running = holder.get("running")
        if running is None:
            return JSONResponse({"status": "starting"}, 503)
        checks: dict[str, bool] = {}
        for name, url in (
            ("BVV", running.gateway.registries.bvv.base_url + "/health"),
            ("COA", running.gateway.registries.coa.base_url + "/health"),
            ("IND", running.gateway.registries.ind.base_url + "/health"),
        ):
            try:
                response = await running.http.get(url, timeout=1.0)
                checks[name] = response.status_code == 200
            except httpx.HTTPError:
                checks[name] = False
        checks["audit"] = await running.gateway.audit_store.ready()
        checks["quota"] = await running.gateway.quota_store.ready()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503
        )

    return Starlette(
        routes=[
            Route("/graphql", graphql_post, methods=["POST"]),
            Route("/graphql", graphql_get, methods=["GET"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *explorer_routes(settings, lambda: holder["running"].gateway),
        ],
        lifespan=lifespan,
    )
