"""Signing keys from a JWKS URL, fetched asynchronously with a short deadline.

PyJWT's ``PyJWKClient`` fetches with ``urllib`` (30 s default timeout) on the calling thread: on
the gateway's event loop one slow identity provider would stall every request. :class:`JwksKeys`
fetches with httpx instead, never on the loop's time:

* one deadline for the whole fetch (connect, headers and body: ``KETENPOORT_JWKS_TIMEOUT``),
  a bounded body (:data:`MAX_JWKS_BYTES`) and no redirects;
* single flight: concurrent requests that need the keys wait for the same fetch, and a waiter
  that gives up (its client went away) does not cancel it for the others;
* the key set is kept for :data:`LIFESPAN_S` seconds; after that it must be fetched again
  (a key withdrawn from the JWKS stops being accepted within that time). An unknown ``kid``
  refetches at most every :data:`UNKNOWN_KID_REFETCH_S` seconds, so tokens with made-up key ids
  cannot make the gateway hammer the identity provider;
* fail closed: when the key set cannot be fetched (timeout, refused, not JSON, no usable key)
  :class:`JwksUnavailable` is raised and the caller answers ``UNAUTHENTICATED``; a failed fetch is
  not retried for :data:`RETRY_AFTER_FAILURE_S` seconds, so while the provider hangs requests are
  refused at once instead of each waiting out the deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

log = logging.getLogger("ketenpoort.auth")

#: Seconds a fetched key set is used before it is fetched again (PyJWKClient's default too).
LIFESPAN_S = 300.0
#: Least seconds between refetches caused by a token naming a key id the set does not hold.
UNKNOWN_KID_REFETCH_S = 10.0
#: Seconds after a failed fetch during which no new fetch starts (tokens are refused at once).
RETRY_AFTER_FAILURE_S = 2.0
#: Largest JWKS body accepted (a key set is a few kB).
MAX_JWKS_BYTES = 1024 * 1024


class JwksUnavailable(Exception):
    """The key set could not be fetched or holds no usable key; the message is for the log."""


class JwksKeys:
    """The signing keys published at one JWKS URL (``http://`` or ``https://``).

    ``timeout`` bounds one fetch as a whole. ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"a JWKS URL is http:// or https://, got {url!r}")
        if not timeout > 0:
            raise ValueError(f"the JWKS timeout must be positive, got {timeout}")
        self.url = url
        self.timeout = timeout
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._fetch: asyncio.Task[None] | None = None

    async def key(self, kid: object) -> Any:
        """The verification key of ``kid``; :class:`JwksUnavailable` when the set cannot be
        fetched, ``KeyError`` when the (fresh enough) set has no signing key of that id."""
        if not isinstance(kid, str) or not kid:
            raise KeyError("the token names no key id (kid)")
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < LIFESPAN_S
        if not fresh:
            await self._refresh()
        elif kid not in self._keys and now - (self._fetched_at or 0.0) >= UNKNOWN_KID_REFETCH_S:
            # Possibly a rotated-in key: look again, but never more often than the bound.
            await self._refresh()
        found = self._keys.get(kid)
        if found is None:
            raise KeyError(f"no signing key {kid!r} in the JWKS")
        return found.key

    async def _refresh(self) -> None:
        now = self._clock()
        if self._failed_at is not None and now - self._failed_at < RETRY_AFTER_FAILURE_S:
            raise JwksUnavailable("the JWKS failed moments ago; not asked again yet")
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.create_task(self._fetch_keys(), name="ketenpoort-jwks")
            # Retrieved here too, so a failure nobody waited for any more is not logged as lost.
            self._fetch.add_done_callback(_retrieve)
        # shield: a request cancelled while waiting does not cancel the fetch the others share.
        await asyncio.shield(self._fetch)

    async def _fetch_keys(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                body = await self._download()
            keys = _signing_keys(body)
        except Exception as exc:
            self._failed_at = self._clock()
            if isinstance(exc, TimeoutError):
                detail = f"no answer within {self.timeout} s"
            elif isinstance(exc, JwksUnavailable):
                detail = str(exc)
            else:  # the type only: an exception's text could echo the body
                detail = type(exc).__name__
            log.warning("JWKS %s unavailable: %s", self.url, detail)
            raise JwksUnavailable(f"JWKS {self.url}: {detail}") from exc
        self._keys = keys
        self._fetched_at = self._clock()
        self._failed_at = None

    async def _download(self) -> bytes:
        # A client per fetch: fetches are minutes apart, and a client of its own belongs to
        # whichever event loop asks (the gateway's, the console's).
        async with (
            httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise JwksUnavailable(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(f"body over {MAX_JWKS_BYTES} bytes")
            return bytes(body)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _signing_keys(body: bytes) -> dict[str, jwt.PyJWK]:
    """The signing keys (``use`` absent or ``sig``, with a ``kid``) of a JWKS document."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise JwksUnavailable("the JWKS is not a JSON object")
    keys = {
        key.key_id: key
        for key in jwt.PyJWKSet.from_dict(data).keys
        if key.key_id and key.public_key_use in ("sig", None)
    }
    if not keys:
        raise JwksUnavailable("the JWKS holds no signing key with a key id")
    return keys
