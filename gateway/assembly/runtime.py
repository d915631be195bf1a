"""The composition root: every component of a running gateway, built from :class:`Settings`.

:func:`start_gateway` loads the policy (validated against the schema first: a policy naming an
unknown field refuses the start), opens the stores, the registry clients (the embedded mock
registries in development, the only place the core reaches into ``mocks``), the tracer provider
and the authenticator, and returns the :class:`Running` gateway with its close function.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.admission.tokens import Authenticator, load_or_create_dev_key
from gateway.assembly.policy_file import load_policy
from gateway.audit.checkpoints import Checkpointer, load_signer, publishers_for, span_publisher
from gateway.audit.store import AuditStore
from gateway.audit.stores import open_store
from gateway.config import Settings
from gateway.execution.cache import open_cache
from gateway.execution.fetch import Registries
from gateway.execution.schema import graphql_schema, schema_coordinates
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key
from gateway.observability.tracing import build_tracer_provider
from gateway.pipeline.service import Gateway
from gateway.policy.model import Policy
from gateway.proportionality.quota import open_quota_store
from resolvers import BvvClient, CoaClient, IndClient


@dataclass(slots=True)
class Running:
    """A started gateway, its HTTP client, and the embedded mocks (None with external ones)."""

    gateway: Gateway
    http: httpx.AsyncClient
    mocks: Any
    close: Callable[[], Awaitable[None]]
    #: Signs and publishes the audit log's checkpoints (docs/audit-log.md).
    checkpointer: Checkpointer | None = None


def load_trusted_documents(path: Path) -> dict[str, str]:
    """The trusted-documents manifest: ``{sha256: document}`` (``ketenpoort documents build``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: a trusted-documents manifest maps sha256 hashes to documents")
    return data


def load_gateway_policy(settings: Settings) -> Policy:
    """The policy file of ``settings``, validated against the gateway's schema."""
    return load_policy(settings.policy, schema_coordinates(graphql_schema()))


def build_authenticator(settings: Settings) -> Authenticator:
    """The token verifier of ``settings``: the JWKS (plus the development key in development
    mode), or the development key alone; production without a JWKS is refused."""
    if settings.jwks:
        authenticator = Authenticator.from_jwks_source(
            settings.jwks,
            issuer=settings.issuer,
            audience=settings.audience,
            timeout=settings.jwks_timeout,
        )
        if settings.development:
            authenticator = authenticator.with_dev_key(load_or_create_dev_key(settings.state_dir))
        return authenticator
    if settings.development:
        return Authenticator(
            issuer=settings.issuer,
            audience=settings.audience,
            dev_key=load_or_create_dev_key(settings.state_dir),
        )
    raise ValueError("production mode needs KETENPOORT_JWKS (a JWKS file or URL)")


async def start_gateway(
    settings: Settings,
    *,
    exporter: SpanExporter | None = None,
    audit_store: AuditStore | None = None,
    mocks: Any = None,
) -> Running:
    """Build and open every component. Raises with a clear message when one cannot start."""
    policy = load_gateway_policy(settings)
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
    checkpointer = Checkpointer(
        load_signer(settings.state_dir, settings.log_origin, create=True),
        store.tree().head,
        [
            *publishers_for(settings.checkpoints, settings.state_dir),
            span_publisher(provider.get_tracer("ketenpoort.audit")),
        ],
        interval=settings.checkpoint_interval,
        every=settings.checkpoint_entries,
    )
    await checkpointer.start()
    store.on_append = checkpointer.appended
    authenticator = build_authenticator(settings)
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
        # Requests are done: the last checkpoint covers every entry they committed.
        store.on_append = None
        await checkpointer.close()
        await store.close()
        await quota.close()
        await cache.close()
        provider.shutdown()

    return Running(gateway, http, mocks, close, checkpointer)
