"""The mock registries over HTTP with their faults switchable from outside (chaos run only).

``python -m bench.fault_mocks --port P`` serves BVV, COA and IND under ``/bvv``, ``/coa``, ``/ind``
(as ``ketenpoort mocks serve``) plus ``PUT /_faults`` with a JSON body
``{"registry": "bvv"|"coa"|"ind"|"all", "latency": s, "status": n|null, "timeout": bool,
"malformed": bool}`` (omitted keys: off). Loopback only; for the chaos driver, never for a
deployment.
"""

from __future__ import annotations

import argparse
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from mocks import create_registries
from mocks.app import combined_app


def fault_app(seed: int | None = None, size: int | None = None) -> Starlette:
    """The combined mocks plus ``PUT /_faults``."""
    kwargs: dict[str, Any] = {}
    if seed is not None:
        kwargs["seed"] = seed
    if size is not None:
        kwargs["size"] = size
    registries = create_registries(**kwargs)
    by_name = {r.name.lower(): r for r in registries.all}

    async def set_faults(request: Request) -> Response:
        body = await request.json()
        name = str(body.get("registry", "all")).lower()
        targets = list(by_name.values()) if name == "all" else [by_name[name]]
        for registry in targets:
            registry.faults.clear()
            registry.faults.latency = float(body.get("latency", 0.0))
            registry.faults.status = body.get("status")
            registry.faults.timeout = bool(body.get("timeout", False))
            registry.faults.malformed = bool(body.get("malformed", False))
            registry.served.clear()  # the chaos run never reads it: keep memory flat
        return JSONResponse({"ok": True})

    inner = combined_app(registries)

    async def trim(request: Request) -> Response:
        for registry in registries.all:
            registry.served.clear()
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/_faults", set_faults, methods=["PUT"]),
            Route("/_trim", trim, methods=["POST"]),
            Mount("/", app=inner),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_mocks")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        fault_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
