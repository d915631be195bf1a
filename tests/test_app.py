"""The HTTP surface: health, readiness, the explorer in development only, bad bodies, and bugs of
ours answered with a stable code and no detail."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.testclient import TestClient

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.config import Settings
from gateway.http.app import create_app
from gateway.pipeline.service import Gateway
from mocks import Registries
from tests.support import settings_for


def client(tmp_path: Path, mocks: Registries, **overrides: object) -> TestClient:
    settings = settings_for(tmp_path / "state", **overrides)
    return TestClient(create_app(settings, mocks=mocks))


def test_health_ready_and_explorer(tmp_path: Path, mock_registries: Registries) -> None:
    mock_registries.reset()
    with client(tmp_path, mock_registries) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {
            "BVV": True,
            "COA": True,
            "IND": True,
            "audit": True,
            "quota": True,
        }
        explorer = http.get("/graphql", headers={"accept": "text/html"})
        assert explorer.status_code == 200
        assert explorer.headers["content-type"].startswith("text/html")
        assert "Ketenpoort-verkenner" in explorer.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "BAD_USER_INPUT"),
        (b"[1, 2]", 400, "BAD_USER_INPUT"),
        (b'"a string"', 400, "BAD_USER_INPUT"),
        (b"", 400, "BAD_USER_INPUT"),
        (b"{" + b" " * 300_000 + b"}", 413, "REQUEST_TOO_LARGE"),
    ],
    ids=["not-json", "list", "string", "empty", "too-large"],
)
def test_bad_bodies_are_refused_with_a_code(
    tmp_path: Path, mock_registries: Registries, body: bytes, status: int, code: str
) -> None:
    with client(tmp_path, mock_registries) as http:
        answer = http.post("/graphql", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == status
        assert answer.json()["errors"][0]["extensions"]["code"] == code
        assert "data" not in answer.json()  # nothing was executed


def test_a_bug_of_ours_is_masked(
    tmp_path: Path,
    mock_registries: Registries,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "4503800116"

    async def broken(self: Gateway, headers: object, payload: object) -> object:
        raise RuntimeError(f"something about {secret}")

    monkeypatch.setattr(Gateway, "handle", broken)
    caplog.set_level(logging.DEBUG)
    with client(tmp_path, mock_registries) as http:
        answer = http.post("/graphql", json={"query": "{ __typename }"})
    assert answer.status_code == 500
    assert answer.json() == {
        "errors": [{"message": "Internal error.", "extensions": {"code": "INTERNAL_ERROR"}}],
    }
    assert secret not in answer.text
    assert secret not in caplog.text
    assert "RuntimeError" in caplog.text


def test_a_query_over_http(tmp_path: Path, mock_registries: Registries) -> None:
    """The README's first query, end to end over the ASGI app."""
    with client(tmp_path, mock_registries) as http:
        settings = Settings()
        token = mint_dev_token(
            load_or_create_dev_key(tmp_path / "state"),
            issuer=settings.issuer,
            audience=settings.audience,
            subject="medewerker-http",
            oin="00000099000000000101",
            organisation="NVIK",
            roles=["analist"],
            purposes=["TOEZICHT_VW"],
        )
        vnummer = mock_registries.population.vnummer(0)
        answer = http.post(
            "/graphql",
            json={
                "query": "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer religie } }",
                "variables": {"v": vnummer},
            },
            headers={
                "authorization": f"Bearer {token}",
                "x-doelbinding": "TOEZICHT_VW",
                "x-verwerking": "nvik-toezicht-vw",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
        )
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["data"] == {"vreemdeling": {"vnummer": vnummer, "religie": None}}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FIELD_NOT_PERMITTED"]
    assert json.dumps(body).count(vnummer) == 1  # only where it was asked for


def test_explorer_is_development_only(tmp_path: Path, mock_registries: Registries) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    with client(tmp_path, mock_registries, mode="production", jwks=str(jwks)) as http:
        # No explorer in production: a browser's GET that accepts only HTML is not acceptable.
        assert http.get("/graphql", headers={"accept": "text/html"}).status_code == 406
