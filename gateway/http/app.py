"""The ASGI application: ``/graphql`` (GraphQL over HTTP, the explorer in development),
``/healthz``, ``/readyz``, the audit log's checkpoint, proofs and (for readers of the
trail) content pages under ``/.well-known/ketenpoort/``, and ``POST /admin/cache/purge``
(:mod:`gateway.http.admin_routes`).

:func:`create_app` wraps :func:`gateway.assembly.runtime.start_gateway` for uvicorn: the
components start in the lifespan and close at shutdown.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.assembly.runtime import Running, start_gateway
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.store import AuditStore
from gateway.config import Settings
from gateway.errors import Code, GatewayError
from gateway.http.admin_routes import admin_routes
from gateway.http.explorer import explorer_page, explorer_routes
from gateway.http.graphql_http import METHODS, SERVER_MAX_HEADER_BYTES, graphql_over_http
from gateway.http.log_pages import PageSource, log_page_routes
from gateway.http.log_routes import log_routes
from gateway.pipeline.answer import Answer, error_answer
from gateway.pipeline.service import Gateway

log = logging.getLogger("ketenpoort.app")


def server_options() -> dict[str, Any]:
    """Options for ``uvicorn.run`` that the HTTP layer relies on (header size, see
    :data:`~gateway.http.graphql_http.SERVER_MAX_HEADER_BYTES`)."""
    return {"h11_max_incomplete_event_size": SERVER_MAX_HEADER_BYTES}


def create_app(
    settings: Settings | None = None, *, running: Running | None = None, **start_options: Any
) -> Starlette:
    """The ASGI app; components start in the lifespan (unless ``running`` was started
    already) and close at shutdown."""
    settings = settings or Settings.from_env()
    holder: dict[str, Running] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        holder["running"] = running or await start_gateway(settings, **start_options)
        try:
            yield
        finally:
            await holder["running"].close()

    async def handle(headers: Mapping[str, str], payload: Mapping[str, Any]) -> Answer:
        try:
            return await holder["running"].gateway.handle(headers, payload)
        except Exception as exc:  # a bug of ours: no data, no detail, a stable code
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # Type and place only: an exception's message could carry input values.
            log.error(
                "internal error %s at %s:%s", type(exc).__name__, where.filename, where.lineno
            )
            return error_answer(GatewayError(Code.INTERNAL_ERROR, "Internal error."))

    async def graphql(request: Request) -> Response:
        return await graphql_over_http(
            request,
            handle,
            max_tokens=settings.limits.max_tokens,
            # The explorer page only in development mode, only for a browser asking for HTML.
            explorer=(lambda _: explorer_page()) if settings.development else None,
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

    def log_source() -> tuple[AuditStore, Checkpointer] | None:
        running = holder.get("running")
        if running is None or running.checkpointer is None:
            return None
        return running.gateway.audit_store, running.checkpointer

    def page_source() -> PageSource | None:
        running = holder.get("running")
        if running is None:
            return None
        gateway = running.gateway
        return PageSource(gateway.audit_store, gateway.authenticator, gateway.policy)

    def running_gateway() -> Gateway | None:
        started = holder.get("running")
        return None if started is None else started.gateway

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=METHODS),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *explorer_routes(settings, lambda: holder["running"].gateway),
            *log_routes(log_source),
            *log_page_routes(page_source),
            *admin_routes(running_gateway),
        ],
        lifespan=lifespan,
    )
