"""The hook for the development explorer: the page a browser gets for ``GET /graphql``.

:func:`explorer_response` is the one place the HTTP layer asks for it; it is served only in
development mode and only to a GET that prefers ``text/html`` (see :mod:`gateway.http.media`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.http.ides import get_graphql_ide_html


def explorer_response(request: Request) -> Response:
    """The explorer page for a browser's GET (development mode only)."""
    return HTMLResponse(get_graphql_ide_html(graphql_ide="graphiql"))
