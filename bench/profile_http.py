"""Profile of the HTTP path (pyinstrument): the real app, in process, under concurrent requests.

Run when an HTTP target is missed. The app is the one ``make serve`` runs (JSON decoding,
authentication, admission, plan, fetch, compiled answer, audit commit, spans, JSON encoding),
called through httpx's ASGI transport by ``concurrency`` requests at a time for ``seconds``,
with the audit store the missed target names. Wall-clock samples: waiting for the store's
commit shows as time under ``commit``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from pyinstrument import Profiler

from bench.common import ORGANISATION, PURPOSE, ROLES, load_bench_policy, payload


async def profile_http(
    work: Path,
    policy_path: Path,
    query: str,
    vnummers: list[str],
    store: str,
    *,
    seconds: float,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Requests per second under the profiler and pyinstrument's call tree (text)."""
    from bench.variants import NullExporter, state_settings
    from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
    from gateway.http.app import create_app

    policy = load_bench_policy(policy_path)
    state = work / f"state-profile-{store.split(':', 1)[0]}"
    state.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{state / 'audit.db'}" if store == "sqlite" else store
    settings = state_settings(state, policy_path, audit_store=url)
    app = create_app(settings, exporter=NullExporter())
    token = mint_dev_token(
        load_or_create_dev_key(state),
        issuer=settings.issuer,
        audience=settings.audience,
        subject="regievoerder-profile",
        oin=policy.organisations[ORGANISATION].oin,
        organisation=ORGANISATION,
        roles=list(ROLES),
        purposes=[PURPOSE],
        ttl=3600,
    )
    headers = {
        "authorization": f"Bearer {token}",
        "x-doelbinding": PURPOSE,
        "x-verwerking": policy.purposes[PURPOSE].processing_activities[0],
        "content-type": "application/json",
    }
    body = json.dumps(payload(query, vnummers)).encode()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        for _ in range(20):  # warm: caches, plan, compiled builder, connections
            response = await client.post("/graphql", content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"profile app answered {response.status_code}")
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        requests = 0
        started = time.perf_counter()
        deadline = started + seconds
        with profiler:
            while time.perf_counter() < deadline:
                await asyncio.gather(
                    *(
                        client.post("/graphql", content=body, headers=headers)
                        for _ in range(concurrency)
                    )
                )
                requests += concurrency
        elapsed = time.perf_counter() - started
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return {
        "store": store.split(":", 1)[0],
        "persons": len(vnummers),
        "concurrency": concurrency,
        "requests": requests,
        "rps_under_profiler": round(requests / elapsed, 1),
        "tree": text,
    }
