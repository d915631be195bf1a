"""Purging one person's cached registry answers: the gateway's ``POST /admin/cache/purge`` over
real HTTP (memory and Redis caches), recorded in the trail before anything goes, and
``ketenpoort cache purge`` reaching a running gateway (``--gateway``) and Redis directly.

The gateway runs under uvicorn on a loopback port (``tests.tools.serve``); whether a person's
answers are cached is read off the mock BVV's served calls (a cached answer asks nothing).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.audit.stores import open_store
from gateway.cli.main import app
from gateway.config import Settings
from gateway.execution.cache import NAMESPACE, open_cache, purge_subject
from gateway.http.app import create_app
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key
from mocks import Registries
from tests.support import REDIS_URL, require_redis, settings_for
from tests.tools import free_port, serve

pytestmark = pytest.mark.timeout(120)

runner = CliRunner()
VNUMMER, OTHER = "3141592653", "2718281828"
QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
NVIK_OIN = "00000099000000000101"


# --- a gateway over real HTTP -------------------------------------------------------------------


@dataclass
class Served:
    """A gateway served over HTTP, its settings and the mock registries behind it."""

    base: str
    http: httpx.AsyncClient
    settings: Settings
    mocks: Registries

    @property
    def v(self) -> str:
        """The person whose answers are purged (of the synthetic population)."""
        return self.mocks.population.vnummer(21)

    @property
    def other(self) -> str:
        """Another person, whose answers stay."""
        return self.mocks.population.vnummer(22)

    def token(self, *, role: str, purpose: str, sub: str) -> str:
        return mint_dev_token(
            load_or_create_dev_key(self.settings.state_dir),
            issuer=self.settings.issuer,
            audience=self.settings.audience,
            subject=sub,
            oin=NVIK_OIN,
            organisation="NVIK",
            roles=[role],
            purposes=[purpose],
        )

    @property
    def fg(self) -> str:
        """A data protection officer's token: the policy grants fg VERANTWOORDING."""
        return self.token(role="fg", purpose="VERANTWOORDING", sub="fg-purge")

    def pseudonym(self, vnummer: str) -> str:
        return Pseudonymizer(load_or_create_key(self.settings.state_dir))(vnummer)

    async def look_up(self, vnummer: str) -> None:
        """An NVIK analyst looks the person up (answers are cached)."""
        token = self.token(role="analist", purpose="TOEZICHT_VW", sub="analist-purge")
        answer = await self.http.post(
            "/graphql",
            json={"query": QUERY, "variables": {"v": vnummer}},
            headers={
                "authorization": f"Bearer {token}",
                "x-doelbinding": "TOEZICHT_VW",
                "x-verwerking": "nvik-toezicht-vw",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["vreemdeling"]["vnummer"] == vnummer

    async def cached(self, vnummer: str) -> bool:
        """Whether a look-up of the person is answered from the cache (the BVV is not asked)."""
        before = len(self.asked(vnummer))
        await self.look_up(vnummer)
        return len(self.asked(vnummer)) == before

    def asked(self, vnummer: str) -> list[Any]:
        return [c for c in list(self.mocks.bvv.served) if vnummer in c.vnummers]

    async def purge(self, body: Any = None, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.http.post(
            "/admin/cache/purge",
            json=body if body is not None else {"vnummer": self.v},
            headers=headers,
            **kwargs,
        )

    async def trail(self, **query: Any) -> list[AuditRecord]:
        store = open_store(self.settings.audit_store_url)
        await store.open()
        try:
            return await store.search(AuditQuery(limit=10_000, **query))
        finally:
            await store.close()


@contextmanager
def served_gateway(tmp_path: Path, mocks: Registries, **overrides: Any) -> Iterator[str]:
    settings = settings_for(tmp_path / "state", **overrides)
    mocks.reset()
    with serve(create_app(settings, mocks=mocks)) as base:
        yield base


@pytest.fixture
async def memory_gateway(tmp_path: Path, mock_registries: Registries) -> AsyncIterator[Served]:
    settings = settings_for(tmp_path / "state")
    with served_gateway(tmp_path, mock_registries) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Served(base, http, settings, mock_registries)


# --- the endpoint: memory cache -----------------------------------------------------------------


async def test_purge_removes_one_persons_answers_from_a_running_gateways_memory(
    memory_gateway: Served,
) -> None:
    g = memory_gateway
    for v in (g.v, g.other):
        await g.look_up(v)
        assert await g.cached(v), "positive control: the second look-up comes from the cache"

    answer = await g.purge(token=g.fg)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cache"] == "memory" and body["removed"] >= 1, body
    assert g.v not in answer.text, "the V-nummer is not echoed"
    assert answer.headers["cache-control"] == "no-store"

    assert not await g.cached(g.v), "the purged person is asked of the registry again"
    assert await g.cached(g.other), "another person's answers stay"
    again = await g.purge(token=g.fg)
    assert again.json()["removed"] >= 1, "the look-up after the purge was cached anew"

    # Recorded: the officer, the person as data subject, under VERANTWOORDING, before it ran.
    records = [r for r in await g.trail(officer="fg-purge") if r.coordinate == "Cache.purge"]
    assert len(records) == 2, records
    first = records[0]
    assert first.data_subject_id == g.pseudonym(g.v)
    assert first.decision is Decision.GIVEN
    assert first.purpose == "VERANTWOORDING"
    assert first.reason == "NVIK-beveiliging-fg-VERANTWOORDING"
    assert first.trace_id == body["trace_id"]
    # The person's own access report lists the purge.
    mine = await g.trail(subject=g.pseudonym(g.v))
    assert any(r.coordinate == "Cache.purge" for r in mine)


async def test_refusals_have_stable_codes_and_purge_nothing(memory_gateway: Served) -> None:
    g = memory_gateway
    await g.look_up(g.v)
    analyst = g.token(role="analist", purpose="TOEZICHT_VW", sub="analist-purge")
    # A role the policy grants VERANTWOORDING, whose token does not claim it.
    unclaimed = g.token(role="beveiliging", purpose="TOEZICHT_VW", sub="beveiliging-purge")

    cases: list[tuple[str, Any, int, str]] = [
        ("no token", await g.purge(), 401, "UNAUTHENTICATED"),
        ("bad token", await g.purge(token="not.a.token"), 401, "UNAUTHENTICATED"),
        ("analyst", await g.purge(token=analyst), 403, "PURPOSE_NOT_GRANTED"),
        ("unclaimed purpose", await g.purge(token=unclaimed), 403, "PURPOSE_NOT_GRANTED"),
        ("short", await g.purge({"vnummer": "12345"}, g.fg), 400, "BAD_USER_INPUT"),
        ("number", await g.purge({"vnummer": 3141592653}, g.fg), 400, "BAD_USER_INPUT"),
        ("letters", await g.purge({"vnummer": "31415926x3"}, g.fg), 400, "BAD_USER_INPUT"),
        ("missing", await g.purge({"v": g.v}, g.fg), 400, "BAD_USER_INPUT"),
        ("extra", await g.purge({"vnummer": g.v, "all": True}, g.fg), 400, "BAD_USER_INPUT"),
        ("a list", await g.purge([g.v], g.fg), 400, "BAD_USER_INPUT"),
        (
            "not json",
            await g.http.post(
                "/admin/cache/purge",
                content=b"vnummer=3141592653",
                headers={"authorization": f"Bearer {g.fg}", "content-type": "application/json"},
            ),
            400,
            "BAD_USER_INPUT",
        ),
        (
            "form",
            await g.http.post(
                "/admin/cache/purge",
                data={"vnummer": g.v},
                headers={"authorization": f"Bearer {g.fg}"},
            ),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "too large",
            await g.purge({"vnummer": g.v, "pad": "x" * 10_000}, g.fg),
            413,
            "REQUEST_TOO_LARGE",
        ),
        ("GET", await g.http.get("/admin/cache/purge"), 405, "METHOD_NOT_ALLOWED"),
    ]
    for name, answer, status, code in cases:
        assert answer.status_code == status, (name, answer.text)
        assert answer.json()["errors"][0]["extensions"]["code"] == code, (name, answer.text)
        assert "12345" not in answer.text and "31415926x3" not in answer.text, name
    assert cases[0][1].headers["www-authenticate"].startswith("Bearer")
    assert cases[-1][1].headers["allow"] == "POST"
    assert await g.cached(g.v), "nothing was purged"
    # The analyst's attempt is in the trail as a refusal, naming no data subject.
    refused = [r for r in await g.trail(officer="analist-purge") if r.coordinate == "Cache.purge"]
    assert [(r.decision, r.reason, r.data_subject_id) for r in refused] == [
        (Decision.REFUSED, "PURPOSE_NOT_GRANTED", None)
    ]


async def test_nothing_is_purged_when_the_trail_cannot_record_it(memory_gateway: Served) -> None:
    g = memory_gateway
    await g.look_up(g.v)
    db = g.settings.audit_store_url.removeprefix("sqlite:///")
    # Another process holds the SQLite write lock: the gateway's commit gives up (1 s).
    locker = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        answer = await g.purge(token=g.fg)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert answer.status_code == 503, answer.text
    assert answer.json()["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    assert await g.cached(g.v), "unrecorded, so nothing was purged"


# --- the endpoint: Redis cache ------------------------------------------------------------------


async def redis_keys(pseudonym: str) -> list[bytes]:
    client = aioredis.from_url(REDIS_URL)
    try:
        return [k async for k in client.scan_iter(match=f"{NAMESPACE}*:{pseudonym}", count=500)]
    finally:
        await client.aclose()


async def test_purge_through_a_gateway_on_redis(
    tmp_path: Path, mock_registries: Registries
) -> None:
    await require_redis()
    settings = settings_for(tmp_path / "state", cache=REDIS_URL)
    with served_gateway(tmp_path, mock_registries, cache=REDIS_URL) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            g = Served(base, http, settings, mock_registries)
            me, other = g.pseudonym(g.v), g.pseudonym(g.other)  # a fresh key: nobody else's
            try:
                for v in (g.v, g.other):
                    await g.look_up(v)
                assert await redis_keys(me) and await redis_keys(other)
                answer = await g.purge(token=g.fg)
                assert answer.status_code == 200, answer.text
                assert answer.json()["cache"] == "redis"
                assert answer.json()["removed"] == len(await redis_keys(other))
                assert await redis_keys(me) == []
                assert await redis_keys(other), "another person's answers stay"
                assert not await g.cached(g.v)
            finally:
                await purge_subject(REDIS_URL, me)
                await purge_subject(REDIS_URL, other)


# --- the command line -------------------------------------------------------------------------


def invoke(args: list[str], **env: str) -> Any:
    return runner.invoke(app, ["cache", "purge", *args], env={"KETENPOORT_CACHE": "memory", **env})


def assert_fails(result: Any, exit_code: int, code: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert f"ketenpoort: cache purge: {code}: " in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


async def test_the_command_purges_a_running_gateways_memory(memory_gateway: Served) -> None:
    g = memory_gateway
    await g.look_up(g.v)
    args = ["--vnummer", g.v, "--gateway", g.base + "/"]
    done = await asyncio.to_thread(invoke, args, KETENPOORT_TOKEN=g.fg)
    assert done.exit_code == 0, done.output
    assert f"{g.base}: removed " in done.output and "(memory cache; recorded" in done.output
    assert not await g.cached(g.v)

    # The token may come from another variable.
    other = await asyncio.to_thread(
        invoke, [*args, "--token-env", "FG_TOKEN"], FG_TOKEN=g.fg, KETENPOORT_TOKEN=""
    )
    assert other.exit_code == 0, other.output

    analyst = g.token(role="analist", purpose="TOEZICHT_VW", sub="analist-purge")
    refused = await asyncio.to_thread(invoke, args, KETENPOORT_TOKEN=analyst)
    assert_fails(refused, 3, "PURPOSE_NOT_GRANTED")
    bad = await asyncio.to_thread(invoke, args, KETENPOORT_TOKEN="not.a.token")
    assert_fails(bad, 3, "UNAUTHENTICATED")
    missing = await asyncio.to_thread(invoke, args, KETENPOORT_TOKEN="")
    assert_fails(missing, 2, "BAD_USER_INPUT")
    assert "$KETENPOORT_TOKEN" in missing.output
    malformed = await asyncio.to_thread(
        invoke, ["--vnummer", "31415", "--gateway", g.base], KETENPOORT_TOKEN=g.fg
    )
    assert_fails(malformed, 2, "BAD_USER_INPUT")
    assert "31415" not in malformed.output
    not_a_url = await asyncio.to_thread(
        invoke, ["--vnummer", g.v, "--gateway", "ftp://x"], KETENPOORT_TOKEN=g.fg
    )
    assert_fails(not_a_url, 2, "BAD_USER_INPUT")
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = await asyncio.to_thread(
        invoke, ["--vnummer", g.v, "--gateway", nobody], KETENPOORT_TOKEN=g.fg
    )
    assert_fails(unreachable, 1, "GATEWAY_UNREACHABLE")
    # Several gateways: each is tried; the exit code is the first problem's.
    mixed = await asyncio.to_thread(
        invoke,
        ["--vnummer", g.v, "--gateway", nobody, "--gateway", g.base],
        KETENPOORT_TOKEN=g.fg,
    )
    assert_fails(mixed, 1, "GATEWAY_UNREACHABLE")
    assert f"{g.base}: removed " in mixed.output


def test_a_memory_cache_without_a_gateway_is_refused(tmp_path: Path) -> None:
    result = invoke(["--vnummer", VNUMMER, "--state", str(tmp_path)])
    assert_fails(result, 2, "BAD_USER_INPUT")
    assert "--gateway" in result.output


async def test_the_command_purges_redis_directly_and_records_it(tmp_path: Path) -> None:
    await require_redis()
    state = tmp_path / "state"
    pseudonym = Pseudonymizer(load_or_create_key(state))
    me, other = pseudonym(VNUMMER), pseudonym(OTHER)  # a fresh key: names no one else's keys
    cache = open_cache(REDIS_URL, 60)
    keys = [cache.key(r, "d1", p) for r in ("BVV", "COA") for p in (me, other)]
    args = ["--vnummer", VNUMMER, "--cache", REDIS_URL, "--state", str(state)]
    try:
        await cache.set_many([(k, {"x": 1}) for k in keys])
        got = await asyncio.to_thread(invoke, [*args, "--as", "fg-cli"])
        assert got.exit_code == 0, got.output
        assert "removed 2 cached answer(s)" in got.output
        assert await cache.get_many(keys) == [None, {"x": 1}, None, {"x": 1}]
        store = open_store(Settings(state_dir=state).audit_store_url)
        await store.open()
        try:
            records = await store.search(AuditQuery(subject=me))
        finally:
            await store.close()
        assert [(r.coordinate, r.officer, r.organisation) for r in records] == [
            ("Cache.purge", "fg-cli", "KETENPOORT")
        ]
        # Redis down: one line with its code, exit 1, after the attempt was recorded.
        down = f"redis://127.0.0.1:{free_port()}/0"
        failed = await asyncio.to_thread(
            invoke, ["--vnummer", VNUMMER, "--cache", down, "--state", str(state), "--as", "fg"]
        )
        assert_fails(failed, 1, "CACHE_UNAVAILABLE")
        no_key = await asyncio.to_thread(
            invoke, ["--vnummer", VNUMMER, "--cache", REDIS_URL, "--state", str(tmp_path / "x")]
        )
        assert_fails(no_key, 2, "BAD_USER_INPUT")
    finally:
        await purge_subject(REDIS_URL, other)  # leave nothing behind
        await purge_subject(REDIS_URL, me)
        await cache.close()


# --- the cache itself -------------------------------------------------------------------------


async def test_answers_fetched_before_a_purge_are_not_cached_after_it() -> None:
    cache = open_cache("memory", 60)
    try:
        epoch = cache.epoch  # a request reads the cache ...
        assert await cache.purge("ab" * 32) == 0  # ... a purge runs meanwhile ...
        await cache.set_many([("BVV:d1:" + "ab" * 32, {"x": 1})], epoch)  # ... it writes back
        assert await cache.get_many(["BVV:d1:" + "ab" * 32]) == [None]
        await cache.set_many([("BVV:d1:" + "ab" * 32, {"x": 1})], cache.epoch)
        assert await cache.get_many(["BVV:d1:" + "ab" * 32]) == [{"x": 1}]
    finally:
        await cache.close()
