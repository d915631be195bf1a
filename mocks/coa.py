"""Mock COA: an Apollo Federation v2 subgraph with reception data and raw reception statistics.

Schema: entity ``Vreemdeling @key(fields: "vnummer")`` with ``opvang`` and
``overlastmeldingen``; ``Query.vreemdeling(vnummer)`` (debug convenience) and
``Query.opvangstatistiek(peildatum, groepering)``, which returns RAW, unsuppressed counts — the
gateway is responsible for suppression. Dates are ``String`` (``YYYY-MM-DD``).
"""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Final

import strawberry

from mocks.data import Population, Record, in_opvang_op
from mocks.subgraph import Info, Subgraph, SubgraphSchema, lookup, noteer_veld, population_of

GROEPERINGEN: Final = ("LOCATIE", "GEMEENTE", "NATIONALITEIT", "VERBLIJFSSTATUS")


@strawberry.type
class OpvangLocatie:
    code: str
    naam: str
    gemeente: str


@strawberry.type
class Opvang:
    locatie: OpvangLocatie
    instroomdatum: str
    uitstroomdatum: str | None
    modaliteit: str


@strawberry.type
class Overlastmelding:
    datum: str
    soort: str
    omschrijving: str


@strawberry.type
class RuweCel:
    """One raw statistics cell; ``bovenliggend`` is the gemeente of a LOCATIE cell."""

    sleutel: str
    aantal: int
    bovenliggend: str | None


@strawberry.federation.type(keys=["vnummer"])
class Vreemdeling:
    vnummer: strawberry.ID
    opvang: Opvang | None
    overlastmeldingen: list[Overlastmelding] | None

    @classmethod
    def resolve_reference(cls, info: Info, vnummer: strawberry.ID) -> Vreemdeling | None:
        """Resolve one representation; None (null entity) for an unknown V-nummer."""
        return lookup(info, vnummer, vreemdeling_van)


def vreemdeling_van(population: Population, vnummer: str) -> Vreemdeling | None:
    """Build the COA view of ``vnummer`` or None if it is not in the population."""
    i = population.index(vnummer)
    if i is None:
        return None
    r = population.coa_record(i)
    opvang: Opvang | None = None
    if r["opvang"] is not None:
        o = r["opvang"]
        opvang = Opvang(
            locatie=OpvangLocatie(**o["locatie"]),
            instroomdatum=o["instroomdatum"],
            uitstroomdatum=o["uitstroomdatum"],
            modaliteit=o["modaliteit"],
        )
    return Vreemdeling(
        vnummer=strawberry.ID(vnummer),
        opvang=opvang,
        overlastmeldingen=[Overlastmelding(**m) for m in r["overlastmeldingen"]],
    )


def _sleutel(record: Record, groepering: str) -> str:
    if groepering == "LOCATIE":
        return str(record["opvang"]["locatie"]["code"])
    if groepering == "GEMEENTE":
        return str(record["opvang"]["locatie"]["gemeente"])
    if groepering == "NATIONALITEIT":
        return str(record["nationaliteiten"][0]["code"])
    status = record["verblijfsstatus"]
    return "ONBEKEND" if status is None else str(status["soort"])


def opvangstatistiek(population: Population, peildatum: str, groepering: str) -> list[RuweCel]:
    """Count persons in reception on ``peildatum`` per group; non-zero cells, sorted by key.

    O(size): iterates the whole population (fine for the default 10 000).
    """
    if groepering not in GROEPERINGEN:
        raise ValueError(f"groepering must be one of {', '.join(GROEPERINGEN)}")
    try:
        datetime.date.fromisoformat(peildatum)
    except ValueError as exc:
        raise ValueError("peildatum must be a date YYYY-MM-DD") from exc
    telling: Counter[str] = Counter()
    gemeente_van: dict[str, str] = {}
    for i in range(population.size):
        r = population.record(i)
        if not in_opvang_op(r, peildatum):
            continue
        sleutel = _sleutel(r, groepering)
        telling[sleutel] += 1
        if groepering == "LOCATIE":
            gemeente_van[sleutel] = r["opvang"]["locatie"]["gemeente"]
    return [
        RuweCel(sleutel=k, aantal=n, bovenliggend=gemeente_van.get(k))
        for k, n in sorted(telling.items())
    ]


@strawberry.type
class Query:
    # Shareable: IND resolves the same root field (the same person by the same key).
    @strawberry.federation.field(shareable=True)
    def vreemdeling(self, info: Info, vnummer: strawberry.ID) -> Vreemdeling | None:
        """The COA view of one person (debugging; routers use _entities)."""
        return lookup(info, vnummer, vreemdeling_van)

    @strawberry.field
    def opvangstatistiek(self, info: Info, peildatum: str, groepering: str) -> list[RuweCel]:
        """Raw (unsuppressed) counts of persons in reception."""
        noteer_veld(info, "opvangstatistiek")
        return opvangstatistiek(population_of(info), peildatum, groepering)


schema = SubgraphSchema("COA", Query, [Vreemdeling])


class COA(Subgraph):
    """The COA mock registry."""

    def __init__(self, population: Population) -> None:
        super().__init__("COA", population, schema)
