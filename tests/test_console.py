"""The accountability console without a browser: the HTTP interface scripts use, sessions,
CSRF, input errors, the trail's paging and the charts. (The browser tests are in
test_console_browser.py.)"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from gateway.admission.tokens import Principal, load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import Running, start_gateway
from gateway.audit.model import (
    AccessContext,
    AuditBatch,
    AuditQuery,
    Decision,
    FieldDecision,
    SubjectAccess,
)
from gateway.audit.stores import open_store
from gateway.cli.main import app as cli_app
from gateway.config import ConfigError, Settings
from gateway.console.app import create_console_app, open_console
from gateway.console.charts import bar_chart, nice_max
from gateway.console.export import safe_cell
from gateway.console.reports import check_checkpoints, register_html
from gateway.console.sessions import Sessions
from gateway.console.settings import ConsoleSettings
from gateway.console.trail import Filters, search_page
from gateway.console.web import Console
from mocks import Registries
from tests.conftest import StartGateway
from tests.support import caller, settings_for
from tests.test_authentication import rsa_key, write_jwks

pytestmark = pytest.mark.timeout(60)

TOEZICHT = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } religie } }"
VIEWER = "fg-2"


@dataclasses.dataclass
class Setup:
    running: Running
    settings: Settings
    console: Console
    http: httpx.AsyncClient
    v: str

    def token(
        self,
        role: str = "fg",
        sub: str = VIEWER,
        purposes: tuple[str, ...] = ("VERANTWOORDING",),
        ttl: int = 3600,
    ) -> str:
        policy = self.running.gateway.policy
        return mint_dev_token(
            load_or_create_dev_key(self.settings.state_dir),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            subject=sub,
            oin=policy.organisations["NVIK"].oin,
            organisation="NVIK",
            roles=[role],
            purposes=list(purposes),
            ttl=ttl,
        )

    def bearer(self, **kwargs: object) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(**kwargs)}"}  # type: ignore[arg-type]

    async def views(self, coordinate: str) -> list[str]:
        """Paths of the viewer's recorded views of one kind."""
        found = await self.console.store.search(AuditQuery(officer=VIEWER, limit=10_000))
        return [r.path for r in found if r.coordinate == coordinate]


@pytest.fixture
async def setup(
    start: StartGateway, mock_registries: Registries, tmp_path: Path
) -> AsyncIterator[Setup]:
    state = tmp_path / "state"
    running = await start()
    v = mock_registries.population.vnummer(7100)
    nvik = caller(
        running, state, org="NVIK", roles=["analist"], purpose="TOEZICHT_VW", sub="=HYPERLINK(1)"
    )
    assert (await nvik.query(TOEZICHT, {"v": v})).status == 200
    settings = settings_for(state)
    console = await open_console(settings, ConsoleSettings())
    app = create_console_app(console, close_store=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
        yield Setup(running, settings, console, http, v)
    await console.store.close()


async def test_scripts_export_json_and_csv_with_a_bearer_token(setup: Setup) -> None:
    answer = await setup.http.get(f"/zoeken?vnummer={setup.v}&formaat=json", headers=setup.bearer())
    assert answer.status_code == 200
    rows = answer.json()["rijen"]
    assert [r["betrokkene"] for r in rows] == [setup.v], "typed: the V-nummer is shown"
    assert any(g["veld"] == "vreemdeling.naam.geslachtsnaam" for g in rows[0]["gegeven"])
    assert rows[0]["geweigerd"][0]["veld"] == "vreemdeling.religie"
    # Without the V-nummer typed, the same person appears by pseudonym only.
    listing = await setup.http.get(
        "/zoeken?formaat=json&officer==HYPERLINK(1)", headers=setup.bearer()
    )
    pseudonym = setup.console.pseudonym(setup.v)
    assert [r["betrokkene"] for r in listing.json()["rijen"]] == [pseudonym]
    assert setup.v not in listing.text
    exported = await setup.http.get("/zoeken?formaat=csv", headers=setup.bearer())
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert "'=HYPERLINK(1)" in {r["medewerker"] for r in table}, "no formula in a spreadsheet"
    # Each export is itself in the trail, with its filters and without the V-nummer.
    json_views = await setup.views("Console.export.json")
    assert len(json_views) == 2 and all(setup.v not in p for p in json_views)
    assert "betrokkene=ja" in json_views[0]
    assert await setup.views("Console.export.csv")
    subjects = await setup.console.store.search(AuditQuery(subject=pseudonym, limit=1000))
    assert {r.coordinate for r in subjects if r.officer == VIEWER} == {
        "Console.export.json",
        "Console.export.csv",
    }, "the person's own report lists every look at their trail"


async def test_bad_input_gets_a_clear_error_never_an_echo_or_a_trace(setup: Setup) -> None:
    cases = {
        "/zoeken?vnummer=12345": 400,
        "/zoeken?besluit=misschien": 400,
        "/zoeken?since=gisteren": 400,
        "/zoeken?na=abc": 400,
        "/zoeken?formaat=xml": 400,
        "/betrokkene/nietshex": 404,
        "/verzoek/xyz": 404,
        f"/verzoek/{'0' * 32}": 404,
        "/overzicht?groep=kleur": 400,
        "/overzicht?since=2020-01-01": 400,
        "/bestaat-niet": 404,
    }
    for path, status in cases.items():
        answer = await setup.http.get(path, headers=setup.bearer())
        assert answer.status_code == status, path
        assert "Traceback" not in answer.text and "12345" not in answer.text
        assert "content-security-policy" in answer.headers
    other = "1234567890" if setup.v != "1234567890" else "1234567891"
    pseudonym = setup.console.pseudonym(setup.v)
    wrong = await setup.http.get(
        f"/betrokkene/{pseudonym}/verslag?vnummer={other}", headers=setup.bearer()
    )
    assert wrong.status_code == 400 and other not in wrong.text


async def test_pages_have_the_security_headers_and_static_files_are_served(setup: Setup) -> None:
    page = await setup.http.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text.replace(
        '<script src="/static/console.js" defer></script>', ""
    )
    for asset in ("/static/console.css", "/static/console.js", "/static/favicon.svg"):
        answer = await setup.http.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert "http" not in (await setup.http.get("/static/console.css")).text


async def test_sign_in_by_form_then_sign_out_kills_the_cookie(setup: Setup) -> None:
    http = setup.http
    form = await http.get("/")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    signed = await http.post("/login", data={"csrf": csrf, "token": setup.token()})
    assert signed.status_code == 303 and signed.headers["location"] == "/zoeken"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie, "development mode: plain http on localhost"
    session = http.cookies["kp_sessie"]
    page = await http.get("/zoeken")
    assert page.status_code == 200
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    assert (await http.post("/afmelden", data={"csrf": "nee"})).status_code == 403
    assert (await http.post("/afmelden", data={"csrf": token})).status_code == 303
    http.cookies.set("kp_sessie", session)
    assert (await http.get("/zoeken")).status_code == 401
    assert await setup.views("Console.aanmelden")


async def test_an_unwritable_trail_shows_nothing(setup: Setup) -> None:
    await setup.console.store.close()
    answer = await setup.http.get(f"/zoeken?vnummer={setup.v}", headers=setup.bearer())
    assert answer.status_code == 503
    assert "vreemdeling" not in answer.text and setup.v not in answer.text
    await setup.console.store.open()


def test_sessions_end_at_their_lifetime_or_the_tokens_expiry() -> None:
    now = [1000.0]
    sessions = Sessions(60, clock=lambda: now[0])
    principal = Principal("fg-1", "0" * 20, "NVIK", ("fg",), frozenset({"VERANTWOORDING"}))
    long_id, _ = sessions.start(principal, token_expiry=None)
    short_id, short = sessions.start(principal, token_expiry=1010.0)
    assert short.expires_at == 1010.0 and sessions.remaining(short) == 10
    assert long_id not in str(sessions.__dict__), "ids are kept as digests only"
    now[0] = 1011.0
    assert sessions.get(short_id) is None and sessions.get(long_id) is not None
    now[0] = 1060.0
    assert sessions.get(long_id) is None
    nonce = "abc"
    assert sessions.login_csrf_ok(nonce, sessions.login_csrf(nonce))
    assert not sessions.login_csrf_ok("other", sessions.login_csrf(nonce))
    assert not Sessions(60).login_csrf_ok(nonce, sessions.login_csrf(nonce)), "per-process key"


async def test_paging_reads_every_row_once_and_respects_the_decision_filter(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}")
    await store.open()
    try:
        given = FieldDecision("Vreemdeling.naam", "v.naam", Decision.GIVEN, "R1", "BVV")
        refused = FieldDecision("Vreemdeling.religie", "v.religie", Decision.REFUSED, "X", None)
        for n in range(40):
            context = AccessContext(
                trace_id=f"{n:032x}",
                span_id=f"{n:016x}",
                parent_span_id=None,
                start_time=dt.datetime.now(dt.UTC),
                organisation_oin="0" * 20,
                organisation="NVIK",
                officer=f"o{n % 3}",
                authenticated_as="o",
                roles=(),
                purpose="TOEZICHT_VW",
                legal_basis=None,
                processing_activity=None,
                policy_version="p",
            )
            batch = AuditBatch(context=context, end_time=dt.datetime.now(dt.UTC))
            decisions = (given, refused) if n % 5 == 0 else (given,)
            for k in range(1 + n % 3):
                batch.subjects.append(SubjectAccess(f"{n:060x}{k:04x}", decisions))
            await store.commit(batch)
        seen: list[tuple[int, str | None]] = []
        after = None
        for _ in range(100):  # bounded
            page = await search_page(store, Filters(), after=after, rows=7)
            seen += [(r.seq, r.subject) for r in page.rows]
            if page.after is None:
                break
            after = page.after
        assert len(seen) == len(set(seen)) == sum(1 + n % 3 for n in range(40))
        refusals = await search_page(
            store, Filters(decision=Decision.REFUSED), after=None, rows=1000
        )
        assert {r.seq for r in refusals.rows} == {n + 1 for n in range(0, 40, 5)}
        assert all(r.given == [] and r.refused for r in refusals.rows)
        capped = await search_page(
            store, Filters(officer="o1", decision=Decision.REFUSED), after=None, scan_cap=5
        )
        assert capped.cut_short and capped.after is not None
    finally:
        await store.close()


def test_charts_scale_bars_to_a_round_maximum() -> None:
    assert [nice_max(v) for v in (0, 1, 3, 7, 12, 26, 180)] == [4, 4, 4, 8, 20, 40, 200]
    assert nice_max(1.0, integer=False) == 2.0
    chart = bar_chart(
        "t",
        ["2026-11-29", "2026-11-30"],
        ["A", "B"],
        {("2026-11-29", "A"): 3, ("2026-11-30", "A"): 2, ("2026-11-30", "B"): 2},
    )
    heights = {b.label: b.height for b in chart.bars}
    plot = chart.bottom - chart.top
    assert heights["2026-11-29 · A: 3"] == pytest.approx(plot * 3 / 4)
    assert heights["2026-11-30 · B: 2"] == pytest.approx(plot * 2 / 4)
    assert [name for name, _ in chart.legend] == ["A", "B"]
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)" and safe_cell("analist-17") == "analist-17"
    assert [t.label for t in chart.ticks] == ["0", "1", "2", "3", "4"]


async def test_production_signs_in_with_the_jwks_and_sets_a_secure_cookie(
    tmp_path: Path,
) -> None:
    key = rsa_key()
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, key, "sleutel-1")
    settings = settings_for(tmp_path / "state", mode="production", jwks=str(jwks))
    console = await open_console(settings, ConsoleSettings())
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": "fg-prod",
        "oin": console.policy.organisations["NVIK"].oin,
        "org": "NVIK",
        "roles": ["fg"],
        "doelbindingen": ["VERANTWOORDING"],
        "iat": now,
        "exp": now + 600,
    }
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "sleutel-1"})
    dev = mint_dev_token(
        load_or_create_dev_key(settings.state_dir),
        issuer=settings.issuer,
        audience=settings.audience,
        subject="fg-dev",
        oin=claims["oin"],
        organisation="NVIK",
        roles=["fg"],
        purposes=["VERANTWOORDING"],
    )
    transport = httpx.ASGITransport(app=create_console_app(console))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as http:
            form = await http.get("/")
            csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
            refused = await http.post("/login", data={"csrf": csrf, "token": dev})
            assert refused.status_code == 401, "no development tokens in production"
            signed = await http.post("/login", data={"csrf": csrf, "token": good})
            assert signed.status_code == 303
            cookie = signed.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie
            max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
            # The session ends with the token: its lifetime minus the seconds the test took.
            assert now + 600 - int(time.time()) - 1 <= max_age <= 600, "ends with the token"
    finally:
        await console.store.close()


async def test_anomalies_link_to_the_requests_behind_them(setup: Setup) -> None:
    def context(officer: str, application: str | None = None) -> AccessContext:
        return AccessContext(
            trace_id=secrets.token_hex(16),
            span_id=secrets.token_hex(8),
            parent_span_id=None,
            start_time=dt.datetime.now(dt.UTC),
            organisation_oin="0" * 20,
            organisation="NVIK",
            officer=officer,
            authenticated_as=application or officer,
            roles=("analist",),
            purpose="TOEZICHT_VW",
            legal_basis=None,
            processing_activity=None,
            policy_version="p",
        )

    given = (FieldDecision("Vreemdeling.naam", "v.naam", Decision.GIVEN, "R", "BVV"),)
    # The sweeper is named by an application token: the finding says "sweeper (via app-1)".
    sweep = AuditBatch(context=context("sweeper", "app-1"), end_time=dt.datetime.now(dt.UTC))
    sweep.subjects += [SubjectAccess(secrets.token_hex(32), given) for _ in range(61)]
    await setup.console.store.commit(sweep)
    for _ in range(3):
        probe = AuditBatch(context=context("prober"), end_time=dt.datetime.now(dt.UTC))
        probe.request_decisions.append(
            FieldDecision("Query", "", Decision.REFUSED, "TOO_MANY_SUBJECTS", None)
        )
        await setup.console.store.commit(probe)

    page = await setup.http.get("/afwijkingen", headers=setup.bearer())
    assert page.status_code == 200
    links = [
        part.split('"')[0].replace("&amp;", "&") for part in page.text.split('href="/zoeken?')[1:]
    ]
    assert len(links) == 2 and "breedte" in page.text and "limieten" in page.text
    assert "sweeper (via app-1)" in page.text
    assert await setup.views("Console.afwijkingen")
    for link, officer in zip(sorted(links), ("prober", "sweeper"), strict=True):
        found = await setup.http.get(f"/zoeken?{link}&formaat=json", headers=setup.bearer())
        rows = found.json()["rijen"]
        assert rows and {r["medewerker"] for r in rows} == {officer}, link


def test_the_register_is_rendered_without_passing_raw_html_through() -> None:
    html = register_html("# Register\n\n<script>alert(1)</script>\n\n| a |\n|---|\n| 1 |\n")
    assert "<h3>Register</h3>" in html, "under the page's own h1 and h2"
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table>" in html


def test_console_settings_and_command_refuse_bad_values(tmp_path: Path) -> None:
    assert ConsoleSettings.from_env({}).port == 8100
    env = {
        "KETENPOORT_CONSOLE_PORT": "9000",
        "KETENPOORT_TRACE_URL": "https://t.example/{trace_id}",
    }
    assert ConsoleSettings.from_env(env).trace_url == "https://t.example/{trace_id}"
    for bad in (
        {"KETENPOORT_CONSOLE_SESSION": "0"},
        {"KETENPOORT_CONSOLE_SESSION": "99999"},
        {"KETENPOORT_CONSOLE_PORT": "acht"},
        {"KETENPOORT_TRACE_URL": "https://t.example/"},
        {"KETENPOORT_TRACE_URL": "javascript:alert(1)//{trace_id}"},
    ):
        with pytest.raises(ConfigError):
            ConsoleSettings.from_env(bad)
    runner = CliRunner()
    state = {"KETENPOORT_STATE": str(tmp_path / "state")}
    result = runner.invoke(cli_app, ["console", "--session", "0"], env=state)
    assert result.exit_code == 2 and "KETENPOORT_CONSOLE_SESSION" in result.output
    production = {**state, "KETENPOORT_MODE": "production"}
    result = runner.invoke(cli_app, ["console"], env=production)
    assert result.exit_code == 1 and "KETENPOORT_JWKS" in result.output
    assert "Traceback" not in result.output


async def test_integrity_checks_the_store_against_the_published_checkpoints(
    tmp_path: Path, mock_registries: Registries
) -> None:
    """Integriteit holds the Merkle log against the gateway's signed checkpoints: a record
    rewritten in the database after a checkpoint is named, even with the hash chain redone."""
    state = tmp_path / "state"
    settings = settings_for(state)
    running = await start_gateway(settings, mocks=mock_registries)
    try:
        nvik = caller(running, state, org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
        for i in range(3):
            v = mock_registries.population.vnummer(7200 + i)
            assert (await nvik.query(TOEZICHT, {"v": v})).status == 200
    finally:
        await running.close()  # the shutdown checkpoint covers every entry

    console = await open_console(settings, ConsoleSettings())
    try:
        assert console.checkpoint_file == state / "checkpoints.txt"
        checked, why = await check_checkpoints(console)
        assert why is None and checked is not None
        assert checked.ok, checked.detail
        assert checked.leaves >= 3

        with sqlite3.connect(state / "audit.db") as db:
            db.execute("UPDATE audit_entry SET officer = 'iemand-anders' WHERE seq = 2")
        checked, why = await check_checkpoints(console)
        assert checked is not None and not checked.ok
        assert checked.bad_leaf == 1, checked.detail  # entry seq 2 is leaf 1

        (state / "checkpoints.txt").write_text("geen checkpoint\n", encoding="utf-8")
        checked, why = await check_checkpoints(console)
        assert checked is None and why is not None and "checkpoint" in why.lower()
    finally:
        await console.store.close()
