"""Deterministic synthetic population for the mock chain registries.

Contract:

* Person ``i`` (``0 <= i < size``) is a pure function of ``(seed, i)``: every call regenerates it
  from ``random.Random(seed * 10**10 + i)`` (integer seeding, no ``hash()``, so it is stable across
  processes and ``PYTHONHASHSEED``). Nothing per person is kept in memory, so a population of
  1 000 000 costs no more memory than one of 10.
* The V-nummer of person ``i`` is an affine bijection of ``i`` modulo ``10**10`` with a multiplier
  coprime to 10, so :meth:`Population.person` inverts it in O(1) without any storage and answers
  ``None`` for numbers outside the population.
* All dates are ``"YYYY-MM-DD"`` strings and lie on or before :data:`REFERENTIEDATUM`, the fixed
  "today" of the synthetic world (so the data do not change with the wall clock).
* Names, places and locations are invented from syllables; nationalities are ISO 3166 alpha-3
  codes (countries are not personal data). No real person is represented.
* The exact search index behind :meth:`Population.zoek` is built lazily on first use and only for
  populations up to :data:`ZOEKINDEX_MAX` persons (the default size fits); larger populations, used
  for benchmarks of look-ups by V-nummer, raise :class:`ZoekenNietBeschikbaarError`.
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Iterator
from typing import Any, Final

from mocks.vocabulary import (
    ACHTERNAAM_LETTERGREPEN,
    AFDOENINGEN,
    BESLISSINGEN,
    DAG0,
    ETNICITEITEN,
    FASEN,
    FEITEN,
    GERICHTHEDEN,
    LOCATIES,
    MELDFREQUENTIES,
    MODALITEITEN,
    NAT_GEWICHT,
    NATIONALITEITEN,
    OVERLASTSOORTEN,
    OVERLASTTEKST,
    PLAATS_LETTERGREPEN,
    PLAATS_UITGANG,
    PROCEDURESOORTEN,
    RELIGIES,
    SIGNAAL_BRON,
    SIGNAAL_KANS,
    SIGNAAL_SOORTEN,
    VERBLIJFSSOORTEN,
    VOORNAAM_LETTERGREPEN,
    VOORVOEGSELS,
    ZORGBEHOEFTEN,
    ZORGTOELICHTING,
    als_datum,
    dag_tussen,
    normaliseer,
    verzonnen_naam,
)

Record = dict[str, Any]

DEFAULT_SEED: Final = 20210716
DEFAULT_SIZE: Final = 10_000
MODULUS: Final = 10**10
ZOEKINDEX_MAX: Final = 100_000
REFERENTIEDATUM: Final = datetime.date(2024, 6, 1)


class ZoekenNietBeschikbaarError(RuntimeError):
    """Raised when an exact search is asked of a population too large to index."""


class Population:
    """A synthetic population; see the module docstring for the determinism contract."""

    def __init__(self, seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> None:
        if not 0 < size <= MODULUS:
            raise ValueError(f"size must be in 1..{MODULUS}")
        self.seed = seed
        self.size = size
        # Multiplier coprime to 10 (odd, not a multiple of 5) makes i -> a*i+b a bijection.
        a = (seed * 2_654_435_761 + 7_368_787_201) % MODULUS
        while math.gcd(a, MODULUS) != 1:
            a += 1
        self._a = a
        self._a_inv = pow(a, -1, MODULUS)
        self._b = (seed * 40_503 + 1_234_567_891) % MODULUS
        self._zoekindex: dict[tuple[str, str], list[int]] | None = None

    # -- identity ------------------------------------------------------------------------------

    def vnummer(self, index: int) -> str:
        """Return the 10-digit V-nummer of person ``index``."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        return f"{(self._a * index + self._b) % MODULUS:010d}"

    def index(self, vnummer: str) -> int | None:
        """Return the index of ``vnummer``, or None if it is not (a V-nummer) in the population."""
        if len(vnummer) != 10 or not vnummer.isascii() or not vnummer.isdigit():
            return None
        i = ((int(vnummer) - self._b) * self._a_inv) % MODULUS
        return i if i < self.size else None

    def vnummers(self) -> Iterator[str]:
        """Iterate all V-nummers in index order."""
        return (self.vnummer(i) for i in range(self.size))

    def __len__(self) -> int:
        return self.size

    # -- records -------------------------------------------------------------------------------

    def person(self, vnummer: str) -> Record | None:
        """Return the full record (BVV + COA + IND parts) of ``vnummer``, or None if unknown."""
        i = self.index(vnummer)
        return None if i is None else self.record(i)

    def bvv_record(self, index: int) -> Record:
        """Return the BVV part of person ``index`` (the BVV JSON shape)."""
        r = self.record(index)
        return {k: r[k] for k in BVV_KEYS}

    def coa_record(self, index: int) -> Record:
        """Return the COA part of person ``index``: vnummer, opvang, overlastmeldingen."""
        r = self.record(index)
        return {k: r[k] for k in ("vnummer", "opvang", "overlastmeldingen")}

    def ind_record(self, index: int) -> Record:
        """Return the IND part of person ``index``: vnummer, procedures."""
        r = self.record(index)
        return {"vnummer": r["vnummer"], "procedures": r["procedures"]}

    def record(self, index: int) -> Record:
        """Generate the full record of person ``index``; a fresh dict on every call."""
        vnummer = self.vnummer(index)
        rng = random.Random(self.seed * MODULUS + index)
        # The draw order below is part of the determinism contract: append, never reorder.
        geslacht = rng.choices(("M", "V", "X"), weights=(60, 38, 2))[0]
        voornamen = " ".join(
            verzonnen_naam(rng, VOORNAAM_LETTERGREPEN, 2, 3) for _ in range(rng.randint(1, 2))
        )
        voorvoegsel = rng.choice(VOORVOEGSELS) if rng.random() < 0.12 else None
        geslachtsnaam = verzonnen_naam(rng, ACHTERNAAM_LETTERGREPEN, 2, 3)
        geboortedatum = rng.randint(DAG0, datetime.date(2010, 12, 31).toordinal())
        nat = rng.choices(range(len(NATIONALITEITEN)), weights=NAT_GEWICHT)[0]
        nationaliteiten = [NATIONALITEITEN[nat]]
        if rng.random() < 0.05:
            nationaliteiten.append(NATIONALITEITEN[rng.randrange(len(NATIONALITEITEN))])
        geboorteplaats = rng.choice(PLAATS_LETTERGREPEN) + rng.choice(PLAATS_UITGANG)

        verblijfsstatus: Record | None = None
        if rng.random() < 0.9:
            soort, grondslag = rng.choice(VERBLIJFSSOORTEN)
            ingang = dag_tussen(rng, datetime.date(2015, 1, 1), REFERENTIEDATUM)
            bepaald = soort.endswith("BEPAALDE_TIJD") and not soort.endswith("ONBEPAALDE_TIJD")
            verblijfsstatus = {
                "soort": soort,
                "ingangsdatum": als_datum(ingang),
                "einddatum": als_datum(ingang + 5 * 365) if bepaald else None,
                "grondslag": grondslag,
            }

        in_opvang = rng.random() < 0.70
        locatie = rng.choice(LOCATIES)

        meldplicht: Record | None = None
        kans = rng.random()
        if kans < 0.25:  # 15% active, 10% lapsed, the rest none
            actief = kans < 0.15
            meldplicht = {
                "actief": actief,
                "frequentie": rng.choice(MELDFREQUENTIES),
                "meldlocatie": f"AVIM {locatie[2]}",
                "laatsteMelding": als_datum(
                    dag_tussen(rng, datetime.date(2023, 1, 1), REFERENTIEDATUM)
                )
                if rng.random() < 0.9
                else None,
            }

        signaleringen: list[Record] = []
        for soort in SIGNAAL_SOORTEN:
            if rng.random() < SIGNAAL_KANS[soort]:
                signaleringen.append(
                    {
                        "soort": soort,
                        "datum": als_datum(
                            dag_tussen(rng, datetime.date(2019, 1, 1), REFERENTIEDATUM)
                        ),
                        "bron": rng.choice(SIGNAAL_BRON[soort]),
                    }
                )

        biometrie: Record | None = None
        if rng.random() < 0.92:
            biometrie = {
                "vingerafdrukkenOpgenomen": rng.random() < 0.97,
                "gezichtsopnameOpgenomen": rng.random() < 0.95,
                "opnamedatum": als_datum(
                    dag_tussen(rng, datetime.date(2015, 1, 1), REFERENTIEDATUM)
                ),
            }
        gezondheid: Record | None = None
        if rng.random() < 0.20:
            gezondheid = {
                "zorgbehoefte": rng.choice(ZORGBEHOEFTEN),
                "toelichting": rng.choice(ZORGTOELICHTING),
            }
        religie = rng.choice(RELIGIES) if rng.random() < 0.30 else None
        etniciteit = rng.choice(ETNICITEITEN) if rng.random() < 0.30 else None
        gerichtheid = rng.choice(GERICHTHEDEN) if rng.random() < 0.02 else None
        strafrechtelijk: list[Record] = []
        if rng.random() < 0.05:
            for _ in range(rng.randint(1, 2)):
                d = dag_tussen(rng, datetime.date(2016, 1, 1), REFERENTIEDATUM)
                strafrechtelijk.append(
                    {
                        "parketnummer": f"{rng.randint(1, 99):02d}-{rng.randint(0, 999_999):06d}"
                        f"-{datetime.date.fromordinal(d).year % 100:02d}",
                        "feit": rng.choice(FEITEN),
                        "datum": als_datum(d),
                        "afdoening": rng.choice(AFDOENINGEN),
                    }
                )

        opvang: Record | None = None
        if in_opvang:
            instroom = dag_tussen(rng, datetime.date(2019, 1, 1), REFERENTIEDATUM)
            uitstroom: str | None = None
            if rng.random() < 0.15 and instroom < REFERENTIEDATUM.toordinal():
                uitstroom = als_datum(rng.randint(instroom + 1, REFERENTIEDATUM.toordinal()))
            opvang = {
                "locatie": {"code": locatie[0], "naam": locatie[1], "gemeente": locatie[2]},
                "instroomdatum": als_datum(instroom),
                "uitstroomdatum": uitstroom,
                "modaliteit": rng.choice(MODALITEITEN),
            }
        overlastmeldingen: list[Record] = []
        heeft_overlast = any(s["soort"] == "OVERLAST" for s in signaleringen)
        # Nuisance reports mostly belong to persons with an OVERLAST signal; a few stray ones.
        aantal = rng.randint(1, 3) if heeft_overlast else (1 if rng.random() < 0.005 else 0)
        for _ in range(aantal):
            overlastmeldingen.append(
                {
                    "datum": als_datum(dag_tussen(rng, datetime.date(2020, 1, 1), REFERENTIEDATUM)),
                    "soort": rng.choice(OVERLASTSOORTEN),
                    "omschrijving": rng.choice(OVERLASTTEKST),
                }
            )

        procedures: list[Record] = []
        for n in range(rng.randint(1, 2)):
            start = dag_tussen(rng, datetime.date(2015, 1, 1), REFERENTIEDATUM)
            fase = rng.choice(FASEN)
            besloten = fase in ("BESLUIT", "BEZWAAR", "BEROEP")
            procedures.append(
                {
                    "zaaknummer": f"{datetime.date.fromordinal(start).year}-"
                    f"{rng.randint(0, 9_999_999):07d}-{n + 1}",
                    "soort": rng.choice(PROCEDURESOORTEN),
                    "fase": fase,
                    "beslissing": rng.choice(BESLISSINGEN) if besloten else None,
                    "beslisdatum": als_datum(
                        rng.randint(start, min(start + 400, REFERENTIEDATUM.toordinal()))
                    )
                    if besloten
                    else None,
                }
            )

        return {
            "vnummer": vnummer,
            "naam": {
                "voornamen": voornamen,
                "voorvoegsel": voorvoegsel,
                "geslachtsnaam": geslachtsnaam,
            },
            "geboorte": {
                "datum": als_datum(geboortedatum),
                "plaats": geboorteplaats,
                "land": NATIONALITEITEN[nat][2],
            },
            "geslacht": geslacht,
            "nationaliteiten": [{"code": c, "omschrijving": o} for c, o, _ in nationaliteiten],
            "verblijfsstatus": verblijfsstatus,
            "meldplicht": meldplicht,
            "signaleringen": signaleringen,
            "biometrie": biometrie,
            "gezondheid": gezondheid,
            "religie": religie,
            "etniciteit": etniciteit,
            "seksueleGerichtheid": gerichtheid,
            "strafrechtelijkeGegevens": strafrechtelijk,
            "opvang": opvang,
            "overlastmeldingen": overlastmeldingen,
            "procedures": procedures,
        }

    # -- search --------------------------------------------------------------------------------

    def zoek(self, geslachtsnaam: str, geboortedatum: str) -> list[int]:
        """Return indices (index order) with this exact surname (case/diacritics folded) and date.

        No character is a wildcard. Raises :class:`ZoekenNietBeschikbaarError` above
        :data:`ZOEKINDEX_MAX` persons, because the index would cost O(size) time and memory.
        """
        if self._zoekindex is None:
            if self.size > ZOEKINDEX_MAX:
                raise ZoekenNietBeschikbaarError(
                    f"exact search is indexed only for populations up to {ZOEKINDEX_MAX}"
                )
            index: dict[tuple[str, str], list[int]] = {}
            for i in range(self.size):
                r = self.record(i)
                sleutel = (normaliseer(r["naam"]["geslachtsnaam"]), r["geboorte"]["datum"])
                index.setdefault(sleutel, []).append(i)
            self._zoekindex = index
        return list(self._zoekindex.get((normaliseer(geslachtsnaam), geboortedatum), ()))


BVV_KEYS: Final = (
    "vnummer", "naam", "geboorte", "geslacht", "nationaliteiten", "verblijfsstatus",
    "meldplicht", "signaleringen", "biometrie", "gezondheid", "religie", "etniciteit",
    "seksueleGerichtheid", "strafrechtelijkeGegevens",
)  # fmt: skip


def in_opvang_op(record: Record, peildatum: str) -> bool:
    """True if the person was in reception on ``peildatum`` (ISO strings compare as dates)."""
    opvang = record.get("opvang")
    if opvang is None:
        return False
    uit = opvang["uitstroomdatum"]
    return bool(opvang["instroomdatum"] <= peildatum and (uit is None or uit > peildatum))


def actief_in_opvang(record: Record) -> bool:
    """True if the person is in reception now: an opvang without uitstroomdatum."""
    opvang = record.get("opvang")
    return opvang is not None and opvang["uitstroomdatum"] is None
