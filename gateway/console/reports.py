"""The console's pages over a window of the trail and about the trail: Overzicht (charts),
Afwijkingen (anomalies), Integriteit (verify the chain), Beleid (processing register).

Windows are bounded (:func:`gateway.console.trail.window` reads at most a cap of records and
the page says when the window held more). These pages show aggregates and officers, no data
subjects, so their views are recorded without subject rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from urllib.parse import urlencode

from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.admission.trail_reader import Viewer
from gateway.audit.anomalies import find_anomalies
from gateway.audit.checkpoints import load_verifier, signed_checkpoints
from gateway.audit.logcheck import LogCheck
from gateway.audit.model import AuditRecord, Decision
from gateway.audit.note import NoteError
from gateway.audit.store import AuditUnavailable
from gateway.console.charts import Chart, bar_chart
from gateway.console.sessions import csrf_ok
from gateway.console.trail import BadFilter, Filters, parse_moment, window
from gateway.console.web import Console, Denied, console_of, read_form, record_view
from gateway.policy.register import render_markdown

GROUPINGS = {"organisatie": "Organisatie", "medewerker": "Medewerker", "doelbinding": "Doelbinding"}
#: Series drawn separately; the rest is summed as "overig".
MAX_SERIES = 6
MAX_WINDOW_DAYS = 93


def _window_params(request: Request, default_days: int) -> tuple[dt.datetime, dt.datetime]:
    # The default end is the next whole minute: the form shows minutes, and a window sent back
    # from it must still hold the records of this minute.
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    try:
        since_text = request.query_params.get("since", "").strip()
        until_text = request.query_params.get("until", "").strip()
        until = parse_moment(until_text, "Tot") if until_text else now
        since = (
            parse_moment(since_text, "Vanaf")
            if since_text
            else until - dt.timedelta(days=default_days)
        )
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    if since >= until:
        raise Denied(400, "Vanaf moet voor Tot liggen.")
    if until - since > dt.timedelta(days=MAX_WINDOW_DAYS):
        raise Denied(400, f"Kies een venster van hoogstens {MAX_WINDOW_DAYS} dagen.")
    return since, until


async def _read(console: Console, filters: Filters) -> tuple[list[AuditRecord], bool]:
    try:
        return await window(console.store, filters)
    except AuditUnavailable:
        raise Denied(503, "Het verantwoordingslog is niet bereikbaar.") from None


def _group_of(record: AuditRecord, grouping: str) -> str:
    if grouping == "organisatie":
        return record.organisation
    if grouping == "medewerker":
        return f"{record.officer} ({record.organisation})"
    return record.purpose or "(geen)"


def overview(
    console: Console, records: list[AuditRecord], grouping: str, days: list[str]
) -> tuple[list[Chart], list[dict[str, object]]]:
    """Per day and group: persons looked up, refused fields, highest quota use (%)."""
    persons: dict[tuple[str, str], set[str]] = defaultdict(set)
    refusals: dict[tuple[str, str], float] = defaultdict(float)
    # quota: (day, officer, organisation, purpose) -> persons; the quota is per officer.
    per_officer: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    groups_of_officer: dict[tuple[str, str, str, str], str] = {}
    for r in records:
        day = r.start_time.astimezone(dt.UTC).date().isoformat()
        group = _group_of(r, grouping)
        if r.data_subject_id is not None:
            persons[(day, group)].add(r.data_subject_id)
            key = (day, r.officer, r.organisation, r.purpose or "")
            per_officer[key].add(r.data_subject_id)
            groups_of_officer[key] = group
        if r.decision is Decision.REFUSED:
            refusals[(day, group)] += 1
    quota: dict[tuple[str, str], float] = defaultdict(float)
    for key, subjects in per_officer.items():
        purpose = console.policy.purposes.get(key[3])
        if purpose is None or purpose.quota_per_day <= 0:
            continue
        share = 100.0 * len(subjects) / purpose.quota_per_day
        cell = (key[0], groups_of_officer[key])
        quota[cell] = max(quota[cell], share)
    counts = {k: float(len(v)) for k, v in persons.items()}
    totals: dict[str, float] = defaultdict(float)
    for (_, group), value in counts.items():
        totals[group] += value
    for (_, group), value in refusals.items():
        totals[group] += value
    ranked = sorted(totals, key=lambda g: (-totals[g], g))
    top, rest = ranked[:MAX_SERIES], set(ranked[MAX_SERIES:])

    def folded(values: dict[tuple[str, str], float], how: str) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = defaultdict(float)
        for (day, group), value in values.items():
            name = group if group not in rest else "overig"
            out[(day, name)] = (
                max(out[(day, name)], value) if how == "max" else out[(day, name)] + value
            )
        return out

    series = top + (["overig"] if rest else [])
    charts = [
        bar_chart("Geraadpleegde personen per dag", days, series, folded(counts, "sum")),
        bar_chart("Geweigerde velden per dag", days, series, folded(refusals, "sum")),
        bar_chart(
            "Hoogste quotumgebruik per dag (% van het dagquotum van één medewerker)",
            days,
            ["hoogste"],
            {
                (d, "hoogste"): max((v for (dd, _), v in quota.items() if dd == d), default=0.0)
                for d in days
            },
            unit="%",
            integer=False,
        ),
    ]
    cells = sorted(set(counts) | set(refusals) | set(quota))
    table = [
        {
            "dag": day,
            "groep": group,
            "personen": int(counts.get((day, group), 0)),
            "weigeringen": int(refusals.get((day, group), 0)),
            "quotum": round(quota.get((day, group), 0.0), 1),
        }
        for day, group in cells
    ]
    return charts, table


def _days(since: dt.datetime, until: dt.datetime) -> list[str]:
    day, last = since.date(), (until - dt.timedelta(microseconds=1)).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


async def overzicht(request: Request) -> Response:
    """``GET /overzicht?groep=&since=&until=``: per day and organisation/officer/purpose."""
    console = console_of(request)
    viewer = await console.viewer(request)
    grouping = request.query_params.get("groep") or "organisatie"
    if grouping not in GROUPINGS:
        raise Denied(400, "groep: kies organisatie, medewerker of doelbinding")
    since, until = _window_params(request, 14)
    records, truncated = await _read(console, Filters(since=since, until=until))
    await record_view(
        console,
        viewer,
        "Console.overzicht",
        path=Filters(since=since, until=until).describe(groep=grouping),
    )
    charts, table = overview(console, records, grouping, _days(since, until))
    return console.render(
        request,
        "overzicht.html",
        {
            "charts": charts,
            "table": table,
            "grouping": grouping,
            "groupings": GROUPINGS,
            "since": since,
            "until": until,
            "truncated": truncated,
            "count": len(records),
        },
        viewer=viewer,
    )


def _minute(moment: dt.datetime) -> str:
    """A UTC moment as the search form's fields show it (``2026-11-30T14:05``)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")


async def afwijkingen(request: Request) -> Response:
    """``GET /afwijkingen?since=&until=``: breadth and caps anomalies, linked to the requests."""
    console = console_of(request)
    viewer = await console.viewer(request)
    since, until = _window_params(request, 7)
    filters = Filters(since=since, until=until)
    records, truncated = await _read(console, filters)
    await record_view(console, viewer, "Console.afwijkingen", path=filters.describe())
    items = []
    for a in find_anomalies(records):
        # An officer named by an application token is "officer (via application)" there; the
        # search filters on the officer.
        officer = a.officer.partition(" (via ")[0]
        query = {"officer": officer, "org": a.organisation}
        if a.kind == "breadth":
            start = dt.datetime.combine(a.day, dt.time(), dt.UTC)
            query |= {
                "doelbinding": a.purpose,
                "since": _minute(start),
                "until": _minute(start + dt.timedelta(days=1)),
            }
        else:
            query |= {
                "besluit": "geweigerd",
                "since": _minute(since),
                # Rounded up: the link must cover the window's last minute too.
                "until": _minute(until + dt.timedelta(minutes=1)),
            }
        items.append({"anomaly": a, "link": "/zoeken?" + urlencode(query)})
    return console.render(
        request,
        "afwijkingen.html",
        {
            "items": items,
            "since": since,
            "until": until,
            "truncated": truncated,
            "count": len(records),
        },
        viewer=viewer,
    )


async def _verify(console: Console, viewer: Viewer) -> None:
    run = console.integrity
    try:
        run.result = await console.store.verify()
        run.error = None
        run.log, run.log_error = await check_checkpoints(console)
    except AuditUnavailable as exc:
        run.result, run.error = None, exc.message
        run.log, run.log_error = None, None
    finally:
        run.finished = dt.datetime.now(dt.UTC)
        run.running = False


async def check_checkpoints(console: Console) -> tuple[LogCheck | None, str | None]:
    """The store against every published, signed checkpoint (``audit verify --checkpoint``):
    ``(result, None)``, or ``(None, why it could not be checked)``."""
    path, key_file = console.checkpoint_file, console.log_key_file
    if path is None or key_file is None:
        return None, "Checkpoints worden niet naar een bestand gepubliceerd."
    try:
        key = load_verifier(key_file)
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        checkpoints = signed_checkpoints(text, key)
    except FileNotFoundError as exc:
        return None, f"Niet gevonden: {exc.filename}."
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        return None, f"Checkpoints niet te lezen of onjuist ondertekend: {exc}"
    if not checkpoints:
        return None, f"{path} bevat nog geen checkpoint."
    return await console.store.check_log(checkpoints), None


async def integriteit(request: Request) -> Response:
    """``GET /integriteit``: the last verification; ``POST`` (CSRF) runs one (recorded)."""
    console = console_of(request)
    viewer = await console.viewer(request)
    run = console.integrity
    if request.method == "POST":
        session = console.session(request)
        form = await read_form(request)
        if session is None or not csrf_ok(session, form.get("csrf")):
            raise Denied(403, "Ongeldig formulier (CSRF).")
        await record_view(console, viewer, "Console.integriteit.controle")
        if not run.running:
            run.running, run.by = True, viewer.name
            run.started, run.finished = dt.datetime.now(dt.UTC), None
            task = asyncio.get_running_loop().create_task(_verify(console, viewer))
            console.tasks.add(task)
            task.add_done_callback(console.tasks.discard)
        return RedirectResponse("/integriteit", status_code=303)
    await record_view(console, viewer, "Console.integriteit")
    return console.render(request, "integriteit.html", {"run": run}, viewer=viewer)


def register_html(markdown: str) -> str:
    """The register's Markdown as HTML (raw HTML in it is escaped, not passed through), its
    headings moved two levels down to sit under the page's own."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + 2)}"
    return str(md.renderer.render(tokens, md.options, {}))


async def beleid(request: Request) -> Response:
    """``GET /beleid``: the processing register (from the policy) and the policy versions the
    requests of a window ran under."""
    console = console_of(request)
    viewer = await console.viewer(request)
    since, until = _window_params(request, 30)
    filters = Filters(since=since, until=until)
    records, truncated = await _read(console, filters)
    await record_view(console, viewer, "Console.beleid", path=filters.describe())
    versions: dict[str, dict[str, object]] = {}
    seen: set[int] = set()
    for r in records:
        if r.seq in seen:
            continue
        seen.add(r.seq)
        v = versions.setdefault(
            r.policy_version,
            {
                "version": r.policy_version,
                "requests": 0,
                "first": r.start_time,
                "last": r.start_time,
            },
        )
        v["requests"] = int(v["requests"]) + 1  # type: ignore[call-overload]
        v["last"] = r.start_time
    register = register_html(render_markdown(console.policy))
    return console.render(
        request,
        "beleid.html",
        {
            "register": register,
            "versions": list(versions.values()),
            "current": console.policy.version,
            "since": since,
            "until": until,
            "truncated": truncated,
        },
        viewer=viewer,
    )
