"""The domain types of the gateway's schema (docs/design.md).

Attribute names are the GraphQL names (camelCase, as in the Haal Centraal APIs), because values
arrive as the registries' JSON objects and are read with ``operator.getitem``: no conversion per
field. A value that is an exception instance (a refusal) becomes an error at its path.

Every field of ``Vreemdeling`` belongs to exactly one registry; special-category (AVG art. 9)
and criminal (AVG art. 10) fields are marked here, at the source, so the policy cannot forget
them.
"""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

Date = NewType("Date", str)


def _serialize_date(value: object) -> str:
    # Registries answer ISO strings already: pass them through, no parsing per value.
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError("a Date is an ISO 8601 string or a date")


def _parse_date(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a Date is a string YYYY-MM-DD")
    return datetime.date.fromisoformat(value).isoformat()


#: The scalars of the schema (``StrawberryConfig(scalar_map=SCALARS)``).
SCALARS: dict[object, ScalarDefinition] = {
    Date: strawberry.scalar(
        name="Date",
        description="A calendar date, ISO 8601 (YYYY-MM-DD).",
        serialize=_serialize_date,
        parse_value=_parse_date,
    )
}


@strawberry.enum(description="The kind of a signal in the BVV.")
class SignaleringSoort(StrEnum):
    OVERLAST = "OVERLAST"
    TOP_X = "TOP_X"
    NATIONALE_VEILIGHEID = "NATIONALE_VEILIGHEID"
    MENSENHANDEL = "MENSENHANDEL"


@strawberry.enum(description="How reception statistics are grouped.")
class StatistiekGroepering(StrEnum):
    LOCATIE = "LOCATIE"
    GEMEENTE = "GEMEENTE"
    NATIONALITEIT = "NATIONALITEIT"
    VERBLIJFSSTATUS = "VERBLIJFSSTATUS"


@strawberry.type(description="Name as registered in the BVV.")
class Naam:
    voornamen: str | None
    voorvoegsel: str | None
    geslachtsnaam: str | None


@strawberry.type
class Geboorte:
    datum: Date | None
    plaats: str | None
    land: str | None


@strawberry.type
class Nationaliteit:
    code: str | None
    omschrijving: str | None


@strawberry.type
class Verblijfsstatus:
    soort: str | None
    ingangsdatum: Date | None
    einddatum: Date | None
    grondslag: str | None


@strawberry.type(description="Reporting obligation (meldplicht) imposed on the person.")
class Meldplicht:
    actief: bool | None
    frequentie: str | None
    meldlocatie: str | None
    laatsteMelding: Date | None


@strawberry.type
class Signalering:
    soort: SignaleringSoort | None
    datum: Date | None
    bron: str | None


@strawberry.type(description="Special category (AVG art. 9): whether biometrics were taken.")
class Biometrie:
    vingerafdrukkenOpgenomen: bool | None
    gezichtsopnameOpgenomen: bool | None
    opnamedatum: Date | None


@strawberry.type(description="Special category (AVG art. 9): health.")
class Gezondheid:
    zorgbehoefte: str | None
    toelichting: str | None


@strawberry.type(description="Criminal data (AVG art. 10).")
class StrafrechtelijkGegeven:
    parketnummer: str | None
    feit: str | None
    datum: Date | None
    afdoening: str | None


@strawberry.type
class Locatie:
    code: str | None
    naam: str | None
    gemeente: str | None


@strawberry.type(description="Reception (opvang) by the COA.")
class Opvang:
    locatie: Locatie | None
    instroomdatum: Date | None
    uitstroomdatum: Date | None
    modaliteit: str | None


@strawberry.type(description="A nuisance report registered by the COA.")
class Overlastmelding:
    datum: Date | None
    soort: str | None
    omschrijving: str | None


@strawberry.type(description="An asylum or regular procedure at the IND.")
class Procedure:
    zaaknummer: str | None
    soort: str | None
    fase: str | None
    beslissing: str | None
    beslisdatum: Date | None


@strawberry.type(description="A foreign national known to the chain, by V-nummer.")
class Vreemdeling:
    vnummer: strawberry.ID
    naam: Naam | None
    geboorte: Geboorte | None
    geslacht: str | None
    nationaliteiten: list[Nationaliteit] | None
    verblijfsstatus: Verblijfsstatus | None
    meldplicht: Meldplicht | None
    signaleringen: list[Signalering] | None
    biometrie: Biometrie | None
    gezondheid: Gezondheid | None
    religie: str | None
    etniciteit: str | None
    seksueleGerichtheid: str | None
    strafrechtelijkeGegevens: list[StrafrechtelijkGegeven] | None
    opvang: Opvang | None
    overlastmeldingen: list[Overlastmelding] | None
    procedures: list[Procedure] | None


@strawberry.type(description="One cell of a statistic; a suppressed cell has no count.")
class StatistiekCel:
    sleutel: str
    aantal: int | None
    onderdrukt: bool


@strawberry.type(description="One record of the accountability trail (for security teams and FGs).")
class AuditRegel:
    volgnummer: int = strawberry.field(
        description="Position of the request's entry in the hash chain (shared by its rows)."
    )
    tijdstip: str
    traceId: str
    organisatie: str
    oin: str
    medewerker: str
    aangemeldAls: str = strawberry.field(
        description="Who authenticated (the token's subject): the officer or an application."
    )
    rollen: list[str]
    doelbinding: str | None
    grondslag: str | None
    verwerking: str | None
    betrokkene: str | None
    coordinaat: str
    pad: str
    besluit: str
    reden: str
    register: str | None
    beleidsversie: str


#: The registry that holds each field of Vreemdeling (the key, vnummer, is known to all).
REGISTRY_OF_FIELD: dict[str, str] = {
    "vnummer": "BVV",
    "naam": "BVV",
    "geboorte": "BVV",
    "geslacht": "BVV",
    "nationaliteiten": "BVV",
    "verblijfsstatus": "BVV",
    "meldplicht": "BVV",
    "signaleringen": "BVV",
    "biometrie": "BVV",
    "gezondheid": "BVV",
    "religie": "BVV",
    "etniciteit": "BVV",
    "seksueleGerichtheid": "BVV",
    "strafrechtelijkeGegevens": "BVV",
    "opvang": "COA",
    "overlastmeldingen": "COA",
    "procedures": "IND",
}

#: Coordinates (and everything below them) that are special categories of personal data.
SPECIAL_CATEGORY: frozenset[str] = frozenset(
    {
        "Vreemdeling.biometrie",
        "Vreemdeling.gezondheid",
        "Vreemdeling.religie",
        "Vreemdeling.etniciteit",
        "Vreemdeling.seksueleGerichtheid",
    }
)

#: Coordinates (and everything below them) that are criminal data.
CRIMINAL_DATA: frozenset[str] = frozenset({"Vreemdeling.strafrechtelijkeGegevens"})

#: Types that exist only below a special-category or criminal field: all their fields share it.
SPECIAL_CATEGORY_TYPES: frozenset[str] = frozenset({"Biometrie", "Gezondheid"})
CRIMINAL_DATA_TYPES: frozenset[str] = frozenset({"StrafrechtelijkGegeven"})

DATA_TYPES: tuple[type, ...] = (
    Vreemdeling,
    Naam,
    Geboorte,
    Nationaliteit,
    Verblijfsstatus,
    Meldplicht,
    Signalering,
    Biometrie,
    Gezondheid,
    StrafrechtelijkGegeven,
    Opvang,
    Locatie,
    Overlastmelding,
    Procedure,
    StatistiekCel,
    AuditRegel,
)
