"""The development explorer: the policy made visible, in a real headless Chromium, offline.

The browser test picks NVIK / analist / TOEZICHT_VW, reads the reasons the tree shows (religie
refused by its rule and for want of an AVG art. 9 basis, naam.geslachtsnaam allowed by the NVIK
rule), ticks fields (mouse and keyboard), runs the query and reads the shown data and the
FIELD_NOT_PERMITTED error. Every request the page makes is recorded: none may leave the origin,
and the console must show no error (a CSP violation would appear there).

Set ``KETENPOORT_EXPLORER_SCREENSHOT=docs/explorer.png`` to refresh the screenshot in the docs;
otherwise it goes to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.http.app import create_app
from gateway.http.explorer import CSP
from mocks import Registries
from tests.browser import BrowserPage, OpenPage
from tests.support import settings_for

STATIC = Path(__file__).resolve().parent.parent / "gateway" / "http"
RELIGIE_RULE = "KETEN-geen-religie-etniciteit-seksuele-gerichtheid"
NVIK_RULE = "NVIK-analist-TOEZICHT_VW"


def explorer_app(tmp_path: Path, mocks: Registries, **overrides: object) -> Starlette:
    mocks.reset()
    return create_app(settings_for(tmp_path / "state", **overrides), mocks=mocks)


@pytest.mark.timeout(60)
def test_explorer_in_chromium(
    tmp_path: Path, mock_registries: Registries, open_page: OpenPage
) -> None:
    person = mock_registries.population.record(0)
    opened: BrowserPage = open_page(explorer_app(tmp_path, mock_registries))
    page = opened.page

    response = page.goto("/graphql")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == CSP
    expect(page.get_by_role("heading", level=1)).to_have_text("Ketenpoort-verkenner")

    # The caller, chosen by the labels a screen reader announces.
    page.get_by_label("Organisatie", exact=True).select_option("NVIK")
    page.get_by_label("Rol", exact=True).select_option("analist")
    page.get_by_label("Doelbinding (X-Doelbinding)").select_option("TOEZICHT_VW")
    expect(page.locator("#schema-status")).to_contain_text("doelbinding TOEZICHT_VW")
    expect(page.get_by_label("Verwerking (X-Verwerking)")).to_have_value("nvik-toezicht-vw")

    # Open the root field with the keyboard.
    page.locator('details[data-path="vreemdeling"] > summary').focus()
    page.keyboard.press("Enter")
    religie = page.get_by_role("checkbox", name=re.compile(r"^religie\b"))
    expect(religie).to_be_visible()
    religie_item = page.locator('li[data-path="vreemdeling.religie"]')
    expect(religie_item.locator(".label")).to_have_text("geweigerd")
    # The reason is the checkbox's accessible description: read out with the field.
    expect(religie).to_have_accessible_description(re.compile(re.escape(RELIGIE_RULE)))
    expect(religie).to_have_accessible_description(re.compile(r"AVG art\. 9"))
    expect(religie_item).to_contain_text("bijzonder persoonsgegeven")

    page.locator('details[data-path="vreemdeling.naam"] > summary').click()
    geslachtsnaam = page.get_by_role("checkbox", name=re.compile(r"^geslachtsnaam\b"))
    geslachtsnaam_item = page.locator('li[data-path="vreemdeling.naam.geslachtsnaam"]')
    expect(geslachtsnaam_item.locator(".label")).to_have_text("toegestaan")
    expect(geslachtsnaam).to_have_accessible_description(f"toegestaan door regel {NVIK_RULE}")

    # Build the query: two ticks by mouse, one by keyboard; the argument by its label.
    page.get_by_role("checkbox", name=re.compile(r"^vnummer\b")).check()
    geslachtsnaam.check()
    religie.focus()
    page.keyboard.press("Space")
    expect(religie).to_be_checked()
    page.get_by_label(re.compile(r"^vnummer ID! \(verplicht\)")).fill(person["vnummer"])
    query = page.get_by_label("Query (GraphQL)").input_value()
    assert "vreemdeling(vnummer: $vreemdeling_vnummer)" in query
    assert re.search(r"naam \{\s+geslachtsnaam\s+\}", query)
    assert json.loads(page.get_by_label("Variabelen (JSON)").input_value()) == {
        "vreemdeling_vnummer": person["vnummer"]
    }

    with page.expect_request(lambda r: r.url.endswith("/graphql") and r.method == "POST") as sent:
        page.get_by_role("button", name="Uitvoeren").click()
    expect(page.locator("#antwoord-status")).to_have_text("HTTP 200: 1 fout.")
    headers = sent.value.headers
    assert headers["x-doelbinding"] == "TOEZICHT_VW"
    assert headers["x-verwerking"] == "nvik-toezicht-vw"  # the purpose's registered activity
    scheme, _, token = headers["authorization"].partition(" ")
    claims = jwt.decode(token, options={"verify_signature": False})  # the server verified it
    assert (scheme, claims["org"], claims["roles"], claims["doelbindingen"]) == (
        "Bearer",
        "NVIK",
        ["analist"],
        ["TOEZICHT_VW"],
    )
    shown = json.loads(page.locator("#antwoord-data").inner_text())
    assert shown == {
        "vreemdeling": {
            "vnummer": person["vnummer"],
            "naam": {"geslachtsnaam": person["naam"]["geslachtsnaam"]},
            "religie": None,
        }
    }
    errors = page.locator("#antwoord-errors li")
    expect(errors).to_have_count(1)
    expect(errors).to_contain_text("FIELD_NOT_PERMITTED bij vreemdeling.religie")

    screenshot = Path(os.environ.get("KETENPOORT_EXPLORER_SCREENSHOT", tmp_path / "explorer.png"))
    # One tall viewport: the query and the answer stay beside the tree (sticky) as in use.
    page.set_viewport_size({"width": 1440, "height": 1650})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshot)
    assert screenshot.stat().st_size > 10_000

    # Nothing left the origin, and nothing was blocked or failed in the page.
    assert opened.requests, "the page made no requests at all"
    outside = [url for url in opened.requests if not url.startswith(opened.base_url + "/")]
    assert outside == []
    assert opened.console_errors == []


@pytest.mark.timeout(60)
def test_explorer_with_a_pasted_token(
    tmp_path: Path, mock_registries: Registries, open_page: OpenPage
) -> None:
    person = mock_registries.population.record(1)
    settings = settings_for(tmp_path / "state")
    token = mint_dev_token(
        load_or_create_dev_key(settings.state_dir),
        issuer=settings.issuer,
        audience=settings.audience,
        subject="medewerker-coa-007",
        oin="00000099000000000202",
        organisation="COA",
        roles=["medewerker"],
        purposes=["OPVANG_UITVOERING"],
    )
    opened = open_page(explorer_app(tmp_path, mock_registries))
    page = opened.page
    page.goto("/explorer")
    page.get_by_text("Of gebruik een eigen token").click()
    page.get_by_label("Token (JWT, zonder „Bearer ”)").fill(token)
    page.get_by_role("button", name="Token gebruiken").click()
    expect(page.locator("#token-status")).to_contain_text("Token geldig: COA, rollen medewerker")
    organisation = page.get_by_label("Organisatie", exact=True)
    expect(organisation).to_have_value("COA")
    expect(organisation).to_be_disabled()
    expect(page.locator("#doelbinding option")).to_have_text(["OPVANG_UITVOERING"])
    expect(page.locator("#schema-status")).to_contain_text("COA (medewerker)")

    page.locator('details[data-path="vreemdeling"] > summary').click()
    page.get_by_role("checkbox", name=re.compile(r"^vnummer\b")).check()
    page.get_by_label(re.compile(r"^vnummer ID! \(verplicht\)")).fill(person["vnummer"])
    with page.expect_request(lambda r: r.url.endswith("/graphql") and r.method == "POST") as sent:
        page.get_by_role("button", name="Uitvoeren").click()
    expect(page.locator("#antwoord-status")).to_have_text("HTTP 200: 0 fouten.")
    assert sent.value.headers["authorization"] == f"Bearer {token}"
    assert sent.value.headers["x-verwerking"] == "coa-opvang"
    assert json.loads(page.locator("#antwoord-data").inner_text()) == {
        "vreemdeling": {"vnummer": person["vnummer"]}
    }
    assert [u for u in opened.requests if not u.startswith(opened.base_url + "/")] == []
    assert opened.console_errors == []


def test_explorer_is_not_served_in_production(tmp_path: Path, mock_registries: Registries) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256"}]}), encoding="utf-8")
    app = explorer_app(tmp_path, mock_registries, mode="production", jwks=str(jwks))
    with TestClient(app) as http:
        page = http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 406  # no HTML on offer in production: NOT_ACCEPTABLE
        assert "text/html" not in page.headers["content-type"]
        for path in (
            "/explorer",
            "/explorer/api/grants",
            "/explorer/api/schema?org=NVIK&role=analist&doelbinding=TOEZICHT_VW",
            "/explorer/static/explorer.js",
        ):
            assert http.get(path).status_code == 404, path
        minted = http.post(
            "/explorer/api/token",
            json={"org": "NVIK", "roles": ["analist"], "doelbinding": "TOEZICHT_VW"},
        )
        assert minted.status_code == 404


def test_explorer_api_refuses_bad_input_with_codes(
    tmp_path: Path, mock_registries: Registries
) -> None:
    # The loopback by name: the explorer mints tokens only for a loopback Host.
    with TestClient(explorer_app(tmp_path, mock_registries), base_url="http://127.0.0.1") as http:
        json_api = http.get("/graphql", headers={"accept": "application/json"})
        # The page only for a browser asking for HTML: this is a GraphQL GET, refused here for
        # want of a token.
        assert json_api.status_code == 401
        assert json_api.headers["content-type"].startswith("application/json")
        for params in (
            {"org": "NOPE", "role": "analist", "doelbinding": "TOEZICHT_VW"},
            {"org": "NVIK", "role": "medewerker", "doelbinding": "TOEZICHT_VW"},
            {"org": "NVIK", "doelbinding": "TOEZICHT_VW"},
            {"org": "NVIK", "role": "analist", "doelbinding": "NOPE"},
        ):
            answer = http.get("/explorer/api/schema", params=params)
            assert answer.status_code == 400, params
            assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        # A token is minted only for a JSON request: a form of another origin cannot mint one.
        form = http.post(
            "/explorer/api/token",
            data={"org": "NVIK", "roles": "analist", "doelbinding": "TOEZICHT_VW"},
        )
        assert form.status_code == 400
        assert form.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        refused = http.post("/explorer/api/token/inspect", json={"token": "not-a-token"})
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        minted = http.post(
            "/explorer/api/token",
            json={"org": "NVIK", "roles": ["analist"], "doelbinding": "TOEZICHT_VW"},
        )
        assert minted.headers["cache-control"] == "no-store"
        who = http.post("/explorer/api/token/inspect", json={"token": minted.json()["token"]})
        assert who.json() == {
            "organisation": "NVIK",
            "roles": ["analist"],
            "purposes": ["TOEZICHT_VW"],
        }


def test_explorer_files_name_nothing_outside_the_origin() -> None:
    html = (STATIC / "explorer.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all('src="/explorer/static/' in tag for tag in scripts)
    bodies = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.DOTALL)
    assert bodies == [""] * len(scripts)  # no inline script
    assert "style=" not in html and "<style" not in html
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert references and all(ref.startswith(("/explorer/static/", "#")) for ref in references)
    for asset in (STATIC / "explorer_static").iterdir():
        text = asset.read_text(encoding="utf-8")
        urls = re.findall(r"[a-z]+://[^\s\"')]+", text)
        assert urls in ([], ["http://www.w3.org/2000/svg"]), (asset.name, urls)
        assert "@import" not in text and "url(" not in text, asset.name
