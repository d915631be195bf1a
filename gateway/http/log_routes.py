"""The audit log's public endpoints: the latest signed checkpoint and RFC 6962 proofs.

``GET /.well-known/ketenpoort/checkpoint`` (text/plain, a C2SP signed note),
``GET /.well-known/ketenpoort/proof/inclusion?leaf=I&size=N`` and
``GET /.well-known/ketenpoort/proof/consistency?from=M&to=N`` (JSON, base64 hashes). They
serve hashes only, never content of the trail, to anyone who wants to check it (witnesses,
data protection officers). Bad parameters get HTTP 400 with code ``BAD_USER_INPUT``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.audit.checkpoints import Checkpointer
from gateway.audit.merkle import ProofError
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.errors import Code

PREFIX = "/.well-known/ketenpoort"
#: Largest integer a parameter may hold (a tree size is a seq: bigint).
_MAX = 2**62

#: The running gateway's store and checkpointer (``None`` while starting).
Source = Callable[[], tuple[AuditStore, Checkpointer] | None]


def error_response(
    code: Code, message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The log routes' error body: ``{"errors": [{"message", "extensions": {"code"}}]}``."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code.value}}]},
        status,
        headers=headers,
    )


class BadInput(Exception):
    """A missing or malformed query parameter (HTTP 400, ``BAD_USER_INPUT``)."""


def int_param(request: Request, name: str) -> int:
    """A required non-negative integer query parameter (at most 2**62)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        raise BadInput(f"query parameter {name!r} is required")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > _MAX:
        raise BadInput(f"query parameter {name!r} must be a non-negative integer")
    return int(raw)


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def log_routes(source: Source) -> list[Route]:
    """The routes, reading the running gateway through ``source``."""

    async def checkpoint(_: Request) -> Response:
        running = source()
        if running is None or running[1].latest is None:
            return error_response(Code.AUDIT_UNAVAILABLE, "No checkpoint has been signed yet.", 503)
        note, _cp = running[1].latest
        return PlainTextResponse(note.render(), headers={"Cache-Control": "no-store"})

    async def inclusion(request: Request) -> Response:
        running = source()
        if running is None:
            return error_response(Code.AUDIT_UNAVAILABLE, "The gateway is starting.", 503)
        try:
            leaf, size = int_param(request, "leaf"), int_param(request, "size")
            tree = running[0].tree()
            path = await tree.inclusion(leaf, size)
            leaf_hash = await tree.leaf(leaf)
        except (BadInput, ProofError) as exc:
            return error_response(Code.BAD_USER_INPUT, str(exc), 400)
        except AuditUnavailable:
            return error_response(Code.AUDIT_UNAVAILABLE, "The audit log cannot be read now.", 503)
        return JSONResponse(
            {
                "leaf_index": leaf,
                "tree_size": size,
                "leaf_hash": _b64([leaf_hash])[0],
                "inclusion": _b64(path),
            }
        )

    async def consistency(request: Request) -> Response:
        running = source()
        if running is None:
            return error_response(Code.AUDIT_UNAVAILABLE, "The gateway is starting.", 503)
        try:
            first, second = int_param(request, "from"), int_param(request, "to")
            proof = await running[0].tree().consistency(first, second)
        except (BadInput, ProofError) as exc:
            return error_response(Code.BAD_USER_INPUT, str(exc), 400)
        except AuditUnavailable:
            return error_response(Code.AUDIT_UNAVAILABLE, "The audit log cannot be read now.", 503)
        return JSONResponse({"from": first, "to": second, "consistency": _b64(proof)})

    return [
        Route(f"{PREFIX}/checkpoint", checkpoint, methods=["GET"]),
        Route(f"{PREFIX}/proof/inclusion", inclusion, methods=["GET"]),
        Route(f"{PREFIX}/proof/consistency", consistency, methods=["GET"]),
    ]
