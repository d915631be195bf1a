"""GraphQL over HTTP: the public graphql-http audit suite in both modes, and the edges it does
not audit (415s, UTF-16, WWW-Authenticate, oversized headers, the explorer only for browsers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.config import Settings
from gateway.http.app import create_app
from gateway.http.media import GRAPHQL_RESPONSE, HTML, JSON, negotiate
from mocks import Registries
from tests.support import settings_for
from tests.tools import json_lines, run_node, serve

NVIK_OIN = "00000099000000000101"
PURPOSE = {"x-doelbinding": "TOEZICHT_VW", "x-verwerking": "nvik-toezicht-vw"}


def dev_headers(state: Path) -> dict[str, str]:
    settings = Settings()
    token = mint_dev_token(
        load_or_create_dev_key(state),
        issuer=settings.issuer,
        audience=settings.audience,
        subject="medewerker-http",
        oin=NVIK_OIN,
        organisation="NVIK",
        roles=["analist"],
        purposes=["TOEZICHT_VW"],
    )
    return {"authorization": f"Bearer {token}", **PURPOSE}


def production_setup(tmp_path: Path) -> tuple[dict[str, object], dict[str, str]]:
    """Settings overrides for production mode (a JWKS) and headers with a token it accepts."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    settings = Settings()
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": "medewerker-prod",
        "oin": NVIK_OIN,
        "org": "NVIK",
        "roles": ["analist"],
        "doelbindingen": ["TOEZICHT_VW"],
        "exp": 4_000_000_000,
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    return {"mode": "production", "jwks": str(jwks)}, {
        "authorization": f"Bearer {token}",
        **PURPOSE,
    }


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["development", "production"])
def test_the_graphql_http_audit_suite_passes_in_full(
    tmp_path: Path, mock_registries: Registries, mode: str
) -> None:
    """Every audit of graphql-http (MUST, SHOULD and MAY), over a real socket."""
    if mode == "production":
        overrides, headers = production_setup(tmp_path)
    else:
        overrides, headers = {}, dev_headers(tmp_path / "state")
    app = create_app(settings_for(tmp_path / "state", **overrides), mocks=mock_registries)
    with serve(app) as base:
        done = run_node(
            "audit-http.mjs",
            f"{base}/graphql",
            env={"KETENPOORT_AUDIT_HEADERS": json.dumps(headers)},
        )
    results = json_lines(done.stdout)
    failed = [r for r in results if r["status"] != "ok"]
    assert len(results) >= 60, done.stderr
    assert failed == [], json.dumps(failed, indent=1)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def http(tmp_path: Path, mock_registries: Registries) -> Iterator[TestClient]:
    mock_registries.reset()
    with TestClient(create_app(settings_for(tmp_path / "state"), mocks=mock_registries)) as c:
        yield c


def test_media_types_are_negotiated() -> None:
    offered = [GRAPHQL_RESPONSE, JSON]
    assert negotiate(None, offered) == JSON
    assert negotiate("*/*", offered) == JSON
    assert negotiate("application/*", offered) == JSON
    assert negotiate(GRAPHQL_RESPONSE, offered) == GRAPHQL_RESPONSE
    assert negotiate(f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", offered) == GRAPHQL_RESPONSE
    assert negotiate(f"{JSON}, {GRAPHQL_RESPONSE}", offered) == GRAPHQL_RESPONSE
    assert negotiate(f"{GRAPHQL_RESPONSE};q=0.5, {JSON}", offered) == JSON
    assert negotiate("text/plain", offered) is None
    assert negotiate(f"{JSON};q=0", offered) is None
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert negotiate(browser, [*offered, HTML]) == HTML
    assert negotiate("*/*", [*offered, HTML]) == JSON


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (None, b'{"query": "{ __typename }"}'),
        ("text/plain", b'{"query": "{ __typename }"}'),
        ("application/json; charset=utf-16", '{"query": "{ __typename }"}'.encode("utf-16")),
        ("application/x-www-form-urlencoded", b"query=%7B__typename%7D"),
    ],
    ids=["none", "text-plain", "utf-16-charset", "form"],
)
def test_a_post_that_is_not_utf8_json_is_415(
    http: TestClient, tmp_path: Path, content_type: str | None, body: bytes
) -> None:
    headers = dev_headers(tmp_path / "state")
    if content_type is not None:
        headers["content-type"] = content_type
    answer = http.post("/graphql", content=body, headers=headers)
    assert answer.status_code == 415
    assert answer.json() == {
        "errors": [
            {
                "message": "Send the request as Content-Type: application/json (UTF-8).",
                "extensions": {"code": "UNSUPPORTED_MEDIA_TYPE"},
            }
        ]
    }


def test_a_utf16_body_labelled_json_is_refused(http: TestClient, tmp_path: Path) -> None:
    body = '{"query": "{ __typename }"}'.encode("utf-16")
    answer = http.post(
        "/graphql",
        content=body,
        headers={**dev_headers(tmp_path / "state"), "content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "data" not in answer.json()


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE])
def test_status_and_data_per_media_type(http: TestClient, tmp_path: Path, accept: str) -> None:
    headers = {**dev_headers(tmp_path / "state"), "accept": accept}
    ok = http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith(accept)
    assert ok.json() == {"data": {"__typename": "Query"}}
    for query in ("{", "{ nietBestaand }"):
        bad = http.post("/graphql", json={"query": query}, headers=headers)
        assert bad.status_code == (200 if accept == JSON else 400)
        assert "data" not in bad.json()
        assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    for extensions in ("x", 1, True, [1]):
        answer = http.post(
            "/graphql", json={"query": "{ __typename }", "extensions": extensions}, headers=headers
        )
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["message"] == "extensions must be an object."


def test_get_executes_queries_never_mutations(http: TestClient, tmp_path: Path) -> None:
    headers = {**dev_headers(tmp_path / "state"), "accept": JSON}
    ok = http.get("/graphql", params={"query": "{ __typename }"}, headers=headers)
    assert ok.status_code == 200
    assert ok.json() == {"data": {"__typename": "Query"}}
    mutation = http.get("/graphql", params={"query": "mutation { x }"}, headers=headers)
    assert mutation.status_code == 405
    assert mutation.headers["allow"] == "POST"
    assert mutation.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    bad = http.get(
        "/graphql", params={"query": "{ __typename }", "variables": "{"}, headers=headers
    )
    assert bad.status_code == 400


def test_the_explorer_is_only_for_a_browser_in_development(
    http: TestClient, tmp_path: Path, mock_registries: Registries
) -> None:
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    page = http.get("/graphql", headers=browser)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert http.get("/graphql").headers["content-type"].startswith(JSON)  # no Accept: JSON
    overrides, _ = production_setup(tmp_path)
    settings = settings_for(tmp_path / "prod", **overrides)
    with TestClient(create_app(settings, mocks=mock_registries)) as production:
        refused = production.get("/graphql", headers={"accept": "text/html"})
        assert refused.status_code == 406
        assert refused.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"
        assert production.get("/graphql", headers=browser).headers["content-type"].startswith(JSON)


def test_401_names_the_bearer_scheme(http: TestClient) -> None:
    missing = http.post("/graphql", json={"query": "{ __typename }"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="ketenpoort"'
    assert "data" not in missing.json()
    wrong = http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="ketenpoort", error="invalid_token"'


def test_other_methods_are_405_with_allow(http: TestClient) -> None:
    answer = http.put("/graphql", content=b"{}")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    assert answer.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.timeout(60)
def test_an_oversized_authorization_header_gets_a_json_refusal(
    tmp_path: Path, mock_registries: Registries
) -> None:
    """Over a real socket: the server's own plain-text 400 must not be what the caller sees."""
    app = create_app(settings_for(tmp_path / "state"), mocks=mock_registries)
    with serve(app) as base:
        url = urlsplit(base)
        connection = HTTPConnection(url.hostname or "", url.port, timeout=20)
        try:
            connection.request(
                "POST",
                "/graphql",
                body=b'{"query": "{ __typename }"}',
                headers={
                    "authorization": "Bearer " + "a" * 200_000,
                    "content-type": "application/json",
                    **PURPOSE,
                },
            )
            response = connection.getresponse()
            status, content_type = response.status, response.getheader("content-type") or ""
            body = json.loads(response.read())
        finally:
            connection.close()
    assert status == 431
    assert content_type.startswith(JSON)
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
