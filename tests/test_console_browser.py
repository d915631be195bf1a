"""The accountability console in a real headless Chromium (issue 14's acceptance).

A gateway answers a few requests about two persons, V and W; the console reads the same SQLite
trail over real HTTP. Every test that views data checks that the view itself was recorded in the
trail, and that no request of the page left the console's origin.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.config import Settings
from gateway.console.app import create_console_app, open_console
from gateway.console.settings import ConsoleSettings
from gateway.console.web import Console
from mocks import Registries
from tests.browser import chromium, screenshot_path, serve_asgi
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

    state: Path
    settings: Settings
    running: Running
    v: str
    w: str

    def token(
        self,
        role: str = "beveiliging",
        sub: str = VIEWER,
        org: str = "NVIK",
        purposes: tuple[str, ...] = ("VERANTWOORDING",),
        ttl: int = 3600,
    ) -> str:
        policy = self.running.gateway.policy
        return mint_dev_token(
            load_or_create_dev_key(self.state),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            subject=sub,
            oin=policy.organisations[org].oin,
            organisation=org,
            roles=[role],
            purposes=list(purposes),
            ttl=ttl,
        )


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
    return Trail(state, settings_for(state), running, v, w)


@asynccontextmanager
async def console_at(trail: Trail, **console: object) -> AsyncIterator[tuple[Console, str]]:
    """The console over the trail's state directory, served on a loopback port."""
    opened = await open_console(trail.settings, ConsoleSettings(**console))  # type: ignore[arg-type]
    try:
        async with serve_asgi(create_console_app(opened, close_store=False)) as url:
            yield opened, url
    finally:
        await opened.store.close()


async def views(console: Console, coordinate: str, subject: str | None = None) -> list[AuditRecord]:
    """The trail's records of the viewer's console views of one kind (about ``subject``)."""
    found = await console.store.search(AuditQuery(officer=VIEWER, subject=subject, limit=10_000))
    return [r for r in found if r.coordinate == coordinate and r.purpose == "VERANTWOORDING"]


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(url + "/")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Aanmelden").click()


async def test_sign_in_search_subject_request_export_and_print(
    trail: Trail, tmp_path: Path
) -> None:
    async with console_at(trail) as (console, url), chromium(url) as (context, origin):
        page = await context.new_page()
        first = await page.goto(url + "/")
        assert first is not None
        headers = await first.all_headers()
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        await page.screenshot(path=screenshot_path("aanmelden", tmp_path))

        await sign_in(page, url, trail.token())
        await page.wait_for_url(url + "/zoeken")
        assert await page.get_by_role("heading", level=1).inner_text() == (
            "Zoeken in het verantwoordingslog"
        )
        cookie = next(c for c in await context.cookies() if c["name"] == "kp_sessie")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert await views(console, "Console.aanmelden")

        # Zoeken by V-nummer: the typed number is shown; both requests about V are listed.
        pseudonym_v = console.pseudonym(trail.v)
        await page.get_by_label("V-nummer").fill(trail.v)
        await page.get_by_role("button", name="Zoeken").click()
        await page.wait_for_url("**/zoeken?vnummer=*")
        results = page.locator("table.results tbody tr")
        # Two requests about V, and the viewer's own first look at the trail (the start page of
        # Zoeken listed V too): the console is accounted like any other reader.
        assert await results.count() == 3
        table = await page.locator("table.results").inner_text()
        assert "analist-17" in table and "regie-3" in table
        assert VIEWER in table and "Console.zoeken" in table
        assert "persoon.religie" in table and "FIELD_NOT_PERMITTED" in table
        assert trail.v in table, "the viewer typed the V-nummer: it is shown"
        assert trail.w not in await page.content()
        await page.screenshot(path=screenshot_path("zoeken", tmp_path), full_page=True)
        searched = await views(console, "Console.zoeken", pseudonym_v)
        assert searched and "vnummer" not in searched[-1].path
        assert trail.v not in searched[-1].path

        # Betrokkene: the timeline, with pseudonyms only (the V-nummer was not typed here).
        await results.first.get_by_role("link", name=trail.v).click()
        await page.wait_for_url(f"**/betrokkene/{pseudonym_v}")
        timeline = page.locator("ol.timeline > li")
        assert await timeline.count() >= 2
        text = await page.locator("main").inner_text()
        assert "TOEZICHT_VW" in text and "TERUGKEER" in text and "analist-17" in text
        assert trail.v not in await page.content()
        assert await views(console, "Console.betrokkene", pseudonym_v)
        await page.screenshot(path=screenshot_path("betrokkene", tmp_path), full_page=True)

        # Verzoek: one request in full.
        await page.locator("ol.timeline > li").first.get_by_role("link").first.click()
        await page.wait_for_url("**/verzoek/*")
        detail = await page.locator("main").inner_text()
        assert "analist-17" in detail and "TOEZICHT_VW" in detail and "BVV" in detail
        assert console.policy.version in detail
        assert await views(console, "Console.verzoek", pseudonym_v)
        await page.screenshot(path=screenshot_path("verzoek", tmp_path), full_page=True)

        # Export CSV of the V-nummer search.
        await page.goto(f"{url}/zoeken?vnummer={trail.v}")
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="CSV").click()
        download = await download_info.value
        saved = Path(await download.path())
        text = await asyncio.to_thread(saved.read_text, "utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["medewerker"] for r in rows} == {"analist-17", "regie-3", VIEWER}
        assert {r["betrokkene"] for r in rows} == {trail.v}
        assert any("persoon.religie:FIELD_NOT_PERMITTED" in r["geweigerd"] for r in rows)
        assert await views(console, "Console.export.csv", pseudonym_v)

        # The printable access report, with the V-nummer typed on it, in print media.
        await page.goto(f"{url}/betrokkene/{pseudonym_v}/verslag")
        await page.get_by_role("textbox", name="V-nummer op het verslag").fill(trail.v)
        await page.get_by_role("button", name="Toon").click()
        await page.wait_for_url("**/verslag?vnummer=*")
        await page.emulate_media(media="print")
        assert not await page.locator("header.top").is_visible()
        assert not await page.get_by_role("button", name="Afdrukken").is_visible()
        report = await page.locator("article.report").inner_text()
        assert f"V-nummer {trail.v}" in report and "analist-17" in report
        assert await views(console, "Console.verslag", pseudonym_v)
        await page.screenshot(path=screenshot_path("verslag", tmp_path), full_page=True)

        assert origin.urls and not origin.foreign(), origin.foreign()


async def test_overview_anomalies_integrity_and_policy_pages(trail: Trail, tmp_path: Path) -> None:
    async with (
        console_at(trail) as (console, url),
        chromium(url, width=1920, height=1080) as (
            context,
            origin,
        ),
    ):
        page = await context.new_page()
        await sign_in(page, url, trail.token())
        await page.wait_for_url(url + "/zoeken")

        await page.get_by_role("link", name="Overzicht").click()
        await page.wait_for_url("**/overzicht")
        assert await page.locator("figure.chart svg rect").count() >= 2
        tables = await page.locator("main table").first.inner_text()
        assert "NVIK" in tables and "DTV" in tables
        assert await views(console, "Console.overzicht")
        await page.screenshot(path=screenshot_path("overzicht", tmp_path), full_page=True)

        await page.get_by_role("link", name="Afwijkingen").click()
        await page.wait_for_url("**/afwijkingen")
        assert "Geen afwijkingen gevonden" in await page.locator("main").inner_text()
        assert await views(console, "Console.afwijkingen")

        await page.get_by_role("link", name="Integriteit").click()
        await page.wait_for_url("**/integriteit")
        await page.get_by_role("button", name="Controle uitvoeren").click()
        await page.wait_for_url("**/integriteit")
        for _ in range(50):  # bounded: the verification runs in the background
            if "In orde" in await page.locator("main").inner_text():
                break
            await asyncio.sleep(0.1)
            await page.reload()
        assert "In orde" in await page.locator("main").inner_text()
        assert await views(console, "Console.integriteit.controle")
        await page.screenshot(path=screenshot_path("integriteit", tmp_path), full_page=True)

        await page.get_by_role("link", name="Beleid").click()
        await page.wait_for_url("**/beleid")
        main = await page.locator("main").inner_text()
        assert "Verwerkingsregister" in main and console.policy.version in main
        assert "huidig" in main
        assert await views(console, "Console.beleid")
        await page.screenshot(path=screenshot_path("beleid", tmp_path))
        assert not origin.foreign(), origin.foreign()


async def test_without_the_grant_every_page_is_403(trail: Trail) -> None:
    analist = trail.token(
        role="analist", sub="analist-17", purposes=("TOEZICHT_VW", "VERANTWOORDING")
    )
    async with console_at(trail) as (console, url):
        async with chromium(url) as (context, _):
            page = await context.new_page()
            await sign_in(page, url, analist)
            assert "Geen toegang" in await page.locator("h1").inner_text()
            assert not [c for c in await context.cookies() if c["name"] == "kp_sessie"]
        pseudonym = console.pseudonym(trail.v)
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
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for path in pages:
                bearer = {"authorization": f"Bearer {analist}"}
                answer = await http.get(path, headers=bearer)
                assert answer.status_code == 403, path
                assert trail.v not in answer.text
                assert (await http.get(path)).status_code == 401, path
            posted = await http.post("/integriteit", headers=bearer, data={"csrf": "x"})
            assert posted.status_code == 403
        # Each refused attempt is itself in the trail, like the gateway's refusals.
        attempts = await console.store.search(
            AuditQuery(officer="analist-17", purpose="VERANTWOORDING")
        )
        assert {r.decision for r in attempts} == {Decision.REFUSED}
        assert {r.reason for r in attempts} == {"PURPOSE_NOT_GRANTED"}
        assert {r.path for r in attempts} == {"/login"} | {p.split("?")[0] for p in pages}
        assert all(r.data_subject_id is None and trail.v not in r.path for r in attempts)


async def test_session_ends_after_its_lifetime_and_posts_need_csrf(trail: Trail) -> None:
    async with console_at(trail, session_seconds=1.5) as (_, url), chromium(url) as (context, _):
        page = await context.new_page()
        await sign_in(page, url, trail.token())
        await page.wait_for_url(url + "/zoeken")
        cookie = next(c for c in await context.cookies() if c["name"] == "kp_sessie")
        jar = {"kp_sessie": cookie["value"]}
        async with httpx.AsyncClient(base_url=url, timeout=10, cookies=jar) as http:
            assert (await http.get("/overzicht")).status_code == 200
            missing = await http.post("/integriteit", data={"csrf": "fout"})
            assert missing.status_code == 403
            forged = await http.post("/login", data={"token": trail.token(), "csrf": "x"})
            assert forged.status_code == 403
            await asyncio.sleep(1.6)
            # The server ends the session itself, whatever the browser keeps.
            assert (await http.get("/overzicht")).status_code == 401
        await page.reload()
        assert "Aanmelden vereist" in await page.locator("h1").inner_text()
