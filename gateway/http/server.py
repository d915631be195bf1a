"""``ketenpoort serve``: start every component first, then serve; stop gracefully.

The components start before the port is bound, in the server's own event loop, so a dependency
that cannot be reached (the audit store) refuses the start with one line naming it — no
traceback from the ASGI lifespan. (A JWKS URL is fetched when a token first needs it, with its
own deadline: an identity provider that is down refuses tokens, not the start.) On SIGTERM or
SIGINT uvicorn stops accepting, lets the requests in flight finish (each records its trail entry
before it answers) for at most ``Settings.shutdown_grace`` seconds, then the lifespan closes the
components: the audit store's writer commits what it had already accepted. glibc's mmap
threshold is fixed first (:mod:`gateway.http.allocator`), so sustained traffic does not
fragment the heap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import uvicorn

from gateway.assembly.runtime import start_gateway
from gateway.config import Settings
from gateway.http.allocator import pin_mmap_threshold
from gateway.http.app import create_app, server_options

log = logging.getLogger("ketenpoort.server")


class StartError(Exception):
    """A component could not start; the message is one line for the operator."""


async def serve(settings: Settings, announce: Callable[[], None] | None = None) -> None:
    """Start the gateway and serve until a signal; :class:`StartError` if it cannot start.
    ``announce`` is called once every component has started."""
    # Before anything is allocated in bulk: a long-running process keeps its heap flat.
    pin_mmap_threshold()
    try:
        running = await start_gateway(settings)
    except Exception as exc:  # any cause: the operator gets one line, not a traceback
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StartError(detail) from exc
    if announce is not None:
        announce()
    config = uvicorn.Config(
        create_app(settings, running=running),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        **server_options(),
    )
    await uvicorn.Server(config).serve()
