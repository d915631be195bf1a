"""Mock BVV (Basisvoorziening Vreemdelingen): REST/JSON with field projection and row scope.

Endpoints (all bodies JSON; errors are RFC 9457 ``application/problem+json``):

* ``POST /personen`` ``{"vnummers": [str], "fields": [path], "voorwaarde": {...}|null}`` →
  ``{"personen": [record], "buitenVoorwaarde": [vnummer]}``. Records come in request order
  (duplicates collapsed to the first occurrence), hold ``vnummer`` plus exactly the asked paths;
  unknown V-nummers appear in neither list. At most :data:`MAX_VNUMMERS` per call.
* ``POST /zoeken`` ``{"geslachtsnaam", "geboortedatum", "fields", "max"?, "voorwaarde"?}`` →
  ``{"personen": [...]}``: exact match on surname (case and diacritics folded, no wildcard
  characters) and birth date, only persons within the voorwaarde, at most ``max`` (default 10,
  1..100) in index order. Matches outside the voorwaarde are not named at all, not even by
  V-nummer: a search names nobody, so the caller has no claim to learn who else matched.
  Answers 501 for populations too large to index.
* ``GET /health`` → 200.

Paths: ``"naam"`` is the whole sub-object, ``"naam.voornamen"`` one key inside it; for lists the
key is applied to each element. Several paths under one parent merge; a whole-object path wins.
``voorwaarde`` is ``{"signaal": SOORT}`` or ``{"meldplicht": true}``; persons outside it are not
projected at all: a look-up lists them by V-nummer in ``buitenVoorwaarde`` (the caller named
them), a search leaves them out.

Recorded (:class:`mocks.registry.ServedCall`): the requested V-nummers (``/personen``) or the
returned ones (``/zoeken``), the requested paths plus the path the scope check read
(``signaleringen.soort`` or ``meldplicht.actief``), and the request headers.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mocks.data import Population, Record, ZoekenNietBeschikbaarError
from mocks.registry import MockRegistry, headers_of
from mocks.vocabulary import SIGNAAL_SOORTEN

MAX_VNUMMERS: Final = 100
MAX_ZOEKRESULTATEN: Final = 100

# The BVV record shape: top-level key -> keys of its object / list elements (None = scalar).
VELDEN: Final[dict[str, frozenset[str] | None]] = {
    "vnummer": None,
    "naam": frozenset({"voornamen", "voorvoegsel", "geslachtsnaam"}),
    "geboorte": frozenset({"datum", "plaats", "land"}),
    "geslacht": None,
    "nationaliteiten": frozenset({"code", "omschrijving"}),
    "verblijfsstatus": frozenset({"soort", "ingangsdatum", "einddatum", "grondslag"}),
    "meldplicht": frozenset({"actief", "frequentie", "meldlocatie", "laatsteMelding"}),
    "signaleringen": frozenset({"soort", "datum", "bron"}),
    "biometrie": frozenset({"vingerafdrukkenOpgenomen", "gezichtsopnameOpgenomen", "opnamedatum"}),
    "gezondheid": frozenset({"zorgbehoefte", "toelichting"}),
    "religie": None,
    "etniciteit": None,
    "seksueleGerichtheid": None,
    "strafrechtelijkeGegevens": frozenset({"parketnummer", "feit", "datum", "afdoening"}),
}
#: ``<object>.__typename`` asks only whether the object is there (an empty object, or a list of
#: empty objects): the gateway asks it when a caller selects an object but none of its fields.
VELDPADEN: Final = frozenset(
    [
        *VELDEN,
        *(f"{top}.{sub}" for top, subs in VELDEN.items() for sub in subs or ()),
        *(f"{top}.__typename" for top, subs in VELDEN.items() if subs),
    ]
)
_VNUMMER: Final = re.compile(r"[0-9]{10}")
_DATUM: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SCOPEVELD: Final = {"signaal": "signaleringen.soort", "meldplicht": "meldplicht.actief"}

Projectie = dict[str, set[str] | None]


class OngeldigVerzoekError(ValueError):
    """The request body violates the contract; the message becomes the problem ``detail``."""


def problem(status: int, title: str, detail: str) -> JSONResponse:
    """Return an RFC 9457 problem response."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def projectie(paden: list[str]) -> Projectie:
    """Merge dotted paths into a projection tree; ``None`` means the whole value."""
    boom: Projectie = {}
    for pad in paden:
        top, _, sub = pad.partition(".")
        if not sub:
            boom[top] = None
        elif top not in boom:
            boom[top] = {sub}
        else:
            bestaand = boom[top]
            if bestaand is not None:  # a whole-object path already covers every key
                bestaand.add(sub)
    return boom


def projecteer(record: Record, boom: Projectie) -> Record:
    """Return ``vnummer`` plus exactly the projected parts of ``record`` (record key order)."""
    uit: Record = {"vnummer": record["vnummer"]}
    for key, waarde in record.items():
        if key not in boom:
            continue
        subs = boom[key]
        if subs is None or waarde is None:
            uit[key] = waarde
        elif isinstance(waarde, list):
            uit[key] = [{k: v for k, v in el.items() if k in subs} for el in waarde]
        else:
            uit[key] = {k: v for k, v in waarde.items() if k in subs}
    return uit


def voldoet(record: Record, voorwaarde: dict[str, Any] | None) -> bool:
    """True if ``record`` lies inside the row scope (always, without a voorwaarde)."""
    if voorwaarde is None:
        return True
    if "signaal" in voorwaarde:
        return any(s["soort"] == voorwaarde["signaal"] for s in record["signaleringen"])
    meldplicht = record["meldplicht"]
    return meldplicht is not None and meldplicht["actief"] is True


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise OngeldigVerzoekError("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise OngeldigVerzoekError("body must be a JSON object")
    return data


def _sleutels(data: dict[str, Any], verplicht: set[str], optioneel: set[str]) -> None:
    ontbrekend = verplicht - data.keys()
    if ontbrekend:
        raise OngeldigVerzoekError(f"missing key(s): {', '.join(sorted(ontbrekend))}")
    onbekend = data.keys() - verplicht - optioneel
    if onbekend:
        raise OngeldigVerzoekError(f"unknown key(s): {', '.join(sorted(onbekend))}")


def _velden(waarde: Any) -> list[str]:
    if not isinstance(waarde, list) or not all(isinstance(v, str) for v in waarde):
        raise OngeldigVerzoekError("'fields' must be a list of strings")
    onbekend = [v for v in waarde if v not in VELDPADEN]
    if onbekend:
        raise OngeldigVerzoekError(f"unknown field path(s): {', '.join(onbekend)}")
    return list(waarde)


def _voorwaarde(waarde: Any) -> dict[str, Any] | None:
    if waarde is None:
        return None
    if not isinstance(waarde, dict) or len(waarde) != 1:
        raise OngeldigVerzoekError("'voorwaarde' must be an object with exactly one key")
    if "signaal" in waarde:
        if waarde["signaal"] not in SIGNAAL_SOORTEN:
            raise OngeldigVerzoekError(f"'voorwaarde.signaal' must be one of {SIGNAAL_SOORTEN}")
        return dict(waarde)
    if "meldplicht" in waarde:
        if waarde["meldplicht"] is not True:
            raise OngeldigVerzoekError("'voorwaarde.meldplicht' must be true")
        return dict(waarde)
    raise OngeldigVerzoekError("'voorwaarde' must have key 'signaal' or 'meldplicht'")


def _opgenomen_velden(velden: list[str], voorwaarde: dict[str, Any] | None) -> frozenset[str]:
    extra = {_SCOPEVELD[next(iter(voorwaarde))]} if voorwaarde else set()
    return frozenset(velden) | extra


class BVV(MockRegistry):
    """The BVV mock; :attr:`app` is a Starlette application."""

    def __init__(self, population: Population) -> None:
        super().__init__("BVV", population)
        self.app = Starlette(
            routes=[
                Route("/personen", self._personen, methods=["POST"]),
                Route("/zoeken", self._zoeken, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "registry": self.name})

    async def _personen(self, request: Request) -> Response:
        fout = await self.fault_response()
        if fout is not None:
            return fout
        try:
            data = _object(await request.body())
            _sleutels(data, {"vnummers", "fields"}, {"voorwaarde"})
            vnummers = data["vnummers"]
            if not isinstance(vnummers, list) or not all(isinstance(v, str) for v in vnummers):
                raise OngeldigVerzoekError("'vnummers' must be a list of strings")
            if len(vnummers) > MAX_VNUMMERS:
                raise OngeldigVerzoekError(f"at most {MAX_VNUMMERS} vnummers per call")
            slecht = [v for v in vnummers if not _VNUMMER.fullmatch(v)]
            if slecht:
                raise OngeldigVerzoekError(f"not a V-nummer (10 digits): {slecht[0]!r}")
            velden = _velden(data["fields"])
            voorwaarde = _voorwaarde(data.get("voorwaarde"))
        except OngeldigVerzoekError as exc:
            return problem(400, "Bad Request", str(exc))

        uniek = tuple(dict.fromkeys(vnummers))
        boom = projectie(velden)
        personen: list[Record] = []
        buiten: list[str] = []
        for vnummer in uniek:
            record = self.population.person(vnummer)
            if record is None:
                continue
            if voldoet(record, voorwaarde):
                personen.append(projecteer(record, boom))
            else:
                buiten.append(vnummer)
        self.record(uniek, _opgenomen_velden(velden, voorwaarde), headers_of(request.headers))
        return JSONResponse({"personen": personen, "buitenVoorwaarde": buiten})

    async def _zoeken(self, request: Request) -> Response:
        fout = await self.fault_response()
        if fout is not None:
            return fout
        try:
            data = _object(await request.body())
            _sleutels(data, {"geslachtsnaam", "geboortedatum", "fields"}, {"max", "voorwaarde"})
            naam = data["geslachtsnaam"]
            if not isinstance(naam, str) or not naam.strip():
                raise OngeldigVerzoekError("'geslachtsnaam' must be a non-empty string")
            datum = data["geboortedatum"]
            if not isinstance(datum, str) or not _DATUM.fullmatch(datum):
                raise OngeldigVerzoekError("'geboortedatum' must be a date YYYY-MM-DD")
            try:
                datetime.date.fromisoformat(datum)
            except ValueError as exc:
                raise OngeldigVerzoekError("'geboortedatum' is not a valid date") from exc
            maximum = data.get("max", 10)
            # bool is an int subclass; true/false are not counts.
            if isinstance(maximum, bool) or not isinstance(maximum, int):
                raise OngeldigVerzoekError("'max' must be an integer")
            if not 1 <= maximum <= MAX_ZOEKRESULTATEN:
                raise OngeldigVerzoekError(f"'max' must be in 1..{MAX_ZOEKRESULTATEN}")
            velden = _velden(data["fields"])
            voorwaarde = _voorwaarde(data.get("voorwaarde"))
        except OngeldigVerzoekError as exc:
            return problem(400, "Bad Request", str(exc))
        try:
            treffers = self.population.zoek(naam, datum)
        except ZoekenNietBeschikbaarError as exc:
            return problem(501, "Not Implemented", str(exc))

        boom = projectie(velden)
        # The scope first, then the maximum: out-of-scope matches neither leave the registry nor
        # crowd in-scope ones out of the answer.
        binnen = [
            record
            for record in (self.population.record(i) for i in treffers)
            if voldoet(record, voorwaarde)
        ][:maximum]
        personen = [projecteer(record, boom) for record in binnen]
        gevonden = tuple(record["vnummer"] for record in binnen)
        self.record(gevonden, _opgenomen_velden(velden, voorwaarde), headers_of(request.headers))
        return JSONResponse({"personen": personen})
