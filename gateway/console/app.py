"""The console's ASGI app: routes, the security headers, the error pages; and how it starts.

:func:`open_console` builds a :class:`~gateway.console.web.Console` from the gateway's
:class:`~gateway.config.Settings` (the same audit store, state directory, policy and token
settings as ``serve``) without touching any registry; :func:`create_console_app` wraps it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.assembly.runtime import build_authenticator, load_gateway_policy
from gateway.audit.checkpoints import PUBLIC_FILE, published_file
from gateway.audit.store import AuditStore
from gateway.audit.stores import open_store
from gateway.config import Settings
from gateway.console import pages, reports, signin
from gateway.console.sessions import Clock, Sessions
from gateway.console.settings import ConsoleSettings
from gateway.console.web import HERE, Console, Denied, SecurityHeaders, console_of
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


async def open_console(
    settings: Settings,
    console_settings: ConsoleSettings,
    *,
    store: AuditStore | None = None,
    clock: Clock | None = None,
) -> Console:
    """Open the audit store and load what the console needs; raises when it cannot start."""
    policy = load_gateway_policy(settings)
    authenticator = build_authenticator(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    audit = store or open_store(settings.audit_store_url)
    await audit.open()
    sessions = (
        Sessions(console_settings.session_seconds, clock=clock)
        if clock is not None
        else Sessions(console_settings.session_seconds)
    )
    return Console(
        store=audit,
        policy=policy,
        pseudonym=Pseudonymizer(load_or_create_key(settings.state_dir)),
        authenticator=authenticator,
        sessions=sessions,
        settings=console_settings,
        development=settings.development,
        checkpoint_file=published_file(settings.checkpoints, settings.state_dir),
        log_key_file=settings.state_dir / PUBLIC_FILE,
    )


async def _denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Denied)
    console = console_of(request)
    return console.render(
        request, "fout.html", {"status": exc.status, "message": exc.message}, status=exc.status
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Deze pagina bestaat niet." if exc.status_code == 404 else "Dit verzoek kan niet."
    return console_of(request).render(
        request,
        "fout.html",
        {"status": exc.status_code, "message": message},
        status=exc.status_code,
    )


def _routes() -> list[Route | Mount]:
    return [
        Route("/", signin.start, methods=["GET"]),
        Route("/login", signin.login, methods=["POST"]),
        Route("/afmelden", signin.logout, methods=["POST"]),
        Route("/zoeken", pages.zoeken, methods=["GET"]),
        Route("/betrokkene/{pseudonym}", pages.betrokkene, methods=["GET"]),
        Route("/betrokkene/{pseudonym}/verslag", pages.verslag, methods=["GET"]),
        Route("/verzoek/{trace_id}", pages.verzoek, methods=["GET"]),
        Route("/overzicht", reports.overzicht, methods=["GET"]),
        Route("/afwijkingen", reports.afwijkingen, methods=["GET"]),
        Route("/integriteit", reports.integriteit, methods=["GET", "POST"]),
        Route("/beleid", reports.beleid, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def _app(lifespan: Lifespan) -> Starlette:
    return Starlette(
        routes=_routes(),
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={Denied: _denied, HTTPException: _http_error},
        lifespan=lifespan,
    )


def create_console_app(console: Console, *, close_store: bool = True) -> Starlette:
    """The ASGI app serving an opened ``console``; closes its store on shutdown when asked."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_store:
                await console.store.close()

    app = _app(lifespan)
    app.state.console = console
    return app


def create_app(settings: Settings, console_settings: ConsoleSettings) -> Starlette:
    """The ASGI app for uvicorn: opens the console at start-up, closes its store at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console = await open_console(settings, console_settings)
        app.state.console = console
        try:
            yield
        finally:
            await console.store.close()

    return _app(lifespan)
