"""Keys from a JWKS URL: fetched off the event loop with a short deadline, failing closed.

A real local HTTP server publishes the key set, or accepts the connection and never answers
(a hung identity provider), or answers 500 / not JSON. The gateway, served by uvicorn over real
HTTP, keeps answering other requests while a fetch hangs, refuses the token with 401
``UNAUTHENTICATED`` after ``KETENPOORT_JWKS_TIMEOUT`` (not PyJWT's 30 s), and accepts tokens again
once the key set can be fetched.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.admission import jwks as jwks_module
from gateway.admission.jwks import JwksKeys, JwksUnavailable
from gateway.config import ConfigError, Settings
from gateway.http.app import create_app
from mocks import Registries
from tests.support import settings_for
from tests.test_authentication import GENERIC_401, claims, purpose_headers, rsa_key
from tests.tools import serve

pytestmark = pytest.mark.timeout(90)

QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer } }"
#: Longest a held request is kept open by the hanging server (it is released at teardown).
HOLD_BOUND_S = 30.0


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose behaviour the test switches: ``serve``, ``hang``,
    ``error`` (HTTP 500) or ``garbage`` (200, not JSON). Counts the requests it received."""

    def __init__(self, key: rsa.RSAPrivateKey, kid: str) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
        self.body = json.dumps({"keys": [jwk]}).encode()
        self.mode = "serve"
        self.requests = 0
        self.arrived = threading.Event()  # set when a request arrives
        self.release = threading.Event()  # lets held requests go
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                server.arrived.set()
                if server.mode == "hang":
                    server.release.wait(HOLD_BOUND_S)
                    return  # the connection closes without an answer
                if server.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = b"<html>not json</html>" if server.mode == "garbage" else server.body
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
def jwks_server(key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    with JwksServer(key, "sleutel-1") as server:
        yield server


def token(key: rsa.RSAPrivateKey, kid: str = "sleutel-1") -> str:
    return jwt.encode(claims(), key, algorithm="RS256", headers={"kid": kid})


def test_the_jwks_timeout_is_a_setting_with_a_short_default() -> None:
    assert Settings().jwks_timeout == 2.0
    assert Settings.from_env({"KETENPOORT_JWKS_TIMEOUT": "0.5"}).jwks_timeout == 0.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError, match=r"KETENPOORT_JWKS_TIMEOUT|invalid"):
            Settings.from_env({"KETENPOORT_JWKS_TIMEOUT": bad})


async def test_a_hanging_jwks_neither_blocks_the_gateway_nor_admits_anyone(
    tmp_path: Path, mock_registries: Registries, jwks_server: JwksServer, key: rsa.RSAPrivateKey
) -> None:
    timeout = 1.5
    settings = settings_for(
        tmp_path / "state", mode="production", jwks=jwks_server.url, jwks_timeout=timeout
    )
    mock_registries.reset()  # the registries are shared: only this test's calls count below
    v = mock_registries.population.vnummer(3)
    headers = purpose_headers(f"Bearer {token(key)}")
    jwks_server.mode = "hang"
    with serve(create_app(settings, mocks=mock_registries)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            started = time.monotonic()
            query = asyncio.create_task(
                http.post("/graphql", json={"query": QUERY, "variables": {"v": v}}, headers=headers)
            )
            assert await asyncio.to_thread(jwks_server.arrived.wait, 10), "JWKS never asked"
            # The fetch hangs now; the event loop still serves other requests meanwhile.
            health = await http.get("/healthz", timeout=timeout)
            assert health.status_code == 200
            assert not query.done(), "the token was decided before the JWKS fetch gave up"
            answer = await query
            elapsed = time.monotonic() - started
            assert answer.status_code == 401
            # A request refused as a whole: no data entry over HTTP, the generic error only.
            assert answer.json() == {"errors": GENERIC_401["errors"]}
            assert answer.headers["www-authenticate"].startswith("Bearer")
            # Bounded by the setting, not by PyJWT's 30 s (a generous margin for a busy machine).
            assert elapsed < timeout + 10, elapsed
            assert all(registry.served == [] for registry in mock_registries.all)

            # The identity provider recovers: tokens are accepted again (after the short pause
            # in which a failed JWKS is not asked again).
            jwks_server.release.set()
            jwks_server.mode = "serve"
            deadline = time.monotonic() + 15
            while True:
                answer = await http.post(
                    "/graphql", json={"query": QUERY, "variables": {"v": v}}, headers=headers
                )
                if answer.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["vreemdeling"]["vnummer"] == v


async def test_one_fetch_serves_concurrent_requests_and_the_set_is_kept(
    jwks_server: JwksServer, key: rsa.RSAPrivateKey
) -> None:
    keys = JwksKeys(jwks_server.url, timeout=5)
    found = await asyncio.gather(*(keys.key("sleutel-1") for _ in range(20)))
    assert jwks_server.requests == 1
    assert all(k is found[0] for k in found)
    # The key verifies a token signed by the private key.
    assert jwt.decode(token(key), found[0], algorithms=["RS256"], audience=Settings().audience)
    await keys.key("sleutel-1")
    assert jwks_server.requests == 1, "a fresh key set is not fetched again"


async def test_unknown_key_ids_refetch_only_now_and_then(jwks_server: JwksServer) -> None:
    now = [1000.0]
    keys = JwksKeys(jwks_server.url, timeout=5, clock=lambda: now[0])
    await keys.key("sleutel-1")
    for _ in range(5):
        with pytest.raises(KeyError):
            await keys.key("verzonnen")
    assert jwks_server.requests == 1, "made-up key ids do not make the gateway ask again"
    now[0] += jwks_module.UNKNOWN_KID_REFETCH_S
    with pytest.raises(KeyError):
        await keys.key("verzonnen")
    assert jwks_server.requests == 2, "after the bound an unknown kid may be a rotated-in key"
    with pytest.raises(KeyError):
        await keys.key(None)  # a token without kid names no key of a URL's set


@pytest.mark.parametrize("mode", ["hang", "error", "garbage"])
async def test_an_unusable_jwks_fails_closed_and_is_not_hammered(
    jwks_server: JwksServer, mode: str
) -> None:
    now = [1000.0]
    keys = JwksKeys(jwks_server.url, timeout=0.5, clock=lambda: now[0])
    jwks_server.mode = mode
    started = time.monotonic()
    with pytest.raises(JwksUnavailable):
        await keys.key("sleutel-1")
    assert time.monotonic() - started < 10, "the deadline bounds the fetch"
    assert jwks_server.requests == 1
    # Right after a failure nobody waits on it again: refused at once, nothing asked.
    with pytest.raises(JwksUnavailable):
        await keys.key("sleutel-1")
    assert jwks_server.requests == 1
    # After the pause the set is asked for again, and works once the provider does.
    jwks_server.release.set()
    jwks_server.mode = "serve"
    now[0] += jwks_module.RETRY_AFTER_FAILURE_S
    assert await keys.key("sleutel-1") is not None
    assert jwks_server.requests == 2


async def test_a_stale_set_is_not_used_when_the_refetch_fails(jwks_server: JwksServer) -> None:
    """A key withdrawn from the JWKS stops being accepted: past its lifespan the set must be
    fetched again, and a failing fetch refuses rather than trusting the old keys."""
    now = [1000.0]
    keys = JwksKeys(jwks_server.url, timeout=0.5, clock=lambda: now[0])
    await keys.key("sleutel-1")
    jwks_server.mode = "error"
    now[0] += jwks_module.LIFESPAN_S
    with pytest.raises(JwksUnavailable):
        await keys.key("sleutel-1")


def test_a_jwks_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        JwksKeys("file:///etc/passwd", timeout=1)
    with pytest.raises(ValueError, match="positive"):
        JwksKeys("https://idp.example/jwks", timeout=0)
