"""Per-officer, per-purpose, per-UTC-day quotas of data subjects.

A purpose in the policy may carry a daily quota: how many persons one officer may look up for it
in one UTC day. The quota is what makes bulk extraction impossible in practice while targeted work
stays fast: one look-up costs one counter operation.

Two stores implement :class:`QuotaStore`:

* :class:`MemoryQuotaStore` — the embedded default (one process, no services).
* :class:`RedisQuotaStore` — shared by N gateway processes. The check and the increment run in
  one Lua script, so two processes can never both take the last unit.

Both fail closed: a store that cannot answer raises :class:`QuotaUnavailable` and the gateway
refuses the quota-limited purpose (HTTP 503) rather than letting the request through uncounted.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, runtime_checkable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.errors import Code, GatewayError

__all__ = [
    "MemoryQuotaStore",
    "QuotaDecision",
    "QuotaStore",
    "QuotaUnavailable",
    "RedisQuotaStore",
    "open_quota_store",
]


# The name is part of the gateway's interface (it pairs with Code.QUOTA_UNAVAILABLE).
class QuotaUnavailable(GatewayError):
    """The quota store could not answer; the request must be refused (fail closed).

    The message is deliberately generic: it reaches callers and must not reveal the store's
    address or credentials. The underlying error is chained (``__cause__``) for the logs.
    """

    def __init__(self, message: str = "quota store unavailable; quota-limited purposes refused"):
        super().__init__(Code.QUOTA_UNAVAILABLE, message)


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """The outcome of one :meth:`QuotaStore.reserve`.

    ``used`` is the counter after the call (unchanged when refused). ``retry_after`` is 0 when
    granted and otherwise the whole seconds (>= 1) until the next UTC midnight, when the counter
    starts again; the HTTP layer sends it as ``Retry-After``.
    """

    granted: bool
    used: int
    limit: int
    retry_after: int


@runtime_checkable
class QuotaStore(Protocol):
    """Contract of a quota store.

    ``reserve(officer, purpose, persons, limit, now)``:
      * The counter is keyed by (officer, purpose, UTC day of ``now``); ``now`` defaults to the
        current time and must be timezone-aware when given.
      * Atomically (also across processes sharing the store): if ``used + persons <= limit`` the
        counter becomes ``used + persons`` and the decision is granted; otherwise nothing is
        added and the decision is refused with ``retry_after`` = seconds to the next UTC
        midnight. A request larger than the whole limit is refused, never partially granted.
      * ``persons == 0`` is granted without changing anything (when ``used <= limit``).
      * ``persons < 0`` or ``limit < 0`` raise :class:`ValueError` (a negative reservation would be
        a way to hand quota back, which the gateway never does).
      * Any failure of the store raises :class:`QuotaUnavailable`, promptly (bounded timeouts).
    ``ready()`` says whether the store can answer now; it never raises.
    ``close()`` releases connections; the store must not be used afterwards.
    """

    async def reserve(
        self,
        officer: str,
        purpose: str,
        persons: int,
        limit: int,
        now: datetime | None = None,
    ) -> QuotaDecision: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _utc(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime; a naive one is refused rather than guessed."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _seconds_to_midnight(now: datetime) -> int:
    """Whole seconds from ``now`` (UTC) to the next UTC midnight, at least 1."""
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)
    # ceil: a client that waits exactly this long must land in the new day, not just before it.
    return max(1, math.ceil((midnight - now).total_seconds()))


def _check_args(persons: int, limit: int) -> None:
    if persons < 0:
        raise ValueError("persons must be >= 0")
    if limit < 0:
        raise ValueError("limit must be >= 0")


class _DailyCounters:
    """What both stores share: the argument checks, the clock and the decision built from one
    atomic take. A store implements only :meth:`_take`."""

    async def reserve(
        self,
        officer: str,
        purpose: str,
        persons: int,
        limit: int,
        now: datetime | None = None,
    ) -> QuotaDecision:
        """See :class:`QuotaStore`."""
        _check_args(persons, limit)
        at = _utc(now)
        granted, used = await self._take(officer, purpose, at, persons, limit)
        if not granted:
            return QuotaDecision(False, used, limit, _seconds_to_midnight(at))
        return QuotaDecision(True, used, limit, 0)

    async def _take(
        self, officer: str, purpose: str, at: datetime, persons: int, limit: int
    ) -> tuple[bool, int]:
        """Atomically add ``persons`` to the (officer, purpose, UTC day of ``at``) counter when
        it stays within ``limit``: ``(granted, counter after)``; raises QuotaUnavailable."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Memory


class MemoryQuotaStore(_DailyCounters):
    """In-process quota store: the embedded default.

    Counters live in a dict guarded by a :class:`threading.Lock`. ``reserve`` never awaits between
    check and increment, so it is atomic under asyncio; the lock also covers callers on other
    threads (e.g. a test client running the app in a worker thread). Counters of days before the
    newest day seen minus one are pruned, so memory is bounded by the officers active in two days
    (yesterday is kept for requests that started just before midnight).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, date], int] = {}
        self._newest_day: date | None = None
        self._closed = False

    async def _take(
        self, officer: str, purpose: str, at: datetime, persons: int, limit: int
    ) -> tuple[bool, int]:
        day = at.date()
        key = (officer, purpose, day)
        with self._lock:
            if self._closed:
                raise QuotaUnavailable()
            self._prune(day)
            used = self._counters.get(key, 0)
            if used + persons > limit:
                return False, used
            if persons:
                used += persons
                self._counters[key] = used
            return True, used

    def _prune(self, day: date) -> None:
        """Drop counters older than yesterday; caller holds the lock."""
        if self._newest_day is not None and day <= self._newest_day:
            return
        self._newest_day = day
        horizon = day - timedelta(days=1)
        for stale in [k for k in self._counters if k[2] < horizon]:
            del self._counters[stale]

    async def ready(self) -> bool:
        """True until :meth:`close`."""
        return not self._closed

    async def close(self) -> None:
        """Forget all counters; later reserves raise :class:`QuotaUnavailable`."""
        with self._lock:
            self._closed = True
            self._counters.clear()


# ---------------------------------------------------------------------------------------------
# Redis

# KEYS[1] counter key; ARGV[1] persons, ARGV[2] limit, ARGV[3] ttl seconds.
# Returns {granted (0|1), used}. Check and INCRBY happen inside one script, which Redis runs
# atomically, so concurrent reservations from any number of processes can never overshoot.
# EXPIRE is refreshed on each increment so the key outlives its day by the grace period only.
_RESERVE_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local persons = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if used + persons > limit then
  return {0, used}
end
if persons > 0 then
  used = redis.call('INCRBY', KEYS[1], persons)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return {1, used}
"""

#: How long a day's counter survives the end of the day (clock skew between gateway and Redis).
_EXPIRY_GRACE_S = 3600


class RedisQuotaStore(_DailyCounters):
    """Quota store shared through Redis by all gateway processes.

    Keys are ``{prefix}{YYYYMMDD}:{sha256(officer, purpose)[:32]}``: the officer id never appears
    in Redis in clear (officer ids may be e-mail addresses), while the day stays readable for
    operators. Every Redis error or timeout becomes :class:`QuotaUnavailable`. Timeouts are small
    and the client does not retry, so a down Redis costs a request at most about ``timeout``
    seconds (connect or read) and never hangs it; ``op_timeout`` bounds the whole call as well.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "ketenpoort:quota:",
        *,
        timeout: float = 1.0,
        op_timeout: float = 1.5,
        max_connections: int = 16,
    ) -> None:
        self._prefix = prefix
        self._op_timeout = op_timeout
        # A blocking pool bounds the connections one process opens under a burst (opening many at
        # once on a loaded machine is what makes connects slow); waiting for a free connection is
        # bounded too, and the script is sub-millisecond, so a few connections serve a burst.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # redis-py retries with backoff by default; that would turn a dead Redis into a
            # multi-second stall per request. Fail fast and let the gateway answer 503.
            retry=Retry(NoBackoff(), 0),
        )
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        # register_script sends EVALSHA and falls back to loading the script on NOSCRIPT (e.g.
        # after a Redis restart or SCRIPT FLUSH).
        self._script = self._redis.register_script(_RESERVE_LUA)

    def key(self, officer: str, purpose: str, day: date) -> str:
        """The Redis key of one counter (public for tests and operators' tooling)."""
        # Length-prefixing makes the hashed tuple unambiguous whatever the ids contain.
        material = f"{len(officer)}:{officer}|{len(purpose)}:{purpose}".encode()
        digest = hashlib.sha256(material).hexdigest()[:32]
        return f"{self._prefix}{day:%Y%m%d}:{digest}"

    async def _take(
        self, officer: str, purpose: str, at: datetime, persons: int, limit: int
    ) -> tuple[bool, int]:
        # TTL is relative to the request time, so it is right for any `now` and never negative.
        ttl = _seconds_to_midnight(at) + _EXPIRY_GRACE_S
        try:
            async with asyncio.timeout(self._op_timeout):
                result = await self._script(
                    keys=[self.key(officer, purpose, at.date())],
                    args=[persons, limit, ttl],
                )
            granted, used = int(result[0]), int(result[1])
        except (RedisError, OSError, TimeoutError, ValueError, TypeError, IndexError) as exc:
            raise QuotaUnavailable() from exc
        return bool(granted), used

    async def ready(self) -> bool:
        """PING within the operation timeout; False on any failure."""
        try:
            async with asyncio.timeout(self._op_timeout):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self._redis.aclose(close_connection_pool=True)


def open_quota_store(url: str) -> QuotaStore:
    """The store named by ``KETENPOORT_QUOTA_STORE``: ``memory`` or ``redis://``/``rediss://``/
    ``unix://`` URL. Does not connect (the first reserve or ``ready()`` does); raises
    :class:`ValueError` for anything else.
    """
    if url == "memory":
        return MemoryQuotaStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisQuotaStore(url)
    # Do not echo the URL: it may carry a password.
    raise ValueError("quota store must be 'memory' or a redis:// URL")
