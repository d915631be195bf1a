"""What every registry client shares: the HTTP seam, deadlines, errors and trace propagation.

Each registry client sends over an ``httpx`` transport handed to it at start (and closed by
whoever made it): in production the one :class:`~resolvers.http11.RegistryTransport` all
registries share, in the embedded mode an ASGI transport into the mock, in tests whatever the
test mounts. The client builds the request itself and hands it to the transport: no
``httpx.AsyncClient`` in between, whose per-call work (merging URLs and default headers, an
auth flow, redirect and cookie handling — none of which a registry call uses) cost more than
the transport. No cookies are kept: no state carries from one caller's call to another's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import httpx
import orjson
from opentelemetry import trace
from opentelemetry.propagate import inject

from gateway.errors import Code, GatewayError

log = logging.getLogger("ketenpoort.registries")

#: Headers of every registry call (what httpx.AsyncClient sent by default, naming us).
BASE_HEADERS: Final = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "content-type": "application/json",
    "user-agent": "ketenpoort",
}


class RegistryUnavailable(GatewayError):
    """A registry failed, timed out or answered something we cannot trust."""

    def __init__(self, registry: str, reason: str) -> None:
        super().__init__(
            Code.REGISTRY_UNAVAILABLE,
            f"Registry {registry} is unavailable.",
            registry=registry,
        )
        self.registry = registry
        self.reason = reason


class RegistryClient:
    """A registry at ``base_url``; every call has a deadline and its own span."""

    name: str = "REGISTRY"

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        base_url: str,
        *,
        timeout: float,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._transport = transport
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout)
        self._tracer = tracer or trace.NoOpTracer()
        self._urls: dict[str, httpx.URL] = {}  # per path: parsing a URL costs more than a call

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:  # the clients post to a handful of fixed paths
            url = self._urls[path] = httpx.URL(f"{self.base_url}{path}")
        return url

    async def post_json(self, path: str, body: dict[str, Any], *, subjects: int) -> Any:
        """POST ``body`` and return the decoded JSON answer, or raise RegistryUnavailable.

        The deadline is enforced here, not only by the transport: in-process transports ignore
        httpx's timeouts, and a registry that hangs must never hang a request. It covers
        reading the whole answer.
        """
        with self._tracer.start_as_current_span(
            f"registry {self.name}",
            kind=trace.SpanKind.CLIENT,
            attributes={"ketenpoort.registry": self.name, "ketenpoort.subjects": subjects},
        ) as span:
            headers = dict(BASE_HEADERS)
            inject(headers)  # W3C traceparent of this span, to every registry, in-process too
            request = httpx.Request(
                "POST",
                self._url(path),
                content=orjson.dumps(body),
                headers=headers,
                extensions={"timeout": self._timeouts},
            )
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._transport.handle_async_request(request)
                    try:
                        content = await response.aread()
                    finally:
                        await response.aclose()
            except TimeoutError:
                span.set_status(trace.StatusCode.ERROR, "timeout")
                raise RegistryUnavailable(self.name, "timeout") from None
            except httpx.HTTPError as exc:
                span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                raise RegistryUnavailable(self.name, type(exc).__name__) from None
            span.set_attribute("http.response.status_code", response.status_code)
            # As httpx's client logged each call: the path, never a V-nummer (they go in bodies).
            log.debug("registry %s: POST %s: HTTP %d", self.name, path, response.status_code)
            if response.status_code != 200:
                span.set_status(trace.StatusCode.ERROR, f"HTTP {response.status_code}")
                raise RegistryUnavailable(self.name, f"HTTP {response.status_code}")
            try:
                # JSON is UTF-8 (RFC 8259); anything else, NaN included, is a malformed body.
                return orjson.loads(content)
            except orjson.JSONDecodeError:
                span.set_status(trace.StatusCode.ERROR, "malformed body")
                raise RegistryUnavailable(self.name, "malformed body") from None


def malformed(registry: str) -> RegistryUnavailable:
    return RegistryUnavailable(registry, "malformed body")
