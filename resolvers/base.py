"""What every registry client shares: the HTTP seam, deadlines, errors and trace propagation.

One ``httpx.AsyncClient`` serves all registries (opened at start, closed at shutdown). Tests
and the embedded mode differ from production only by the transports mounted on it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.propagate import inject

from gateway.errors import Code, GatewayError


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
        http: httpx.AsyncClient,
        base_url: str,
        *,
        timeout: float,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._tracer = tracer or trace.NoOpTracer()

    async def post_json(self, path: str, body: dict[str, Any], *, subjects: int) -> Any:
        """POST ``body`` and return the decoded JSON answer, or raise RegistryUnavailable.

        The deadline is enforced here, not only by httpx: in-process transports ignore
        httpx's timeouts, and a registry that hangs must never hang a request.
        """
        with self._tracer.start_as_current_span(
            f"registry {self.name}",
            kind=trace.SpanKind.CLIENT,
            attributes={"ketenpoort.registry": self.name, "ketenpoort.subjects": subjects},
        ) as span:
            headers: dict[str, str] = {}
            inject(headers)  # W3C traceparent of this span, to every registry, in-process too
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._http.post(
                        f"{self.base_url}{path}", json=body, headers=headers
                    )
            except TimeoutError:
                span.set_status(trace.StatusCode.ERROR, "timeout")
                raise RegistryUnavailable(self.name, "timeout") from None
            except httpx.HTTPError as exc:
                span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                raise RegistryUnavailable(self.name, type(exc).__name__) from None
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code != 200:
                span.set_status(trace.StatusCode.ERROR, f"HTTP {response.status_code}")
                raise RegistryUnavailable(self.name, f"HTTP {response.status_code}")
            try:
                return response.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                span.set_status(trace.StatusCode.ERROR, "malformed body")
                raise RegistryUnavailable(self.name, "malformed body") from None


def malformed(registry: str) -> RegistryUnavailable:
    return RegistryUnavailable(registry, "malformed body")
