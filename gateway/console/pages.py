"""The console's pages about the trail itself: sign-in, Zoeken (and its export), Betrokkene (and
the printable access report), Verzoek.

Every handler first asks :meth:`~gateway.console.web.Console.viewer` who is asking, reads what
it will show, records that use of the trail (:func:`record_view`) and only then renders it; if
the record cannot be committed the viewer gets 503 and nothing else.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.audit.model import AuditRecord, Decision
from gateway.audit.reading import record_reading
from gateway.audit.store import AuditUnavailable
from gateway.console.access import Viewer, admit, token_expiry
from gateway.console.sessions import (
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    csrf_ok,
)
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
from gateway.console.web import MAX_FORM, Console, Denied, console_of
from gateway.errors import GatewayError

PAGE_ROWS = 50
EXPORT_ROWS = 1_000
REPORT_ROWS = 500
DECISIONS = {"gegeven": Decision.GIVEN, "geweigerd": Decision.REFUSED, "fout": Decision.ERROR}


async def record_view(
    console: Console,
    viewer: Viewer,
    coordinate: str,
    *,
    path: str = "",
    subjects: Iterable[str | None] = (),
) -> None:
    """Record one page view or export before it is shown; 503 when the trail cannot."""
    try:
        await record_reading(
            console.store,
            viewer.context(),
            coordinate=coordinate,
            reason=viewer.rule,
            path=path,
            subjects=[s for s in subjects if s],
        )
    except AuditUnavailable:
        raise Denied(
            503,
            "Het verantwoordingslog kan deze raadpleging niet vastleggen; daarom wordt niets "
            "getoond. Probeer het later opnieuw.",
        ) from None


async def read_form(request: Request) -> dict[str, str]:
    """A posted ``application/x-www-form-urlencoded`` form (bounded), first value per field."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise Denied(400, "Onverwacht formulier.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Denied(413, "Het formulier is te groot.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise Denied(400, "Onleesbaar formulier.") from None
    return {k: v[0] for k, v in parsed.items()}


def _cookie_flags(console: Console) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "secure": not console.development, "path": "/"}


# ---- sign-in ----------------------------------------------------------------------------


async def start(request: Request) -> Response:
    """``GET /``: the sign-in form, or (signed in) the start page."""
    console = console_of(request)
    session = console.session(request)
    if session is not None:
        viewer = admit(console.policy, session.principal)
        if viewer is not None:
            await record_view(console, viewer, "Console.start")
            return console.render(request, "start.html", {}, viewer=viewer)
    nonce = secrets.token_urlsafe(24)
    response = console.render(
        request, "aanmelden.html", {"login_csrf": console.sessions.login_csrf(nonce)}
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_SECONDS, **_cookie_flags(console))
    return response


async def login(request: Request) -> Response:
    """``POST /login``: exchange a gateway token (form field ``token``) for a session."""
    console = console_of(request)
    form = await read_form(request)
    if not console.sessions.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        raise Denied(403, "Het aanmeldformulier is verlopen of komt niet van deze console.")
    token = form.get("token", "").strip()
    try:
        principal = console.authenticator.authenticate(f"Bearer {token}")
    except GatewayError:
        raise Denied(401, "Het token is ongeldig of verlopen.") from None
    viewer = admit(console.policy, principal)
    if viewer is None:
        raise Denied(
            403,
            "Geen toegang: het beleid verleent uw organisatie en rol de doelbinding "
            "VERANTWOORDING niet.",
        )
    await record_view(console, viewer, "Console.aanmelden")
    session_id, session = console.sessions.start(principal, token_expiry(token))
    response = RedirectResponse("/zoeken", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=console.sessions.remaining(session),
        **_cookie_flags(console),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


async def logout(request: Request) -> Response:
    """``POST /afmelden``: end the session (CSRF-checked)."""
    console = console_of(request)
    console.viewer(request)
    session = console.session(request)
    form = await read_form(request)
    if session is None or not csrf_ok(session, form.get("csrf")):
        raise Denied(403, "Ongeldig formulier (CSRF).")
    console.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


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


def _subject_label(row: Row, shown: dict[str, str]) -> str:
    if row.subject is None:
        return "-"
    return shown.get(row.subject, row.subject)


def _row_dict(row: Row, shown: dict[str, str]) -> dict[str, Any]:
    return {
        "volgnummer": row.seq,
        "tijdstip": row.start_time.isoformat(),
        "organisatie": row.organisation,
        "oin": row.organisation_oin,
        "medewerker": row.officer,
        "rollen": list(row.roles),
        "doelbinding": row.purpose,
        "grondslag": row.legal_basis,
        "verwerking": row.activity,
        "betrokkene": _subject_label(row, shown),
        "gegeven": [{"veld": f, "regel": r} for f, r in row.given],
        "geweigerd": [{"veld": f, "reden": r} for f, r in row.refused],
        "fout": [{"veld": f, "reden": r} for f, r in row.failed],
        "trace_id": row.trace_id,
        "beleidsversie": row.policy_version,
    }


def _safe_cell(value: str) -> str:
    # Officer ids partly come from callers: a cell starting with = + - @ would be a formula in
    # a spreadsheet (CSV injection), so it is quoted as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv(rows: list[Row], shown: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = [
        "volgnummer",
        "tijdstip",
        "organisatie",
        "oin",
        "medewerker",
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
        d = _row_dict(row, shown)
        d["rollen"] = ",".join(row.roles)
        d["gegeven"] = " ".join(f"{f}:{r}" for f, r in row.given)
        d["geweigerd"] = " ".join(f"{f}:{r}" for f, r in row.refused)
        d["fout"] = " ".join(f"{f}:{r}" for f, r in row.failed)
        writer.writerow([_safe_cell("" if d[k] is None else str(d[k])) for k in header])
    return out.getvalue()


def _next_url(params: QueryParams, after: int | None) -> str | None:
    if after is None:
        return None
    items = [(k, v) for k, v in params.multi_items() if k != "na"]
    return "/zoeken?" + urlencode([*items, ("na", str(after))])


async def zoeken(request: Request) -> Response:
    """``GET /zoeken?vnummer=&officer=&org=&doelbinding=&verwerking=&besluit=&since=&until=
    &na=&formaat=csv|json``: a page of the trail (or its export), recorded before it is shown."""
    console = console_of(request)
    viewer = console.viewer(request)
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
            _csv(page.rows, shown), media_type="text/csv; charset=utf-8", headers=headers
        )
    if fmt == "json":
        body = {"rijen": [_row_dict(r, shown) for r in page.rows], "volgende": next_url}
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
    viewer = console.viewer(request)
    pseudonym = request.path_params["pseudonym"]
    try:
        after = parse_after(request.query_params.get("na"))
    except BadFilter as exc:
        raise Denied(400, str(exc)) from None
    rows, next_after = await _subject_page(console, pseudonym, after, PAGE_ROWS)
    await record_view(
        console, viewer, "Console.betrokkene", path=f"na={after or ''}", subjects=[pseudonym]
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
    viewer = console.viewer(request)
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
        console, viewer, "Console.verslag", path=f"na={after or ''}", subjects=[pseudonym]
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
    viewer = console.viewer(request)
    trace_id = request.path_params["trace_id"]
    if not TRACE_ID.fullmatch(trace_id):
        raise Denied(404, "Onbekend verzoek: een trace-id bestaat uit 32 hexadecimale tekens.")
    try:
        entries, _ = await read_entries(
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
        {"trace_id": trace_id, "entries": shown, "trace_link": trace_link},
        status=200 if shown else 404,
        viewer=viewer,
    )


