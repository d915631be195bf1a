"""Registry answers cached through aiocache: memory (embedded) or Redis (scaled out).

Keys name the registry, the field set (a digest of the projected paths), the row scope and the
subject's pseudonym — never the raw V-nummer. Authorization is applied after the cache (the
plan's overlay), so a cached record can never reach a caller the policy does not allow. The
cache is an optimisation: when Redis is down the gateway asks the registries.

One person's entries can be removed at once (:meth:`RecordCache.purge`, the admin endpoint
``POST /admin/cache/purge``; :func:`purge_subject` for Redis from the command line). Every key
ends in ``:<pseudonym>``, so the keys of a person are found by that suffix — by SCAN in Redis,
by a walk over the keys in process memory — and no per-person index has to be kept in step.
"""

from __future__ import annotations

import asyncio
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
#: Seconds a purge of the Redis cache may take as a whole (connect, SCAN, DEL); then it fails.
PURGE_TIMEOUT_S = 10.0


def field_set_digest(fields: Iterable[str], scope: str = "") -> str:
    """A short, stable name for a projection (and row scope), part of every key."""
    text = ",".join(sorted(fields)) + "|" + scope
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CacheUnavailable(Exception):
    """The cache could not be purged (Redis unreachable or too slow); the message is one line."""


class RecordCache:
    """``get_many``/``set_many`` over an aiocache backend; failures are misses, never errors.

    ``url`` is where the backend lives (``memory`` or ``redis://...``), for :meth:`purge`.
    """

    def __init__(self, backend: BaseCache, ttl: float, url: str = "memory") -> None:
        self._backend = backend
        self._ttl = ttl
        self.url = url
        # Bumped by every purge: a request that read the cache before a purge does not write
        # what it fetched meanwhile back after it (see set_many).
        self._epoch = 0

    @property
    def kind(self) -> str:
        """``memory`` (this process only) or ``redis`` (shared by every gateway process)."""
        return "memory" if self.url == "memory" else "redis"

    @property
    def epoch(self) -> int:
        """Take it before reading the cache; hand it to :meth:`set_many` with what was fetched."""
        return self._epoch

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

    async def set_many(self, items: Sequence[tuple[str, Any]], epoch: int | None = None) -> None:
        """Cache ``items``; nothing when a purge happened since ``epoch`` was taken (the
        records may be of a person just purged: they are not put back)."""
        if not items or (epoch is not None and epoch != self._epoch):
            return
        try:
            await self._backend.multi_set(list(items), ttl=self._ttl)
        except Exception as exc:
            log.warning("cache write failed: %s", type(exc).__name__)

    async def purge(self, pseudonym: str) -> int:
        """Remove every cached answer about one data subject; how many entries went.

        The memory backend is this process's own; Redis is purged for every process sharing it
        (:func:`purge_subject`). :class:`CacheUnavailable` when Redis cannot be purged now.
        """
        self._epoch += 1
        if self.kind == "redis":
            return await purge_subject(self.url, pseudonym)
        suffix = f":{pseudonym}"
        # raw("keys") is aiocache's public passage to the backend: for the memory backend the
        # namespaced keys of its dict, listed here without an await in between.
        keys = [k for k in await self._backend.raw("keys") if k.endswith(suffix)]
        removed = 0
        for key in keys:
            removed += int(await self._backend.delete(key.removeprefix(NAMESPACE)))
        return removed

    async def close(self) -> None:
        await self._backend.close()


def open_cache(url: str, ttl: float) -> RecordCache:
    """``memory`` or ``redis://host:port/db``."""
    if url == "memory":
        # timeout=None: aiocache would otherwise wrap every call in asyncio.wait_for.
        return RecordCache(SimpleMemoryCache(namespace=NAMESPACE, timeout=None), ttl, url)
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
    return RecordCache(backend, ttl, url)


async def purge_subject(url: str, pseudonym: str) -> int:
    """Delete every cached registry answer about one data subject (by pseudonym) from the Redis
    cache at ``url``; returns how many keys went. ``memory`` caches live inside a gateway
    process, unreachable from here: ``ValueError`` (purge them through the gateway's
    ``POST /admin/cache/purge``). :class:`CacheUnavailable` when Redis fails or does not answer
    within :data:`PURGE_TIMEOUT_S` seconds."""
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ValueError(
            "KETENPOORT_CACHE is not Redis: an in-process cache lives inside the running "
            "gateway; purge it there (--gateway URL, POST /admin/cache/purge)"
        )
    import redis.asyncio as aioredis

    client = aioredis.Redis(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int(parsed.path.lstrip("/") or 0),
        password=parsed.password,
        socket_connect_timeout=2.0,
        socket_timeout=PURGE_TIMEOUT_S,
    )
    try:
        async with asyncio.timeout(PURGE_TIMEOUT_S):
            # Keys are <namespace><registry>:<field set>:<pseudonym>; the pseudonym is 64 hex.
            match = f"{NAMESPACE}*:{pseudonym}"
            keys = [k async for k in client.scan_iter(match=match, count=500)]
            return int(await client.delete(*keys)) if keys else 0
    except TimeoutError as exc:
        where = _where(parsed)
        raise CacheUnavailable(f"Redis at {where} did not answer in {PURGE_TIMEOUT_S} s") from exc
    except Exception as exc:  # redis' own errors are no OSError
        raise CacheUnavailable(f"Redis at {_where(parsed)}: {type(exc).__name__}") from exc
    finally:
        await client.aclose()


def _where(parsed: Any) -> str:
    """host:port of a Redis URL, never its password."""
    return f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"
