"""The accountability console in a real headless Chromium (issue 14's acceptance).

A gateway answers a few requests about two persons, V and W; the console (served by uvicorn
with its own lifespan, over the same SQLite trail) is driven through the shared browser fixture
(tests/browser.py). Every test that views data checks that the view itself was recorded in the
trail, and that no request of the page left the console's origin.

Screenshots go to a temporary folder, or to ``KETENPOORT_SCREENSHOTS`` (``make screenshots``
writes docs/console/).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.audit.stores import open_store
from gateway.config import Settings
from gateway.console.app import create_app
from gateway.console.settings import ConsoleSettings
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key
from gateway.policy.model import Policy
from mocks import Registries
from tests.browser import BrowserPage, OpenPage
from tests.conftest import StartGateway
from tests.support import caller, settings_for

pytestmark = pytest.mark.timeout(60)

TOEZICHT = """
query($v: ID!) { persoon: vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } religie } }
"""
TERUGKEER = """
query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer procedures { zaaknummer } } }
"""
VIEWER = "beveiliging-7"


@dataclass
class Trail:
    """A state directory whose trail holds some traffic about V and W."""

    settings: Settings
    policy: Policy
    v: str
    w: str

    def token(
        self,
        role: str = "beveiliging",
        sub: str = VIEWER,
        purposes: tuple[str, ...] = ("VERANTWOORDING",),
    ) -> str:
        return mint_dev_token(
            load_or_create_dev_key(self.settings.state_dir),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            subject=sub,
            oin=self.policy.organisations["NVIK"].oin,
            organisation="NVIK",
            roles=[role],
            purposes=list(purposes),
        )

    def pseudonym(self, vnummer: str) -> str:
        return Pseudonymizer(load_or_create_key(self.settings.state_dir))(vnummer)

    def console(self, **console: object) -> object:
        """The console's ASGI app over this trail (it opens its own store at start-up)."""
        return create_app(self.settings, ConsoleSettings(**console))  # type: ignore[arg-type]

    def records(self, **query: object) -> list[AuditRecord]:
        """Search the trail with a store of its own, in a thread with its own event loop (the
        browser's sync API owns this thread's)."""

        async def search() -> list[AuditRecord]:
            store = open_store(self.settings.audit_store_url)
            await store.open()
            try:
                return await store.search(AuditQuery(limit=10_000, **query))  # type: ignore[arg-type]
            finally:
                await store.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, search()).result(timeout=30)

    def views(self, coordinate: str, subject: str | None = None) -> list[AuditRecord]:
        """The viewer's recorded console views of one kind (about ``subject``)."""
        found = self.records(officer=VIEWER, subject=subject)
        return [r for r in found if r.coordinate == coordinate and r.purpose == "VERANTWOORDING"]


@pytest.fixture
async def trail(start: StartGateway, mock_registries: Registries, tmp_path: Path) -> Trail:
    state = tmp_path / "state"
    running = await start()
    v, w = mock_registries.population.vnummer(7000), mock_registries.population.vnummer(7001)
    nvik = caller(
        running, state, org="NVIK", roles=["analist"], purpose="TOEZICHT_VW", sub="analist-17"
    )
    dtv = caller(
        running, state, org="DTV", roles=["regievoerder"], purpose="TERUGKEER", sub="regie-3"
    )
    for who, query, variables in ((nvik, TOEZICHT, {"v": v}), (dtv, TERUGKEER, {"v": [v, w]})):
        answer = await who.query(query, variables)
        assert answer.status == 200, answer.body
    return Trail(settings_for(state), running.gateway.policy, v, w)


def shot(page: Page, name: str, tmp_path: Path, *, full: bool = True) -> None:
    folder = Path(os.environ.get("KETENPOORT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full)


def sign_in(page: Page, token: str) -> None:
    page.goto("/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Aanmelden").click()


def foreign(recorded: BrowserPage) -> list[str]:
    origin = recorded.base_url
    return [u for u in recorded.requests if not (u == origin or u.startswith(origin + "/"))]


def test_sign_in_search_subject_request_export_and_print(
    trail: Trail, open_page: OpenPage, tmp_path: Path
) -> None:
    recorded = open_page(trail.console())
    page, url = recorded.page, recorded.base_url
    page.set_viewport_size({"width": 1280, "height": 800})
    first = page.goto("/")
    assert first is not None
    headers = first.all_headers()
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    shot(page, "aanmelden", tmp_path, full=False)

    sign_in(page, trail.token())
    page.wait_for_url(url + "/zoeken")
    assert page.get_by_role("heading", level=1).inner_text() == "Zoeken in het verantwoordingslog"
    cookie = next(c for c in page.context.cookies() if c["name"] == "kp_sessie")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert trail.views("Console.aanmelden")

    # Zoeken by V-nummer: the typed number is shown; both requests about V are listed.
    pseudonym_v = trail.pseudonym(trail.v)
    page.get_by_label("V-nummer").fill(trail.v)
    page.get_by_role("button", name="Zoeken").click()
    page.wait_for_url("**/zoeken?vnummer=*")
    results = page.locator("table.results tbody tr")
    # Two requests about V, and the viewer's own first look at the trail (the start page of
    # Zoeken listed V too): the console is accounted like any other reader.
    assert results.count() == 3
    table = page.locator("table.results").inner_text()
    assert "analist-17" in table and "regie-3" in table
    assert VIEWER in table and "Console.zoeken" in table
    assert "persoon.religie" in table and "FIELD_NOT_PERMITTED" in table
    assert trail.v in table, "the viewer typed the V-nummer: it is shown"
    assert trail.w not in page.content()
    shot(page, "zoeken", tmp_path)
    searched = trail.views("Console.zoeken", pseudonym_v)
    assert searched and "betrokkene=ja" in searched[-1].path
    assert trail.v not in searched[-1].path

    # Betrokkene: the timeline, with pseudonyms only (the V-nummer was not typed here).
    results.first.get_by_role("link", name=trail.v).click()
    page.wait_for_url(f"**/betrokkene/{pseudonym_v}")
    assert page.locator("ol.timeline > li").count() >= 3
    text = page.locator("main").inner_text()
    assert "TOEZICHT_VW" in text and "TERUGKEER" in text and "analist-17" in text
    assert trail.v not in page.content()
    assert trail.views("Console.betrokkene", pseudonym_v)
    shot(page, "betrokkene", tmp_path)

    # Verzoek: one request in full.
    page.locator("ol.timeline > li").first.get_by_role("link").first.click()
    page.wait_for_url("**/verzoek/*")
    detail = page.locator("main").inner_text()
    assert "analist-17" in detail and "TOEZICHT_VW" in detail and "BVV" in detail
    assert trail.policy.version in detail
    assert trail.views("Console.verzoek", pseudonym_v)
    shot(page, "verzoek", tmp_path)

    # Export CSV of the V-nummer search.
    page.goto(f"/zoeken?vnummer={trail.v}")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV").click()
    saved = download_info.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(saved).read_text("utf-8"))))
    assert {r["medewerker"] for r in rows} == {"analist-17", "regie-3", VIEWER}
    assert {r["betrokkene"] for r in rows} == {trail.v}
    assert any("persoon.religie:FIELD_NOT_PERMITTED" in r["geweigerd"] for r in rows)
    assert trail.views("Console.export.csv", pseudonym_v)

    # The printable access report, with the V-nummer typed on it, in print media.
    page.goto(f"/betrokkene/{pseudonym_v}/verslag")
    page.get_by_role("textbox", name="V-nummer op het verslag").fill(trail.v)
    page.get_by_role("button", name="Toon").click()
    page.wait_for_url("**/verslag?vnummer=*")
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    assert not page.get_by_role("button", name="Afdrukken").is_visible()
    report = page.locator("article.report").inner_text()
    assert f"V-nummer {trail.v}" in report and "analist-17" in report
    assert trail.views("Console.verslag", pseudonym_v)
    shot(page, "verslag", tmp_path)

    assert recorded.requests and not foreign(recorded), foreign(recorded)
    assert not recorded.console_errors, recorded.console_errors


def test_overview_anomalies_integrity_and_policy_pages(
    trail: Trail, open_page: OpenPage, tmp_path: Path
) -> None:
    recorded = open_page(trail.console())
    page = recorded.page
    page.set_viewport_size({"width": 1920, "height": 1080})
    sign_in(page, trail.token())
    page.wait_for_url("**/zoeken")

    # Keyboard and screen readers: the first Tab reaches the skip link, which moves focus to
    # the content; every form control has a label; one h1 per page.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Naar de inhoud"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "inhoud"
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('main input:not([type=hidden]), main select, "
        "main textarea')].filter(e => e.labels.length === 0).map(e => e.name)"
    )
    assert unlabelled == []
    assert page.locator("h1").count() == 1

    page.get_by_role("link", name="Overzicht").click()
    page.wait_for_url("**/overzicht")
    assert page.locator("figure.chart svg rect").count() >= 2
    tables = page.locator("main table").first.inner_text()
    assert "NVIK" in tables and "DTV" in tables
    assert trail.views("Console.overzicht")
    shot(page, "overzicht", tmp_path)

    page.get_by_role("link", name="Afwijkingen").click()
    page.wait_for_url("**/afwijkingen")
    assert "Geen afwijkingen gevonden" in page.locator("main").inner_text()
    assert trail.views("Console.afwijkingen")

    page.get_by_role("link", name="Integriteit").click()
    page.wait_for_url("**/integriteit")
    page.get_by_role("button", name="Controle uitvoeren").click()
    page.wait_for_url("**/integriteit")
    for _ in range(50):  # bounded: the verification runs in the background
        if "In orde" in page.locator("main").inner_text():
            break
        time.sleep(0.1)
        page.reload()
    assert "In orde" in page.locator("main").inner_text()
    assert trail.views("Console.integriteit.controle")
    shot(page, "integriteit", tmp_path)

    page.get_by_role("link", name="Beleid").click()
    page.wait_for_url("**/beleid")
    main = page.locator("main").inner_text()
    assert "Verwerkingsregister" in main and trail.policy.version in main
    assert "huidig" in main
    assert trail.views("Console.beleid")
    shot(page, "beleid", tmp_path, full=False)
    assert not foreign(recorded), foreign(recorded)
    assert not recorded.console_errors, recorded.console_errors


def test_without_the_grant_every_page_is_403(trail: Trail, open_page: OpenPage) -> None:
    analist = trail.token(
        role="analist", sub="analist-17", purposes=("TOEZICHT_VW", "VERANTWOORDING")
    )
    recorded = open_page(trail.console())
    page, url = recorded.page, recorded.base_url
    sign_in(page, analist)
    assert "Geen toegang" in page.locator("h1").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "kp_sessie"]
    pseudonym = trail.pseudonym(trail.v)
    pages = [
        "/zoeken",
        f"/zoeken?vnummer={trail.v}&formaat=csv",
        f"/betrokkene/{pseudonym}",
        f"/betrokkene/{pseudonym}/verslag",
        f"/verzoek/{'a' * 32}",
        "/overzicht",
        "/afwijkingen",
        "/integriteit",
        "/beleid",
    ]
    bearer = {"authorization": f"Bearer {analist}"}
    with httpx.Client(base_url=url, timeout=10) as http:
        for path in pages:
            answer = http.get(path, headers=bearer)
            assert answer.status_code == 403, path
            assert "Geen toegang" in answer.text and trail.v not in answer.text
            assert http.get(path).status_code == 401, path
        assert http.post("/integriteit", headers=bearer, data={"csrf": "x"}).status_code == 403
    # Each refused attempt is itself in the trail, like the gateway's refusals.
    attempts = trail.records(officer="analist-17", purpose="VERANTWOORDING")
    assert {r.decision for r in attempts} == {Decision.REFUSED}
    assert {r.reason for r in attempts} == {"PURPOSE_NOT_GRANTED"}
    assert {r.path for r in attempts} == {"/login"} | {p.split("?")[0] for p in pages}
    assert all(r.data_subject_id is None and trail.v not in r.path for r in attempts)


def test_session_ends_after_its_lifetime_and_posts_need_csrf(
    trail: Trail, open_page: OpenPage
) -> None:
    recorded = open_page(trail.console(session_seconds=1.5))
    page, url = recorded.page, recorded.base_url
    sign_in(page, trail.token())
    page.wait_for_url("**/zoeken")
    cookie = next(c for c in page.context.cookies() if c["name"] == "kp_sessie")
    with httpx.Client(base_url=url, timeout=10, cookies={"kp_sessie": cookie["value"]}) as http:
        assert http.get("/overzicht").status_code == 200
        assert http.post("/integriteit", data={"csrf": "fout"}).status_code == 403
        forged = http.post("/login", data={"token": trail.token(), "csrf": "x"})
        assert forged.status_code == 403
        time.sleep(1.6)
        # The server ends the session itself, whatever the browser keeps.
        assert http.get("/overzicht").status_code == 401
    page.reload()
    assert "Aanmelden vereist" in page.locator("h1").inner_text()
