"""Common base of the mock registries: the record of what was served, and fault injection.

Contract:

* ``served`` gets one :class:`ServedCall` per request that returned real data (a successful
  ``/personen`` or ``/zoeken`` call, a GraphQL operation that touched entities or statistics);
  the latest :data:`SERVED_BOUND` are kept.
  Rejected requests (400) and requests answered by an injected fault are not recorded: nothing
  was served.
* ``faults`` applies to the data endpoints only, never to ``GET /health``; it is read on every
  request, so tests may change it at any time. Order: ``latency`` first, then ``timeout``, then
  ``status``, then ``malformed``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from mocks.data import Population

# Far beyond any client deadline: the gateway must enforce its own timeout.
TIMEOUT_SLEEP_SECONDS: Final = 30.0
# Looks like JSON by its content type, is not parseable: the nastiest realistic breakage.
MALFORMED_BODY: Final = b'{"data": [{"vnummer": "00'


@dataclass(frozen=True)
class ServedCall:
    """One answered request: which registry, which subjects, which dotted field paths, headers."""

    registry: str
    vnummers: tuple[str, ...]
    fields: frozenset[str]
    headers: dict[str, str]


@dataclass
class Faults:
    """Faults to inject into the next requests; mutable, all off by default."""

    latency: float = 0.0
    status: int | None = None
    timeout: bool = False
    malformed: bool = False

    def clear(self) -> None:
        """Switch every fault off, in place (references held by tests stay valid)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.default)


def headers_of(raw: Mapping[str, str]) -> dict[str, str]:
    """Copy request headers with lower-case names (HTTP header names are case-insensitive)."""
    return {k.lower(): v for k, v in raw.items()}


#: Served calls a mock keeps: enough for any test, bounded for ``make serve`` running for days.
SERVED_BOUND: Final = 10_000


class MockRegistry:
    """Base of a mock registry; subclasses set :attr:`app`."""

    app: ASGIApp

    def __init__(self, name: str, population: Population) -> None:
        self.name = name
        self.population = population
        self.served: list[ServedCall] = []
        self.faults = Faults()

    def reset(self) -> None:
        """Forget served calls and switch faults off (both in place)."""
        self.served.clear()
        self.faults.clear()

    def record(
        self, vnummers: tuple[str, ...], fields: frozenset[str], headers: dict[str, str]
    ) -> None:
        """Append a :class:`ServedCall` for this registry; only the latest
        :data:`SERVED_BOUND` calls are kept, so a long-running mock does not grow without end."""
        self.served.append(ServedCall(self.name, vnummers, fields, headers))
        if len(self.served) > SERVED_BOUND:
            del self.served[: len(self.served) - SERVED_BOUND]

    async def fault_response(self) -> Response | None:
        """Apply the current faults; return the response to send instead of data, if any."""
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        if self.faults.timeout:
            await asyncio.sleep(TIMEOUT_SLEEP_SECONDS)
        if self.faults.status is not None:
            return JSONResponse(
                {"error": f"injected fault in mock {self.name}"}, status_code=self.faults.status
            )
        if self.faults.malformed:
            return Response(MALFORMED_BODY, status_code=200, media_type="application/json")
        return None
