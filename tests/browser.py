"""Browser tests' support: a real headless Chromium (Debian's ``chromium``) driven by Playwright,
and ASGI apps served over real HTTP on a loopback port.

Playwright is pointed at the system executable (``KETENPOORT_CHROMIUM``, default
``/usr/bin/chromium``); no browser is ever downloaded. ``.ci/run`` installs the Debian package
when it is missing. Where the executable is absent the tests fail with a message naming it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from playwright.async_api import BrowserContext, Request, async_playwright
from starlette.types import ASGIApp

CHROMIUM = os.environ.get("KETENPOORT_CHROMIUM", "/usr/bin/chromium")
#: Where screenshots go when ``KETENPOORT_SCREENSHOTS`` names a folder (``make screenshots``).
SCREENSHOTS = os.environ.get("KETENPOORT_SCREENSHOTS")


@asynccontextmanager
async def serve_asgi(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in this event loop; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):  # bounded: 10 s
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            raise AssertionError("the test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@dataclass
class OriginLog:
    """Every request the browser made, to check that none left the app's origin."""

    origin: str
    urls: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.urls.append(request.url)

    def foreign(self) -> list[str]:
        return [u for u in self.urls if not (u == self.origin or u.startswith(self.origin + "/"))]


@asynccontextmanager
async def chromium(
    origin: str, *, width: int = 1280, height: int = 800
) -> AsyncIterator[tuple[BrowserContext, OriginLog]]:
    """A fresh headless Chromium context (own cookies) and the log of its requests."""
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(
            f"Chromium is not installed at {CHROMIUM}: install Debian's chromium package "
            "(`apt-get install -y chromium`) or set KETENPOORT_CHROMIUM"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, accept_downloads=True
            )
            context.set_default_timeout(10_000)
            log = OriginLog(origin)
            context.on("request", log.record)
            yield context, log
            await context.close()
        finally:
            await browser.close()


def screenshot_path(name: str, tmp: Path) -> Path:
    """Where a screenshot named ``name`` goes: the screenshots folder if set, else ``tmp``."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"
