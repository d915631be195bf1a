"""The search's export: the same rows as the page, as CSV (spreadsheet-safe) or JSON."""

from __future__ import annotations

import csv
import io
from typing import Any

from gateway.console.trail import Row


def subject_label(row: Row, shown: dict[str, str]) -> str:
    """The typed V-nummer for its own pseudonym (``shown``), else the pseudonym; ``-`` for the
    request-level line."""
    if row.subject is None:
        return "-"
    return shown.get(row.subject, row.subject)


def row_dict(row: Row, shown: dict[str, str]) -> dict[str, Any]:
    """One row as JSON (Dutch keys, as on the page)."""
    return {
        "volgnummer": row.seq,
        "tijdstip": row.start_time.isoformat(),
        "organisatie": row.organisation,
        "oin": row.organisation_oin,
        "medewerker": row.officer,
        "geauthenticeerd_als": row.authenticated_as,
        "rollen": list(row.roles),
        "doelbinding": row.purpose,
        "grondslag": row.legal_basis,
        "verwerking": row.activity,
        "betrokkene": subject_label(row, shown),
        "gegeven": [{"veld": f, "regel": r} for f, r in row.given],
        "geweigerd": [{"veld": f, "reden": r} for f, r in row.refused],
        "fout": [{"veld": f, "reden": r} for f, r in row.failed],
        "trace_id": row.trace_id,
        "beleidsversie": row.policy_version,
    }


def safe_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    # Officer ids partly come from callers: a cell starting with = + - @ would be a formula in
    # a spreadsheet (CSV injection), so it is quoted as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(rows: list[Row], shown: dict[str, str]) -> str:
    """The rows as CSV with a header line (cells made spreadsheet-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = [
        "volgnummer",
        "tijdstip",
        "organisatie",
        "oin",
        "medewerker",
        "geauthenticeerd_als",
        "rollen",
        "doelbinding",
        "grondslag",
        "verwerking",
        "betrokkene",
        "gegeven",
        "geweigerd",
        "fout",
        "trace_id",
        "beleidsversie",
    ]
    writer.writerow(header)
    for row in rows:
        d = row_dict(row, shown)
        d["rollen"] = ",".join(row.roles)
        d["gegeven"] = " ".join(f"{f}:{r}" for f, r in row.given)
        d["geweigerd"] = " ".join(f"{f}:{r}" for f, r in row.refused)
        d["fout"] = " ".join(f"{f}:{r}" for f, r in row.failed)
        writer.writerow([safe_cell("" if d[k] is None else str(d[k])) for k in header])
    return out.getvalue()
