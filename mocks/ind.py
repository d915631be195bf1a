"""Mock IND: an Apollo Federation v2 subgraph with asylum and regular procedures.

Schema: entity ``Vreemdeling @key(fields: "vnummer")`` with ``procedures``, and
``Query.vreemdeling(vnummer)`` (debug convenience). Dates are ``String`` (``YYYY-MM-DD``).
"""

from __future__ import annotations

import strawberry

from mocks.data import Population
from mocks.subgraph import Info, Subgraph, SubgraphSchema, lookup


@strawberry.type
class Procedure:
    zaaknummer: str
    soort: str
    fase: str
    beslissing: str | None
    beslisdatum: str | None


@strawberry.federation.type(keys=["vnummer"])
class Vreemdeling:
    vnummer: strawberry.ID
    procedures: list[Procedure] | None

    @classmethod
    def resolve_reference(cls, info: Info, vnummer: strawberry.ID) -> Vreemdeling | None:
        """Resolve one representation; None (null entity) for an unknown V-nummer."""
        return lookup(info, vnummer, vreemdeling_van)


def vreemdeling_van(population: Population, vnummer: str) -> Vreemdeling | None:
    """Build the IND view of ``vnummer`` or None if it is not in the population."""
    i = population.index(vnummer)
    if i is None:
        return None
    r = population.ind_record(i)
    return Vreemdeling(
        vnummer=strawberry.ID(vnummer),
        procedures=[Procedure(**p) for p in r["procedures"]],
    )


@strawberry.type
class Query:
    # Shareable: COA resolves the same root field (the same person by the same key).
    @strawberry.federation.field(shareable=True)
    def vreemdeling(self, info: Info, vnummer: strawberry.ID) -> Vreemdeling | None:
        """The IND view of one person (debugging; routers use _entities)."""
        return lookup(info, vnummer, vreemdeling_van)


schema = SubgraphSchema("IND", Query, [Vreemdeling])


class IND(Subgraph):
    """The IND mock registry."""

    def __init__(self, population: Population) -> None:
        super().__init__("IND", population, schema)
