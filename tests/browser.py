"""A real headless Chromium against a real uvicorn server, for tests of pages the gateway serves.

The browser is the system's Debian ``chromium`` (``/usr/bin/chromium``; ``.ci/run`` installs it
when missing), driven by Playwright's Python package — Playwright never downloads a browser here.

* :func:`serve` — run an ASGI app with uvicorn on a free 127.0.0.1 port in a thread (lifespan
  included); yields the base URL and stops the server at exit.
* the ``browser`` fixture (session) — one Chromium for the run.
* the ``open_page`` fixture — ``open_page(app)`` serves ``app``, opens a fresh page on it and
  returns a :class:`BrowserPage` that records every request the page makes and every console
  error (a blocked CSP shows up there), so a test can assert nothing left the origin.

``tests/conftest.py`` registers both fixtures for every test module.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from starlette.types import ASGIApp

CHROMIUM = Path("/usr/bin/chromium")
START_TIMEOUT = 30.0  # seconds for the app's lifespan (policy, mocks, audit store) to start
PAGE_TIMEOUT_MS = 10_000


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise AssertionError(f"the app did not start on 127.0.0.1:{port} within the timeout")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class BrowserPage:
    """A page on a served app, with what it asked for and what went wrong in its console."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


#: The ``open_page`` fixture's type: serve an app, return a recorded page on it.
OpenPage = Callable[[ASGIApp], BrowserPage]


@pytest.fixture
def browser() -> Iterator[Browser]:
    """The system Chromium, headless, for one test.

    Not shared across tests: Playwright's sync API keeps an event loop current in this thread
    while it is open, which the async tests that follow could not run beside.
    """
    if not CHROMIUM.exists():
        raise AssertionError(
            f"{CHROMIUM} is missing: install the Debian 'chromium' package (.ci/run does)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """``open_page(app)``: serve ``app`` and open a recorded page on it (closed at teardown)."""
    with ExitStack() as stack:

        def open_(app: ASGIApp) -> BrowserPage:
            base_url = stack.enter_context(serve(app))
            context = browser.new_context(base_url=base_url)
            stack.callback(context.close)
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            recorded = BrowserPage(page, base_url)
            page.on("request", lambda request: recorded.requests.append(request.url))
            page.on("console", lambda message: _console(recorded, message))
            page.on("pageerror", lambda error: recorded.console_errors.append(str(error)))
            return recorded

        yield open_


def _console(recorded: BrowserPage, message: ConsoleMessage) -> None:
    if message.type == "error":
        recorded.console_errors.append(message.text)
