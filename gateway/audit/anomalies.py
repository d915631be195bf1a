"""Anomaly detection over the accountability trail, for security teams.

Two signals of bulk extraction, the thing the gateway exists to prevent:

* **breadth** — an officer consulting far more distinct persons for a purpose on one UTC day than
  the colleagues working the same purpose that day. Targeted work touches a few persons; a sweep
  touches many.
* **caps** — an officer repeatedly running into the per-request subject cap
  (``TOO_MANY_SUBJECTS``) or the daily quota (``QUOTA_EXCEEDED``): probing the limits.

The functions are pure: they read records (e.g. from ``audit search``) and return findings; what
to do with a finding is a human decision.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from gateway.audit.model import AuditRecord, Decision
from gateway.errors import Code

__all__ = ["CAP_REASONS", "Anomaly", "find_anomalies", "render_anomalies"]

#: Request-level refusal reasons that mean "hit a limit meant to stop bulk extraction".
CAP_REASONS: frozenset[str] = frozenset({Code.TOO_MANY_SUBJECTS.value, Code.QUOTA_EXCEEDED.value})


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding.

    ``kind == "breadth"``: ``value`` is the officer's distinct subjects for ``purpose`` on ``day``;
    ``baseline`` the median of the peers' breadths (``min_breadth`` when there were no peers).
    ``kind == "caps"``: ``value`` is the number of refused requests in the window; ``baseline``
    the ``repeat_refusals`` threshold; ``day`` the day the threshold was reached; ``purpose`` the
    purposes involved, comma-separated and sorted.
    """

    officer: str
    organisation: str
    purpose: str
    day: date
    kind: Literal["breadth", "caps"]
    value: int
    baseline: float
    detail: str


#: An officer: (organisation, officer id).
_Who = tuple[str, str]


def _actor(record: AuditRecord) -> str:
    """Who acted: the officer, and the application token that asserted it when one did, so an
    application cannot spread its look-ups over invented officers' names unseen."""
    if record.officer == record.authenticated_as:
        return record.officer
    return f"{record.officer} (via {record.authenticated_as})"


def _as_utc(moment: datetime) -> datetime:
    # The model promises aware UTC; a naive value is read as UTC rather than local time, so the
    # day never depends on the machine running the analysis.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _utc_day(moment: datetime) -> date:
    return _as_utc(moment).date()


def _purpose(record: AuditRecord) -> str:
    return record.purpose if record.purpose is not None else "-"


def find_anomalies(
    records: Iterable[AuditRecord],
    *,
    breadth_factor: float = 3.0,
    min_breadth: int = 20,
    repeat_refusals: int = 3,
) -> list[Anomaly]:
    """Find breadth and caps anomalies in ``records`` (one pass; any order).

    An officer is identified by (organisation, officer): ``sub`` values of different organisations
    may coincide and are different people.

    Breadth: for each (officer, purpose, UTC day of ``start_time``) the number of distinct
    ``data_subject_id`` values among its records, whatever the decision (a refused look-up still
    shows what was sought). Peers are the other officers with any record (also request-level only,
    breadth 0) for that purpose that day. Anomalous when breadth >= ``min_breadth`` and breadth >=
    ``breadth_factor`` × median(peer breadths); without peers, breadth >= ``breadth_factor`` ×
    ``min_breadth``.

    Caps: an officer with at least ``repeat_refusals`` refused requests whose request-level record
    (``data_subject_id`` None) has reason ``TOO_MANY_SUBJECTS`` or ``QUOTA_EXCEEDED``, counted over
    all records given (the window) and all purposes. A request counts once even if it has several
    such records.

    Result order: by day, kind, purpose, value (highest first), organisation, officer.
    Raises :class:`ValueError` for ``breadth_factor <= 0``, ``min_breadth < 1`` or
    ``repeat_refusals < 1``.
    """
    if breadth_factor <= 0:
        raise ValueError("breadth_factor must be > 0")
    if min_breadth < 1:
        raise ValueError("min_breadth must be >= 1")
    if repeat_refusals < 1:
        raise ValueError("repeat_refusals must be >= 1")

    # (purpose, day) -> officer -> distinct subjects (an officer with no subjects still appears:
    # they are a peer with breadth 0).
    subjects: dict[tuple[str, date], dict[_Who, set[str]]] = defaultdict(lambda: defaultdict(set))
    # officer -> request (trace_id, span_id) -> (start_time, purpose, reason)
    refusals: dict[_Who, dict[tuple[str, str], tuple[datetime, str, str]]] = defaultdict(dict)

    for r in records:
        who = (r.organisation, _actor(r))
        per_officer = subjects[(_purpose(r), _utc_day(r.start_time))][who]
        if r.data_subject_id is not None:
            per_officer.add(r.data_subject_id)
        elif r.decision is Decision.REFUSED and r.reason in CAP_REASONS:
            refusals[who].setdefault(
                (r.trace_id, r.span_id), (_as_utc(r.start_time), _purpose(r), r.reason)
            )

    found: list[Anomaly] = []
    for (purpose, day), officers in subjects.items():
        breadths = {who: len(s) for who, s in officers.items()}
        for who, breadth in breadths.items():
            if breadth < min_breadth:
                continue
            peers = [b for other, b in breadths.items() if other != who]
            baseline = float(statistics.median(peers)) if peers else float(min_breadth)
            if breadth < breadth_factor * baseline:
                continue
            if not peers:
                detail = f"{breadth} persons; no peers (reference {breadth_factor * baseline:g})"
            elif baseline == 0:
                detail = f"{breadth} persons; median of {len(peers)} peer(s) 0"
            else:
                detail = (
                    f"{breadth} persons; median of {len(peers)} peer(s) {baseline:g}, "
                    f"{breadth / baseline:.1f}× the median"
                )
            found.append(
                Anomaly(who[1], who[0], purpose, day, "breadth", breadth, baseline, detail)
            )

    for who, requests in refusals.items():
        if len(requests) < repeat_refusals:
            continue
        ordered = sorted(requests.values(), key=lambda t: t[0])
        reasons: dict[str, int] = defaultdict(int)
        for _, _, reason in ordered:
            reasons[reason] += 1
        by_reason = ", ".join(f"{reason}×{n}" for reason, n in sorted(reasons.items()))
        first, last = ordered[0][0], ordered[-1][0]
        detail = (
            f"{len(ordered)} refused requests ({by_reason}) "
            f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"
        )
        found.append(
            Anomaly(
                officer=who[1],
                organisation=who[0],
                purpose=",".join(sorted({p for _, p, _ in ordered})),
                day=_utc_day(ordered[repeat_refusals - 1][0]),
                kind="caps",
                value=len(ordered),
                baseline=float(repeat_refusals),
                detail=detail,
            )
        )

    found.sort(key=lambda a: (a.day, a.kind, a.purpose, -a.value, a.organisation, a.officer))
    return found


def _printable(text: str) -> str:
    # Officer ids come from tokens and the X-Gebruiker header, i.e. partly from callers. Escape
    # control characters so a crafted id cannot rewrite the security team's terminal (ANSI
    # escapes) or forge extra table rows (newlines).
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def render_anomalies(anomalies: list[Anomaly]) -> str:
    """A plain-text table (one row per anomaly, columns aligned), or a one-line message when
    there are none. Caller-supplied text is escaped; the result ends with a newline."""
    if not anomalies:
        return "No anomalies found.\n"
    header = ("DAY", "KIND", "ORGANISATION", "OFFICER", "PURPOSE", "VALUE", "BASELINE", "DETAIL")
    rows = [
        (
            a.day.isoformat(),
            a.kind,
            _printable(a.organisation),
            _printable(a.officer),
            _printable(a.purpose),
            str(a.value),
            f"{a.baseline:g}",
            _printable(a.detail),
        )
        for a in anomalies
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {5, 6}  # right-align numbers so magnitudes line up

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"
