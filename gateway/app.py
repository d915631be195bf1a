"""The ASGI application: ``POST /graphql``, GraphiQL (development), ``/healthz``, ``/readyz``.

:func:`start_gateway` builds every component from :class:`Settings` (policy validated against the
schema first: a policy naming an unknown field refuses the start) and returns the running
:class:`Gateway` plus a close function; :func:`create_app` wraps it for uvicorn.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from strawberry.http.ides import get_graphql_ide_html

from gateway.answer import Answer, error_answer
from gateway.audit.store import AuditStore, open_store
from gateway.auth import Authenticator, load_or_create_dev_key
from gateway.cache import open_cache
from gateway.config import Settings
from gateway.errors import Code, GatewayError
from gateway.fetch import Registries
from gateway.policy import load_policy
from gateway.pseudonym import Pseudonymizer, load_or_create_key
from gateway.quota import open_quota_store
from gateway.schema import graphql_schema, schema_coordinates
from gateway.service import Gateway
from gateway.tracing import build_tracer_provider
from resolvers import BvvClient, CoaClient, IndClient

log = logging.getLogger("ketenpoort.app")
MAX_BODY = 256 * 1024


@dataclass(slots=True)
class Running:
    """A started gateway, its HTTP client, and the embedded mocks (None with external ones)."""

    gateway: Gateway
    http: httpx.AsyncClient
    mocks: Any
    close: Callable[[], Awaitable[None]]


def load_trusted_documents(path: Path) -> dict[str, str]:
    """The trusted-documents manifest: ``{sha256: document}`` (``ketenpoort documents build``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: a trusted-documents manifest maps sha256 hashes to documents")
    return data


async def start_gateway(
    settings: Settings,
    *,
    exporter: SpanExporter | None = None,
    audit_store: AuditStore | None = None,
    mocks: Any = None,
) -> Running:
    """Build and open every component. Raises with a clear message when one cannot start."""
    coordinates = schema_coordinates(graphql_schema())
    policy = load_policy(settings.policy, coordinates)
    mounts: dict[str, httpx.AsyncBaseTransport] = {}
    endpoints = settings.registries
    if endpoints.embedded:
        if mocks is None:
            from mocks import create_registries

            mocks = create_registries(seed=settings.mock_seed, size=settings.mock_size)
        mounts = {
            f"all://{httpx.URL(endpoints.bvv).host}": httpx.ASGITransport(app=mocks.bvv.app),
            f"all://{httpx.URL(endpoints.coa).host}": httpx.ASGITransport(app=mocks.coa.app),
            f"all://{httpx.URL(endpoints.ind).host}": httpx.ASGITransport(app=mocks.ind.app),
        }
    http = httpx.AsyncClient(
        mounts=mounts,
        timeout=httpx.Timeout(settings.registry_timeout),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
    )
    provider = build_tracer_provider(settings.traces_spec, exporter)
    tracer = provider.get_tracer("ketenpoort.registries")
    registries = Registries(
        bvv=BvvClient(http, endpoints.bvv, timeout=settings.registry_timeout, tracer=tracer),
        coa=CoaClient(http, endpoints.coa, timeout=settings.registry_timeout, tracer=tracer),
        ind=IndClient(http, endpoints.ind, timeout=settings.registry_timeout, tracer=tracer),
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = audit_store or open_store(settings.audit_store_url)
    await store.open()
    if settings.jwks:
        authenticator = Authenticator.from_jwks_source(
            settings.jwks, issuer=settings.issuer, audience=settings.audience
        )
        if settings.development:
            authenticator = Authenticator(
                issuer=settings.issuer,
                audience=settings.audience,
                dev_key=load_or_create_dev_key(settings.state_dir),
                jwks=authenticator._jwks,
                jwks_client=authenticator._jwks_client,
            )
    elif settings.development:
        authenticator = Authenticator(
            issuer=settings.issuer,
            audience=settings.audience,
            dev_key=load_or_create_dev_key(settings.state_dir),
        )
    else:
        raise ValueError("production mode needs KETENPOORT_JWKS (a JWKS file or URL)")
    cache = open_cache(settings.cache, settings.cache_ttl)
    quota = open_quota_store(settings.quota_store)
    trusted = (
        load_trusted_documents(settings.trusted_documents) if settings.trusted_documents else None
    )
    gateway = Gateway(
        policy=policy,
        registries=registries,
        cache=cache,
        audit_store=store,
        quota_store=quota,
        tracer_provider=provider,
        pseudonym=Pseudonymizer(load_or_create_key(settings.state_dir)),
        authenticator=authenticator,
        limits=settings.limits,
        trusted_documents=trusted,
        development=settings.development,
    )

    async def close() -> None:
        await http.aclose()
        await store.close()
        await quota.close()
        await cache.close()
        provider.shutdown()

    return Running(gateway, http, mocks, close)


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

    async def graphql_get(_: Request) -> Response:
        if not settings.development:
            return JSONResponse(
                {"errors": [{"message": "Use POST.", "extensions": {"code": "BAD_USER_INPUT"}}]},
                405,
            )
        return HTMLResponse(get_graphql_ide_html(graphql_ide="graphiql"))

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
        ],
        lifespan=lifespan,
    )
