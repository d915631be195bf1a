"""Quota stores: exact limits, atomicity under concurrency, sharing across processes, fail closed.

The Redis tests use the real Redis of the development/CI machine (KETENPOORT_TEST_REDIS, default
redis://127.0.0.1:6379/0). An unreachable Redis fails the tests with a message naming Redis: a
skipped quota test would hide exactly the failure mode that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from gateway.errors import Code
from gateway.proportionality.quota import (
    MemoryQuotaStore,
    QuotaStore,
    QuotaUnavailable,
    RedisQuotaStore,
    open_quota_store,
)

REDIS_URL = os.environ.get("KETENPOORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
NOON = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


async def _require_redis() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis not reachable at {REDIS_URL} (set KETENPOORT_TEST_REDIS): {exc!r}")
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _redis_prefix() -> AsyncIterator[str]:
    """Check Redis, yield a unique key prefix, delete every key under it afterwards."""
    await _require_redis()
    p = f"ketenpoort:test:quota:{uuid.uuid4().hex}:"
    try:
        yield p
    finally:
        client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            keys = [k async for k in client.scan_iter(match=p + "*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A unique Redis key prefix for one test (fails the test when Redis is unreachable)."""
    async with _redis_prefix() as p:
        yield p


StoreFactory = Callable[[], QuotaStore]


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Factory of stores over one shared counter space (memory: one shared instance; Redis: a
    new client and pool per call, over one unique key prefix)."""
    made: list[QuotaStore] = []
    shared = MemoryQuotaStore()
    async with contextlib.AsyncExitStack() as stack:
        # Only the Redis variant needs (and checks) Redis.
        prefix = (
            await stack.enter_async_context(_redis_prefix()) if request.param == "redis" else ""
        )

        def factory() -> QuotaStore:
            store: QuotaStore
            # Deadlines wide enough for a loaded test machine: these tests check counting, not
            # time (the deadlines' own behaviour is tested with a silent server below).
            store = (
                shared
                if request.param == "memory"
                else RedisQuotaStore(REDIS_URL, prefix, timeout=5.0, op_timeout=10.0)
            )
            made.append(store)
            return store

        yield factory
        for store in {id(s): s for s in made}.values():
            await store.close()


async def test_limit_is_exact_and_refusal_adds_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    results = [await store.reserve("o1", "TOEZICHT_VW", n, 10, NOON) for n in (3, 3, 3, 2, 1)]
    assert [r.granted for r in results] == [True, True, True, False, True]
    assert [r.used for r in results] == [3, 6, 9, 9, 10]
    assert all(r.limit == 10 for r in results)
    assert results[0].retry_after == 0
    assert results[3].retry_after == 12 * 3600  # noon -> next UTC midnight
    # Full: even 1 more is refused, and the counter stays at the limit.
    full = await store.reserve("o1", "TOEZICHT_VW", 1, 10, NOON)
    assert (full.granted, full.used) == (False, 10)
    # Zero is a pure read, granted when at (not over) the limit.
    zero = await store.reserve("o1", "TOEZICHT_VW", 0, 10, NOON)
    assert (zero.granted, zero.used) == (True, 10)


async def test_request_larger_than_limit_is_refused_whole(make_store: StoreFactory) -> None:
    store = make_store()
    big = await store.reserve("o1", "P", 11, 10, NOON)
    assert (big.granted, big.used) == (False, 0)
    assert (await store.reserve("o1", "P", 10, 10, NOON)).granted


async def test_counters_are_per_officer_purpose_and_utc_day(make_store: StoreFactory) -> None:
    store = make_store()
    assert (await store.reserve("o1", "P", 5, 5, NOON)).granted
    assert not (await store.reserve("o1", "P", 1, 5, NOON)).granted
    assert (await store.reserve("o2", "P", 5, 5, NOON)).granted  # other officer
    assert (await store.reserve("o1", "Q", 5, 5, NOON)).granted  # other purpose
    next_day = NOON + timedelta(days=1)
    assert (await store.reserve("o1", "P", 5, 5, next_day)).used == 5  # new UTC day
    # The day is the UTC day: 23:30 UTC-02:00 on the 14th is 01:30 UTC on the 15th.
    late = datetime(2025, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    refused = await store.reserve("o1", "P", 1, 5, late)
    assert not refused.granted
    assert refused.retry_after == 22 * 3600 + 30 * 60


async def test_ids_with_separators_do_not_collide(make_store: StoreFactory) -> None:
    store = make_store()
    assert (await store.reserve("a:b", "c", 1, 1, NOON)).granted
    assert (await store.reserve("a", "b:c", 1, 1, NOON)).granted


async def test_concurrent_reservations_grant_exactly_the_limit(make_store: StoreFactory) -> None:
    stores = [make_store(), make_store()]  # Redis: two pools, as two processes would have

    async def one(i: int) -> bool:
        return (await stores[i % 2].reserve("o1", "P", 1, 50, NOON)).granted

    async with asyncio.timeout(20):
        granted = await asyncio.gather(*(one(i) for i in range(200)))
    assert sum(granted) == 50
    final = await stores[0].reserve("o1", "P", 0, 50, NOON)
    assert final.used == 50


async def test_two_redis_stores_share_the_counter(prefix: str) -> None:
    a, b = RedisQuotaStore(REDIS_URL, prefix), RedisQuotaStore(REDIS_URL, prefix)
    try:
        assert (await a.reserve("o1", "P", 6, 10, NOON)).granted
        r = await b.reserve("o1", "P", 5, 10, NOON)
        assert (r.granted, r.used) == (False, 6)
        assert (await b.reserve("o1", "P", 4, 10, NOON)).used == 10
        assert await a.ready()
        assert await b.ready()
    finally:
        await a.close()
        await b.close()


async def test_redis_key_has_expiry_and_no_officer_id(prefix: str) -> None:
    store = RedisQuotaStore(REDIS_URL, prefix)
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        officer = "j.jansen@politie.example"
        await store.reserve(officer, "TOEZICHT_VW", 2, 10, NOON)
        keys = [k.decode() async for k in client.scan_iter(match=prefix + "*")]
        assert len(keys) == 1
        assert "jansen" not in keys[0]
        assert "20250314" in keys[0]
        ttl = await client.ttl(keys[0])
        assert 12 * 3600 < ttl <= 12 * 3600 + 3600 + 1  # to midnight plus the grace period
    finally:
        await client.aclose()
        await store.close()


async def test_redis_script_reloads_after_flush(prefix: str) -> None:
    """EVALSHA falls back to loading the script when Redis forgot it (restart, SCRIPT FLUSH)."""
    store = RedisQuotaStore(REDIS_URL, prefix)
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        assert (await store.reserve("o1", "P", 1, 5, NOON)).granted
        await client.script_flush()
        assert (await store.reserve("o1", "P", 1, 5, NOON)).used == 2
    finally:
        await client.aclose()
        await store.close()


@pytest.mark.usefixtures("prefix")  # Redis itself must be up: the failure must be the port's
async def test_unreachable_redis_fails_closed_quickly() -> None:
    store = RedisQuotaStore("redis://127.0.0.1:1/0", "ketenpoort:test:unused:")
    try:
        started = time.monotonic()
        with pytest.raises(QuotaUnavailable) as info:
            await store.reserve("o1", "P", 1, 10, NOON)
        assert time.monotonic() - started < 2.0
        assert info.value.code is Code.QUOTA_UNAVAILABLE
        assert info.value.http_status == 503
        assert "127.0.0.1" not in info.value.message
        started = time.monotonic()
        assert await store.ready() is False
        assert time.monotonic() - started < 2.0
    finally:
        await store.close()


async def test_unresponsive_redis_times_out_quickly() -> None:
    """A server that accepts but never answers (hung Redis) must not hang the request."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisQuotaStore(f"redis://127.0.0.1:{port}/0", "ketenpoort:test:unused:")
    try:
        started = time.monotonic()
        with pytest.raises(QuotaUnavailable):
            await store.reserve("o1", "P", 1, 10, NOON)
        assert time.monotonic() - started < 2.0
    finally:
        await store.close()
        server.close()


async def test_memory_store_prunes_past_days_and_closes() -> None:
    store = MemoryQuotaStore()
    for d in range(5):
        await store.reserve("o1", "P", 1, 10, NOON + timedelta(days=d))
    assert len(store._counters) == 2  # today and yesterday only
    assert await store.ready()
    await store.close()
    assert not await store.ready()
    with pytest.raises(QuotaUnavailable):
        await store.reserve("o1", "P", 1, 10, NOON)


async def test_bad_arguments_are_rejected() -> None:
    store = MemoryQuotaStore()
    with pytest.raises(ValueError, match="persons"):
        await store.reserve("o1", "P", -1, 10, NOON)
    with pytest.raises(ValueError, match="limit"):
        await store.reserve("o1", "P", 1, -1, NOON)
    with pytest.raises(ValueError, match="timezone"):
        await store.reserve("o1", "P", 1, 10, datetime(2025, 3, 14, 12))


async def test_open_quota_store() -> None:
    memory = open_quota_store("memory")
    assert isinstance(memory, MemoryQuotaStore)
    redis_store = open_quota_store("redis://127.0.0.1:6379/0")
    assert isinstance(redis_store, RedisQuotaStore)
    await redis_store.close()
    with pytest.raises(ValueError, match="memory") as info:
        open_quota_store("postgresql://user:secret@db/x")
    assert "secret" not in str(info.value)
