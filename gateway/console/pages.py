"""The console's pages about the trail itself: sign-in, Zoeken (and its export), Betrokkene (and
the printable access report), Verzoek.

Every handler first asks :meth:`~gateway.console.web.Console.viewer` who is asking, reads what
it will show, records that use of the trail (:func:`record_view`) and only then renders it; if
the record cannot be committed the viewer gets 503 and nothing else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.audit.model import AuditRecord, Decision
from gateway.audit.store import AuditUnavailable
from gateway.console.export import row_dict, to_csv
from gateway.console.trail import (
    PSEUDONYM,
    TRACE_ID,
    VNUMMER,
    BadFilter,
    Filters,
    Row,
    parse_moment,
    read_entries,
    rows_of,
    search_page,
)
from gateway.console.web import Console, Denied, console_of, record_view

PAGE_ROWS = 50
EXPORT_ROWS = 1_000
REPORT_ROWS = 500
DECISIONS = {"gegeven": Decision.GIVEN, "geweigerd": Decision.REFUSED, "fout": Decision.ERROR}


# ---- Zoeken -----------------------------------------------------------------------------


def parse_filters(console: Console, params: QueryParams) -> tuple[Filters, str | None]:
    """The search's filters; the V-nummer is turned into its pseudonym at once and returned
    separately (shown only on the page of the viewer who typed it)."""

    def text(name: str) -> str | None:
        value = params.get(name, "").strip()
        if len(value) > 200:
            raise BadFilter(f"{name}: te lang")
        return value or None

    vnummer = text("vnummer")
    if vnummer is not None and not VNUMMER.fullmatch(vnummer):
        raise BadFilter("Een V-nummer bestaat uit precies 10 cijfers.")
    decision = text("besluit")
    if decision is not None and decision not in DECISIONS:
        raise BadFilter("besluit: kies gegeven, geweigerd of fout")
    activity = text("verwerking")
    if activity is not None and "://" not in activity:
        activity = console.policy.processing_activity_uri(activity)
    filters = Filters(
        subject=console.pseudonym(vnummer) if vnummer else None,
        officer=text("officer"),
        organisation=text("org"),
        purpose=text("doelbinding"),
        activity=activity,
        decision=DECISIONS[decision] if decision else None,
        since=parse_moment(s, "Vanaf") if (s := text("since")) else None,
        until=parse_moment(u, "Tot") if (u := text("until")) else None,
    )
    return filters, vnummer


def parse_after(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadFilter("na: een volgnummer")
    return int(value)


def _next_url(params: QueryParams, after: int | None) -> str | None:
    if after is None:
        return None
    items = [(k, v) for k, v in params.multi_items() if k != "na"]
    return "/zoeken?" + urlencode([*items, ("na", str(after))])


async def zoeken(request: Request) -> Response:
    """``GET /zoeken?vnummer=&officer=&org=&doelbinding=&verwerking=&besluit=&since=&until=
    &na=&formaat=csv|json``: a page of the trail (or its export), recorded before it is shown."""
    console = console_of(request)
    viewer = await console.viewer(request)
    params = request.query_params
    fmt = params.get("formaat") or "html"
    if fmt not in ("html", "csv", "json"):
        raise Denied(400, "formaat: kies csv of json")
    try:
        filters, vnummer = parse_filters(console, params)
        after = parse_after(params.get("na"))
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    rows_wanted = PAGE_ROWS if fmt == "html" else EXPORT_ROWS
    try:
        page = await search_page(console.store, filters, after=after, rows=rows_wanted)
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    except AuditUnavailable:
        raise Denied(503, "Het verantwoordingslog is niet bereikbaar.") from None
    shown_subjects = [filters.subject, *(r.subject for r in page.rows)]
    coordinate = "Console.zoeken" if fmt == "html" else f"Console.export.{fmt}"
    await record_view(
        console,
        viewer,
        coordinate,
        path=filters.describe(na=after),
        subjects=shown_subjects,
    )
    # The typed V-nummer is shown for its own pseudonym only, and only to this viewer now.
    shown = {filters.subject: vnummer} if filters.subject and vnummer else {}
    next_url = _next_url(params, page.after)
    if fmt == "csv":
        headers = {"content-disposition": 'attachment; filename="ketenpoort-zoeken.csv"'}
        if next_url:
            headers["link"] = f'<{next_url}>; rel="next"'
        return Response(
            to_csv(page.rows, shown), media_type="text/csv; charset=utf-8", headers=headers
        )
    if fmt == "json":
        body = {"rijen": [row_dict(r, shown) for r in page.rows], "volgende": next_url}
        return JSONResponse(
            body, headers={"content-disposition": 'attachment; filename="ketenpoort-zoeken.json"'}
        )
    base = [(k, v) for k, v in params.multi_items() if k not in ("na", "formaat")]
    return console.render(
        request,
        "zoeken.html",
        {
            "params": params,
            "vnummer": vnummer,
            # As the form's datetime-local fields show them (UTC, minutes).
            "since_value": filters.since.strftime("%Y-%m-%dT%H:%M") if filters.since else "",
            "until_value": filters.until.strftime("%Y-%m-%dT%H:%M") if filters.until else "",
            "page": page,
            "shown": shown,
            "next_url": next_url,
            "csv_url": "/zoeken?"
            + urlencode([*base, *([("na", str(after))] if after else []), ("formaat", "csv")]),
            "json_url": "/zoeken?"
            + urlencode([*base, *([("na", str(after))] if after else []), ("formaat", "json")]),
            "first_url": "/zoeken?" + urlencode(base) if after else None,
            "organisations": list(console.policy.organisations.values()),
            "purposes": list(console.policy.purposes.values()),
            "decisions": DECISIONS,
        },
        viewer=viewer,
    )


# ---- Betrokkene ---------------------------------------------------------------------------


async def _subject_page(
    console: Console, pseudonym: str, after: int | None, rows: int
) -> tuple[list[Row], int | None]:
    if not PSEUDONYM.fullmatch(pseudonym):
        raise Denied(
            404, "Onbekende betrokkene: een pseudoniem bestaat uit 64 hexadecimale tekens."
        )
    try:
        page = await search_page(console.store, Filters(subject=pseudonym), after=after, rows=rows)
    except AuditUnavailable:
        raise Denied(503, "Het verantwoordingslog is niet bereikbaar.") from None
    return page.rows, page.after


async def betrokkene(request: Request) -> Response:
    """``GET /betrokkene/<pseudonym>``: who saw what of this person, when and why (paged)."""
    console = console_of(request)
    viewer = await console.viewer(request)
    pseudonym = request.path_params["pseudonym"]
    try:
        after = parse_after(request.query_params.get("na"))
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    rows, next_after = await _subject_page(console, pseudonym, after, PAGE_ROWS)
    await record_view(
        console,
        viewer,
        "Console.betrokkene",
        path=f"na={after}" if after else "",
        subjects=[pseudonym],
    )
    return console.render(
        request,
        "betrokkene.html",
        {
            "pseudonym": pseudonym,
            "rows": rows,
            "next_url": f"/betrokkene/{pseudonym}?na={next_after}" if next_after else None,
            "first_url": f"/betrokkene/{pseudonym}" if after else None,
        },
        viewer=viewer,
    )


async def verslag(request: Request) -> Response:
    """``GET /betrokkene/<pseudonym>/verslag[?vnummer=]``: the printable access report (AVG art.
    15 / Wpg); the V-nummer appears on it only when the viewer types it (and it must match)."""
    console = console_of(request)
    viewer = await console.viewer(request)
    pseudonym = request.path_params["pseudonym"]
    vnummer = request.query_params.get("vnummer", "").strip() or None
    try:
        after = parse_after(request.query_params.get("na"))
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    if vnummer is not None and (
        not VNUMMER.fullmatch(vnummer) or console.pseudonym(vnummer) != pseudonym
    ):
        raise Denied(400, "Dit V-nummer hoort niet bij deze betrokkene.")
    rows, next_after = await _subject_page(console, pseudonym, after, REPORT_ROWS)
    await record_view(
        console,
        viewer,
        "Console.verslag",
        path=f"na={after}" if after else "",
        subjects=[pseudonym],
    )
    extra = f"&vnummer={vnummer}" if vnummer else ""
    return console.render(
        request,
        "verslag.html",
        {
            "pseudonym": pseudonym,
            "vnummer": vnummer,
            "rows": rows,
            "part_after": after,
            "next_url": f"/betrokkene/{pseudonym}/verslag?na={next_after}{extra}"
            if next_after
            else None,
            "policy": console.policy,
        },
        viewer=viewer,
    )


# ---- Verzoek ----------------------------------------------------------------------------


def _registries(records: list[AuditRecord]) -> list[dict[str, Any]]:
    """Per registry: fields given, refused, failed (with reasons) — its calls' outcome."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.registry is None:
            continue
        entry = out.setdefault(
            r.registry, {"naam": r.registry, "gegeven": 0, "geweigerd": 0, "fouten": {}}
        )
        if r.decision is Decision.GIVEN:
            entry["gegeven"] += 1
        elif r.decision is Decision.REFUSED:
            entry["geweigerd"] += 1
        else:
            entry["fouten"][r.reason] = entry["fouten"].get(r.reason, 0) + 1
    return list(out.values())


async def verzoek(request: Request) -> Response:
    """``GET /verzoek/<trace id>``: one request in full (every entry with this trace id)."""
    console = console_of(request)
    viewer = await console.viewer(request)
    trace_id = request.path_params["trace_id"]
    if not TRACE_ID.fullmatch(trace_id):
        raise Denied(404, "Onbekend verzoek: een trace-id bestaat uit 32 hexadecimale tekens.")
    try:
        entries, complete = await read_entries(
            console.store, Filters(trace_id=trace_id).query(), after=None
        )
    except AuditUnavailable:
        raise Denied(503, "Het verantwoordingslog is niet bereikbaar.") from None
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    shown = [
        {"first": records[0], "rows": rows_of(records), "registries": _registries(records)}
        for records in entries
    ]
    subjects = [row.subject for records in entries for row in rows_of(records)]
    await record_view(
        console, viewer, "Console.verzoek", path=f"trace={trace_id}", subjects=subjects
    )
    trace_link = (
        console.settings.trace_url.replace("{trace_id}", trace_id)
        if console.settings.trace_url
        else None
    )
    return console.render(
        request,
        "verzoek.html",
        {
            "trace_id": trace_id,
            "entries": shown,
            "trace_link": trace_link,
            "complete": complete,
        },
        status=200 if shown else 404,
        viewer=viewer,
    )
