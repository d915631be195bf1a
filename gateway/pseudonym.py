"""Keyed pseudonyms of V-nummers.

The raw V-nummer appears in no trace, log or audit row: everything that must name a data subject
names ``pseudonym(vnummer)`` instead, a keyed HMAC-SHA256. A security officer searching the trail
by V-nummer computes the same pseudonym with the same key (the state directory's key file).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

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
    """Read the pseudonym key from the state directory, creating it (0600) on first use."""
    path = state_dir / KEY_FILE
    if path.exists():
        return path.read_bytes()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the same state directory won the race
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
