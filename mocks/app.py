"""Assembly of the three mocks; re-exported by :mod:`mocks`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from mocks.bvv import BVV
from mocks.coa import COA
from mocks.data import DEFAULT_SEED, DEFAULT_SIZE, Population
from mocks.ind import IND
from mocks.registry import MockRegistry


@dataclass(frozen=True)
class Registries:
    """The three mocks over one shared population."""

    population: Population
    bvv: MockRegistry
    coa: MockRegistry
    ind: MockRegistry

    @property
    def all(self) -> tuple[MockRegistry, MockRegistry, MockRegistry]:
        """All three, in the order BVV, COA, IND."""
        return (self.bvv, self.coa, self.ind)

    def reset(self) -> None:
        """Reset every registry (served calls and faults)."""
        for registry in self.all:
            registry.reset()


def create_registries(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> Registries:
    """Build the BVV, COA and IND mocks over ``Population(seed, size)``."""
    population = Population(seed, size)
    return Registries(population, BVV(population), COA(population), IND(population))


def combined_app(registries: Registries) -> Starlette:
    """Mount the mocks under /bvv, /coa and /ind; ``GET /health`` answers for the whole."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "registries": [r.name for r in registries.all]})

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Mount("/bvv", app=registries.bvv.app),
            Mount("/coa", app=registries.coa.app),
            Mount("/ind", app=registries.ind.app),
        ]
    )
