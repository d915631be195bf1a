"""The client side of the soak and chaos traffic: a paced load over the mix of
:mod:`bench.traffic_mix`, each answer judged (codes, data, leaks) into an :class:`Outcome`.

Nothing here asserts: outcomes are counted and the report judges them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.traffic_mix import (
    REFUSED_FIELD,
    Mix,
    Principal,
)
from resolvers.http11 import RegistryTransport

#: What httpx's client sent besides the mix's own headers.
CLIENT_HEADERS = {"accept": "*/*", "accept-encoding": "gzip, deflate", "user-agent": "soak"}


@dataclass(slots=True)
class Outcome:
    """One request as the client saw it."""

    t: float  # seconds since the run started (send time)
    latency: float
    kind: str
    principal: str
    trace_id: str
    status: int  # 0: no HTTP answer (transport error)
    codes: tuple[str, ...] = ()
    has_data: bool = False
    leaks: int = 0
    error: str = ""
    subjects: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "latency": round(self.latency, 5),
            "kind": self.kind,
            "principal": self.principal,
            "trace_id": self.trace_id,
            "status": self.status,
            "codes": list(self.codes),
            "has_data": self.has_data,
            "leaks": self.leaks,
            "error": self.error,
        }


def _leaks(data: Any, refused_paths_ok: bool) -> int:
    """Values at the refused field anywhere in ``data``."""
    if isinstance(data, dict):
        n = 1 if data.get(REFUSED_FIELD) is not None else 0
        return n + sum(_leaks(v, refused_paths_ok) for v in data.values())
    if isinstance(data, list):
        return sum(_leaks(v, refused_paths_ok) for v in data)
    return 0


def judge(p: Principal, status: int, body: Any) -> tuple[tuple[str, ...], bool, int]:
    """Codes, whether the answer carries data, and leaked values."""
    if not isinstance(body, dict):
        return ("NOT_JSON",), False, 0
    codes = tuple(
        sorted(
            {
                str((e.get("extensions") or {}).get("code", "?"))
                for e in body.get("errors") or []
                if isinstance(e, dict)
            }
        )
    )
    data = body.get("data")
    has = isinstance(data, dict) and any(v not in (None, []) for v in data.values())
    leaks = _leaks(data, False)
    if (p.kind == "refused" or status >= 400) and has:
        leaks += 1  # data with a refusal or an error status: a leak by definition
    return codes, has, leaks


@dataclass
class Load:
    """Bounded, paced load: ``rate`` req/s for ``duration`` s, at most ``max_requests``."""

    urls: Sequence[str]
    mix: Mix
    rate: float
    duration: float
    max_requests: int
    concurrency: int = 64
    timeout: float = 30.0
    on_outcome: Callable[[Outcome], None] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> list[Outcome]:
        # The gateway's own registry transport, called directly: httpx's default pool and its
        # client's per-request work cost the generator more CPU than the rest of what it does
        # (see resolvers/http11.py and resolvers/base.py), CPU the gateway on the same two
        # cores then lacks. No retries: every request is sent once and counted as it fared.
        transport = RegistryTransport(
            max_connections=self.concurrency,
            max_idle=self.concurrency,
            keepalive_expiry=1.0,
            retry_unanswered=False,
        )
        urls = [httpx.URL(u) for u in self.urls]
        start = time.monotonic()
        self.started = start
        counter = iter(range(self.max_requests))
        async with transport:

            async def worker() -> None:
                for i in counter:
                    due = start + i / self.rate
                    now = time.monotonic()
                    if now - start >= self.duration or self.stop.is_set():
                        return
                    if due > now:
                        await asyncio.sleep(due - now)
                    if time.monotonic() - start >= self.duration or self.stop.is_set():
                        return
                    await self._one(transport, urls[i % len(urls)], start)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return self.outcomes

    async def _one(self, transport: httpx.AsyncBaseTransport, url: httpx.URL, start: float) -> None:
        p, headers, body, n = self.mix.next()
        trace_id = headers["traceparent"][3:35]
        request = httpx.Request(
            "POST",
            url,
            content=orjson.dumps(body),
            headers={**CLIENT_HEADERS, **headers},
            extensions={
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
            },
        )
        t0 = time.monotonic()
        try:
            response = await transport.handle_async_request(request)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            latency = time.monotonic() - t0
            try:
                payload: Any = orjson.loads(content)
            except orjson.JSONDecodeError:
                payload = None
            codes, has, leaks = judge(p, response.status_code, payload)
            out = Outcome(
                t0 - start,
                latency,
                p.kind,
                p.label,
                trace_id,
                response.status_code,
                codes,
                has,
                leaks,
                subjects=n,
            )
        except httpx.HTTPError as exc:
            out = Outcome(
                t0 - start,
                time.monotonic() - t0,
                p.kind,
                p.label,
                trace_id,
                0,
                error=type(exc).__name__,
                subjects=n,
            )
        self.outcomes.append(out)
        if self.on_outcome is not None:
            self.on_outcome(out)
