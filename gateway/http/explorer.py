"""The development explorer: Ketenpoort's own query page, served by the gateway itself.

Development mode only (:func:`explorer_routes` returns no routes in production). Everything the
page needs is a file of this package — no CDN, no fonts, nothing from the internet — and the page
is sent with ``Content-Security-Policy: default-src 'self'`` (no inline script or style).

* :func:`explorer_page` — the HTML page; ``GET /graphql`` answers it to a browser that asks for
  HTML (content negotiation lives with the GraphQL-over-HTTP handler), ``GET /explorer`` always.
* ``GET /explorer/static/{file}`` — the page's scripts (ES modules), style sheet and icon.
* ``GET /explorer/api/grants`` — organisations, roles and the purposes granted per role.
* ``GET /explorer/api/schema?org=&role=&doelbinding=`` — the schema tree, every field marked
  allowed or refused with the deciding rule or refusal code (:mod:`gateway.http.explorer_tree`).
* ``POST /explorer/api/token`` — a development token for the chosen caller (JSON body, so a page
  of another origin cannot mint one without a CORS preflight, which is never granted), for a
  purpose the chosen roles are granted. Offered only with the embedded mock registries and a
  loopback bind address (:func:`mints_tokens`; else the route does not exist), and answered only
  to a request whose ``Host`` names the loopback (:func:`loopback_host`): a page of another
  name that DNS rebinding points at 127.0.0.1 mints nothing.
* ``POST /explorer/api/token/inspect`` — who a pasted token names (verified like any request).

Bad input is answered ``{"errors": [{"message", "extensions": {"code"}}]}`` with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.resources import files
from ipaddress import ip_address
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.config import Settings
from gateway.errors import Code, GatewayError
from gateway.execution.schema import graphql_schema
from gateway.http.explorer_tree import describe_purpose, grants_overview, schema_tree
from gateway.http.json_body import BodyRefused, read_json_object
from gateway.pipeline.service import Gateway

#: No inline script or style, nothing from another origin, no framing, no plugins.
CSP: Final = (
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: The ``Host`` names (port aside) the token route answers: the loopback, by name or address.
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: The subject of minted tokens: audit records show the query came from the explorer.
EXPLORER_SUBJECT: Final = "ontwikkelaar-verkenner"
TOKEN_TTL: Final = 3600
MAX_API_BODY: Final = 16 * 1024


def mints_tokens(settings: Settings) -> bool:
    """Whether the explorer may mint tokens at all: development with the embedded mock
    registries (synthetic persons only), bound to a loopback address (nobody else can reach it).
    """
    if not settings.development or not settings.registries.embedded:
        return False
    if settings.host.lower() == "localhost":
        return True
    try:
        return ip_address(settings.host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_host(host: str) -> bool:
    """Whether a ``Host`` header names the loopback (``localhost``, ``127.0.0.1``, ``[::1]``,
    with or without a port)."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1] if "]" in host else host
        rest = host[len(name) :]
        return name in LOOPBACK_HOSTS and (rest == "" or (rest[1:].isdigit() and rest[0] == ":"))
    name, _, port = host.partition(":")
    return name in LOOPBACK_HOSTS and (port == "" or port.isdigit())


@cache
def _page_html() -> str:
    return files("gateway.http").joinpath("explorer.html").read_text(encoding="utf-8")


def explorer_page() -> Response:
    """The explorer's HTML page with its security headers. Call it in development mode only."""
    return Response(_page_html(), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def _with_security_headers(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI app so each of its responses carries :data:`SECURITY_HEADERS`."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


def _refusal(code: Code, message: str, status: int = 400) -> JSONResponse:
    body = {"errors": [{"message": message, "extensions": {"code": code.value}}]}
    return JSONResponse(body, status, headers=SECURITY_HEADERS)


def _ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=SECURITY_HEADERS)


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request's JSON object body, or None (wrong content type, too large, not an object,
    not Unicode text: :func:`gateway.http.json_body.read_json_object`)."""
    try:
        return await read_json_object(request, MAX_API_BODY)
    except BodyRefused:
        return None


def explorer_routes(settings: Settings, gateway: Callable[[], Gateway]) -> list[BaseRoute]:
    """The explorer's routes under ``/explorer`` — none at all outside development mode.

    ``gateway`` returns the running gateway (it exists only once the app's lifespan started).
    """
    if not settings.development:
        return []

    def caller(org: object, roles: object, purpose: object) -> tuple[str, list[str], str]:
        """Validate a chosen caller against the policy; raises GatewayError(BAD_USER_INPUT)."""
        policy = gateway().policy
        if not isinstance(org, str) or org not in policy.organisations:
            known = ", ".join(policy.organisations)
            raise GatewayError(Code.BAD_USER_INPUT, f"Unknown organisation (known: {known}).")
        declared = policy.organisations[org].roles
        if (
            not isinstance(roles, list)
            or not roles
            or not all(isinstance(r, str) and r in declared for r in roles)
        ):
            raise GatewayError(
                Code.BAD_USER_INPUT,
                f"Roles must be a non-empty list of {org}'s roles: {', '.join(declared)}.",
            )
        if not isinstance(purpose, str) or purpose not in policy.purposes:
            raise GatewayError(Code.BAD_USER_INPUT, "Unknown purpose (doelbinding).")
        return org, roles, purpose

    async def page(_: Request) -> Response:
        return explorer_page()

    async def grants(_: Request) -> Response:
        return _ok(grants_overview(gateway().policy))

    async def schema(request: Request) -> Response:
        params = request.query_params
        try:
            org, roles, purpose = caller(
                params.get("org"), params.getlist("role"), params.get("doelbinding")
            )
        except GatewayError as exc:
            return _refusal(exc.code, exc.message)
        policy = gateway().policy
        grant = policy.grant(org, roles, purpose)
        return _ok(
            {
                "organisation": org,
                "roles": roles,
                "purpose": describe_purpose(grant.purpose),
                "fields": schema_tree(graphql_schema(), policy, grant),
            }
        )

    async def token(request: Request) -> Response:
        if not loopback_host(request.headers.get("host", "")):
            return _refusal(
                Code.BAD_USER_INPUT,
                "Tokens are minted only for a loopback Host (localhost, 127.0.0.1, [::1]).",
            )
        payload = await _json_object(request)
        if payload is None:
            return _refusal(Code.BAD_USER_INPUT, "Send a JSON object (application/json).")
        try:
            org, roles, purpose = caller(
                payload.get("org"), payload.get("roles"), payload.get("doelbinding")
            )
        except GatewayError as exc:
            return _refusal(exc.code, exc.message)
        if purpose not in gateway().policy.purposes_for(org, roles):
            # A token for a purpose the roles are not granted would only be refused later; the
            # explorer mints no token the policy could not have given.
            return _refusal(
                Code.BAD_USER_INPUT, f"{purpose} is not granted to {org} with these roles."
            )
        minted = mint_dev_token(
            load_or_create_dev_key(settings.state_dir),
            issuer=settings.issuer,
            audience=settings.audience,
            subject=EXPLORER_SUBJECT,
            oin=gateway().policy.organisations[org].oin,
            organisation=org,
            roles=roles,
            purposes=[purpose],
            ttl=TOKEN_TTL,
        )
        return _ok({"token": minted, "expires_in": TOKEN_TTL})

    async def inspect(request: Request) -> Response:
        payload = await _json_object(request)
        value = payload.get("token") if payload is not None else None
        if not isinstance(value, str) or not value.strip():
            return _refusal(Code.BAD_USER_INPUT, 'Send {"token": "..."} as JSON.')
        try:
            principal = await gateway().authenticator.authenticate(f"Bearer {value.strip()}")
        except GatewayError as exc:
            return _refusal(exc.code, exc.message, 401)
        return _ok(
            {
                "organisation": principal.organisation,
                "roles": list(principal.roles),
                "purposes": sorted(principal.purposes),
            }
        )

    static = StaticFiles(packages=[("gateway.http", "explorer_static")])
    minting = [Route("/explorer/api/token", token, methods=["POST"])]
    return [
        Route("/explorer", page, methods=["GET"]),
        Route("/explorer/api/grants", grants, methods=["GET"]),
        Route("/explorer/api/schema", schema, methods=["GET"]),
        *(minting if mints_tokens(settings) else []),
        Route("/explorer/api/token/inspect", inspect, methods=["POST"]),
        Mount("/explorer/static", app=_with_security_headers(static), name="explorer-static"),
    ]
