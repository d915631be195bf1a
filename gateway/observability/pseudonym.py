"""Keyed pseudonyms of V-nummers.

The raw V-nummer appears in no trace, log or audit row: everything that must name a data subject
names ``pseudonym(vnummer)`` instead, a keyed HMAC-SHA256. A security officer searching the trail
by V-nummer computes the same pseudonym with the same key (the state directory's key file).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from gateway.keyfile import load_or_create

KEY_FILE = "pseudonym.key"


class Pseudonymizer:
    """Maps a V-nummer to its pseudonym (64 hex chars). Deterministic for one key."""

    __slots__ = ("_cache", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key must be at least 16 bytes")
        self._key = key
        # Bounded: subjects are looked up one request at a time; a hot subject should not pay the
        # HMAC twice, but the cache must not grow with the register.
        self._cache: dict[str, str] = {}

    def __call__(self, vnummer: str) -> str:
        cached = self._cache.get(vnummer)
        if cached is not None:
            return cached
        value = hmac.new(self._key, vnummer.encode("ascii"), hashlib.sha256).hexdigest()
        if len(self._cache) >= 65_536:
            self._cache.clear()
        self._cache[vnummer] = value
        return value


def load_or_create_key(state_dir: Path) -> bytes:
    """The pseudonym key of the state directory, created (0600) on first use."""
    return load_or_create(state_dir / KEY_FILE)
