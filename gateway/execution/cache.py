"""Registry answers cached through aiocache: memory (embedded) or Redis (scaled out).

Keys name the registry, the field set (a digest of the projected paths), the row scope and the
subject's pseudonym — never the raw V-nummer. Authorization is applied after the cache (the
plan's overlay), so a cached record can never reach a caller the policy does not allow. The
cache is an optimisation: when Redis is down the gateway asks the registries.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import JsonSerializer

log = logging.getLogger("ketenpoort.cache")

NAMESPACE = "ketenpoort:cache:"


def field_set_digest(fields: Iterable[str], scope: str = "") -> str:
    """A short, stable name for a projection (and row scope), part of every key."""
    text = ",".join(sorted(fields)) + "|" + scope
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RecordCache:
    """``get_many``/``set_many`` over an aiocache backend; failures are misses, never errors."""

    def __init__(self, backend: BaseCache, ttl: float) -> None:
        self._backend = backend
        self._ttl = ttl

    @staticmethod
    def key(registry: str, digest: str, pseudonym: str) -> str:
        return f"{registry}:{digest}:{pseudonym}"

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        try:
            return list(await self._backend.multi_get(list(keys)))
        except Exception as exc:  # the cache never fails a request; the registry is asked
            log.warning("cache read failed: %s", type(exc).__name__)
            return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[str, Any]]) -> None:
        if not items:
            return
        try:
            await self._backend.multi_set(list(items), ttl=self._ttl)
        except Exception as exc:
            log.warning("cache write failed: %s", type(exc).__name__)

    async def close(self) -> None:
        await self._backend.close()


def open_cache(url: str, ttl: float) -> RecordCache:
    """``memory`` or ``redis://host:port/db``."""
    if url == "memory":
        # timeout=None: aiocache would otherwise wrap every call in asyncio.wait_for.
        return RecordCache(SimpleMemoryCache(namespace=NAMESPACE, timeout=None), ttl)
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ValueError(f"KETENPOORT_CACHE must be 'memory' or redis://..., got {url!r}")
    backend = RedisCache(
        endpoint=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int(parsed.path.lstrip("/") or 0),
        password=parsed.password,
        namespace=NAMESPACE,
        serializer=JsonSerializer(),
        timeout=0.5,
    )
    return RecordCache(backend, ttl)


async def purge_subject(url: str, pseudonym: str) -> int:
    """Delete every cached registry answer about one data subject (by pseudonym) from the Redis
    cache at ``url``; returns how many keys went. ``memory`` caches live inside a gateway
    process, unreachable from here: ``ValueError`` (they empty themselves within the TTL)."""
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ValueError(
            "KETENPOORT_CACHE is not Redis: an in-process cache lives inside the running "
            "gateway and empties itself within KETENPOORT_CACHE_TTL seconds"
        )
    import redis.asyncio as aioredis

    client = aioredis.Redis(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int(parsed.path.lstrip("/") or 0),
        password=parsed.password,
    )
    try:
        # Keys are <namespace><registry>:<field set>:<pseudonym>; the pseudonym is 64 hex.
        keys = [k async for k in client.scan_iter(match=f"{NAMESPACE}*:{pseudonym}", count=500)]
        return int(await client.delete(*keys)) if keys else 0
    finally:
        await client.aclose()
