"""Secrets kept in the state directory (development signing key, pseudonym key).

Several gateway processes may share one state directory and start at the same moment: the key
is written to a private temporary file and linked into place, so a reader never sees a partly
written key, and the first writer wins for everyone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path


def load_or_create(path: Path, size: int = 32) -> bytes:
    """The key at ``path``; created (0600, ``size`` random bytes) if it does not exist yet."""
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(size))
            handle.flush()
            os.fsync(handle.fileno())
        # Atomic, and refuses to replace a key another process made first.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) < 16:
        raise ValueError(f"{path}: the key file is too short; remove it to make a new one")
    return key
