"""The vocabulary of the synthetic population: invented names, places, locations, code lists.

Everything here is invented from syllables or is a code list (countries, procedure kinds); no real
person, place of birth or reception location is represented. :mod:`mocks.data` draws from it.
"""

from __future__ import annotations

import datetime
import random
import unicodedata
from typing import Final

SIGNAAL_SOORTEN: Final = ("OVERLAST", "TOP_X", "NATIONALE_VEILIGHEID", "MENSENHANDEL")
# Independent probability of each signal kind (a few percent each).
SIGNAAL_KANS: Final = {
    "OVERLAST": 0.04,
    "TOP_X": 0.01,
    "NATIONALE_VEILIGHEID": 0.01,
    "MENSENHANDEL": 0.02,
}
SIGNAAL_BRON: Final = {
    "OVERLAST": ("COA", "AVIM"),
    "TOP_X": ("AVIM", "Politie"),
    "NATIONALE_VEILIGHEID": ("AIVD", "NCTV"),
    "MENSENHANDEL": ("EMM", "KMar", "AVIM"),
}

# (code, nationality description, country name) — countries, not personal data.
NATIONALITEITEN: Final = (
    ("SYR", "Syrische", "Syrië"),
    ("ERI", "Eritrese", "Eritrea"),
    ("AFG", "Afghaanse", "Afghanistan"),
    ("TUR", "Turkse", "Turkije"),
    ("IRQ", "Iraakse", "Irak"),
    ("IRN", "Iraanse", "Iran"),
    ("YEM", "Jemenitische", "Jemen"),
    ("SOM", "Somalische", "Somalië"),
    ("MAR", "Marokkaanse", "Marokko"),
    ("DZA", "Algerijnse", "Algerije"),
    ("NGA", "Nigeriaanse", "Nigeria"),
    ("GEO", "Georgische", "Georgië"),
    ("UKR", "Oekraïense", "Oekraïne"),
    ("SDN", "Soedanese", "Soedan"),
    ("ETH", "Ethiopische", "Ethiopië"),
    ("COL", "Colombiaanse", "Colombia"),
    ("VEN", "Venezolaanse", "Venezuela"),
    ("PAK", "Pakistaanse", "Pakistan"),
    ("LBY", "Libische", "Libië"),
    ("TUN", "Tunesische", "Tunesië"),
    ("GIN", "Guineese", "Guinee"),
    ("COD", "Congolese", "Congo (DRC)"),
    ("MDA", "Moldavische", "Moldavië"),
    ("ALB", "Albanese", "Albanië"),
    ("XXA", "Staatloos", "Onbekend"),
)
# Skewed weights: a few nationalities dominate, as in real reception populations.
NAT_GEWICHT: Final = tuple(max(1, 40 - 3 * k) for k in range(len(NATIONALITEITEN)))

# Invented municipality names (syllable compounds); ~20 of them.
GEMEENTEN: Final = (
    "Noordveld", "Heidebroek", "Lindewaard", "Oosterveen", "Zandhoven", "Brakelmeer",
    "Wilgendam", "Eikenrode", "Veldhoorn", "Marswijk", "Grevenbroek", "Kempendaal",
    "Sluisveen", "Rietmond", "Dijkerhout", "Hogeloo", "Beekzande", "Vossenkamp",
    "Lindholt", "Westerlaar",
)  # fmt: skip
LOCATIE_SUFFIX: Final = ("", "-Oost", "-West", "-Zuid", "-Noord")


def maak_locaties() -> tuple[tuple[str, str, str], ...]:
    """Return 30 reception locations as (code, naam, gemeente): one per municipality, ten extra."""
    locaties: list[tuple[str, str, str]] = []
    for n in range(30):
        gemeente = GEMEENTEN[n % len(GEMEENTEN)]
        suffix = LOCATIE_SUFFIX[n // len(GEMEENTEN)]
        locaties.append((f"L{n + 1:03d}", f"Azc {gemeente}{suffix}", gemeente))
    return tuple(locaties)


LOCATIES: Final = maak_locaties()
MODALITEITEN: Final = ("AZC", "POL", "GEZINSLOCATIE", "VBL", "NOODOPVANG")
VERBLIJFSSOORTEN: Final = (
    ("ASIEL_BEPAALDE_TIJD", "Vw 2000 art. 29 lid 1"),
    ("ASIEL_ONBEPAALDE_TIJD", "Vw 2000 art. 33"),
    ("REGULIER_BEPAALDE_TIJD", "Vw 2000 art. 14"),
    ("IN_PROCEDURE", "Vw 2000 art. 8 sub f"),
    ("GEEN_RECHTMATIG_VERBLIJF", "Vw 2000 art. 61"),
)
MELDFREQUENTIES: Final = ("DAGELIJKS", "WEKELIJKS", "TWEEWEKELIJKS")
RELIGIES: Final = ("Islam", "Christendom", "Jodendom", "Hindoeïsme", "Boeddhisme", "Geen")
ETNICITEITEN: Final = ("Groep A", "Groep B", "Groep C", "Groep D", "Groep E")
GERICHTHEDEN: Final = ("Homoseksueel", "Biseksueel", "Overig")
ZORGBEHOEFTEN: Final = ("LAAG", "MIDDEN", "HOOG")
ZORGTOELICHTING: Final = (
    "Periodieke controle nodig", "Medicatie volgens voorschrift", "Verwezen naar huisarts",
    "Psychosociale begeleiding", "Geen bijzonderheden",
)  # fmt: skip
FEITEN: Final = ("Winkeldiefstal", "Mishandeling", "Vernieling", "Bedreiging", "Inbraak")
AFDOENINGEN: Final = ("Strafbeschikking", "Taakstraf", "Geseponeerd", "Voorwaardelijk")
OVERLASTSOORTEN: Final = (
    "VERBAAL_GEWELD", "VERNIELING", "DIEFSTAL", "BEDREIGING", "GELUIDSOVERLAST",
)  # fmt: skip
OVERLASTTEKST: Final = (
    "Incident in gemeenschappelijke ruimte", "Melding door medebewoner",
    "Conflict met beveiliging", "Schade aan inventaris", "Herhaald na waarschuwing",
)  # fmt: skip
PROCEDURESOORTEN: Final = ("ASIEL", "REGULIER", "VERLENGING", "HERHAALDE_AANVRAAG")
FASEN: Final = ("AANVRAAG", "BEHANDELING", "BESLUIT", "BEZWAAR", "BEROEP")
BESLISSINGEN: Final = ("INGEWILLIGD", "AFGEWEZEN", "BUITEN_BEHANDELING")

# Syllables for invented names; a few carry diacritics so searches must fold them.
VOORNAAM_LETTERGREPEN: Final = (
    "a", "ba", "da", "el", "fa", "ha", "ka", "la", "ma", "na", "ra", "sa", "ta", "ya",
    "mi", "ri", "lo", "nu", "se", "zo", "ké", "lé",
)  # fmt: skip
ACHTERNAAM_LETTERGREPEN: Final = (
    "bar", "dor", "fen", "gal", "har", "kel", "lun", "mar", "nor", "pel", "quin", "ros",
    "sal", "tam", "vel", "wen", "zar", "oz", "ül", "ça", "ben", "dal", "ker", "mos",
)  # fmt: skip
VOORVOEGSELS: Final = ("van", "de", "van der", "el", "al")
PLAATS_LETTERGREPEN: Final = ("Ab", "Bel", "Dar", "Es", "Kar", "Mes", "Ral", "Tor", "Zan")
PLAATS_UITGANG: Final = ("abad", "ara", "esh", "ol", "oum", "ville")

DAG0: Final = datetime.date(1950, 1, 1).toordinal()


def als_datum(ordinaal: int) -> str:
    """Return the ISO date string of a proleptic Gregorian ordinal."""
    return datetime.date.fromordinal(ordinaal).isoformat()


def dag_tussen(rng: random.Random, begin: datetime.date, eind: datetime.date) -> int:
    """Draw an ordinal uniformly in [begin, eind]."""
    return rng.randint(begin.toordinal(), eind.toordinal())


def normaliseer(tekst: str) -> str:
    """Fold case and strip diacritics, for exact (not fuzzy) name comparison."""
    ontleed = unicodedata.normalize("NFKD", tekst)
    return "".join(c for c in ontleed if not unicodedata.combining(c)).casefold().strip()


def verzonnen_naam(rng: random.Random, lettergrepen: tuple[str, ...], lo: int, hi: int) -> str:
    return "".join(rng.choice(lettergrepen) for _ in range(rng.randint(lo, hi))).capitalize()
