"""The audit log's content pages: what a witness reads, without database access, to check the
stored entries against signed checkpoints the way ``audit verify --checkpoint`` does.

Three pages, each bounded by a tree size (the witness asks for the size of a checkpoint it
checks; nothing beyond it is read) and by a page length:

* **leaves**: ``(idx, leaf hash)`` for ``start <= idx < size``, by idx;
* **entries**: the entry rows with ``after < seq <= size`` (:data:`ENTRY_COLUMNS` order), the
  subject rows of the seqs ``after < entry_seq <= last seq returned`` and the decision sets
  those rows name, read in one snapshot (so a purge between two reads cannot split an entry
  from its subject rows);
* **purged**: ``audit_purged`` rows ``(seq, hash, purge_seq)`` with ``after < seq <= size``.

Rows are the stores' rows as read, not interpreted: the witness's check sees exactly what the
local check sees, an altered value included. In JSON a value is ``null``, a number or a
string as stored; bytes are ``{"b64": "<base64>"}`` and a timestamp (PostgreSQL) is
``{"time": "<ISO 8601>"}``, tagged so that neither is mistaken for a stored string. Any other
driver type (none is expected) is sent as its text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.audit.entries import ENTRY_COLUMNS, SUBJECT_COLUMNS
from gateway.audit.querying import PageReads

#: Where the pages are served (below the log's public ``/.well-known/ketenpoort`` prefix).
LEAVES_PATH = "/.well-known/ketenpoort/log/leaves"
ENTRIES_PATH = "/.well-known/ketenpoort/log/entries"
PURGED_PATH = "/.well-known/ketenpoort/log/purged"

#: Most rows of one page. A leaf is 32 bytes; an entry page also carries its subject rows
#: (at most a purpose's subject cap per entry) and decision sets.
MAX_LEAVES = 10_000
MAX_ENTRIES = 1_000
MAX_PURGED = 10_000

#: Columns of each kind of row (what the witness checks a page's shape against).
LEAF_WIDTH = 2
ENTRY_WIDTH = len(ENTRY_COLUMNS)
SUBJECT_WIDTH = len(SUBJECT_COLUMNS)
SET_WIDTH = 2
PURGED_WIDTH = 3


class PageError(ValueError):
    """A page that is not what this module's encoding produces."""


@dataclass(frozen=True, slots=True)
class EntryPage:
    """One entries page: entry rows, their subject rows and the decision sets they name."""

    entries: list[Any]
    subjects: list[Any]
    sets: list[Any]


@runtime_checkable
class LogPages(Protocol):
    """The stores' reads behind the pages (both stores implement it).

    Each call reads in one snapshot and raises
    :class:`~gateway.audit.store.AuditUnavailable` when the store cannot answer.
    """

    async def log_leaves(self, start: int, limit: int, size: int) -> list[Any]: ...

    async def log_entries(self, after: int, limit: int, size: int) -> EntryPage: ...

    async def log_purged(self, after: int, limit: int, size: int) -> list[Any]: ...


async def entry_page(entries: list[Any], after: int, reads: PageReads) -> EntryPage:
    """The entries page of ``entries`` (read with ``seq > after``): their seq range's subject
    rows and the decision sets those name, read with ``reads`` in the caller's snapshot."""
    if not entries:
        return EntryPage([], [], [])
    subjects = list(await reads.subjects_between(after, entries[-1][0]))
    named = sorted({row[3] for row in subjects if isinstance(row[3], str)})
    sets = list(await reads.sets_named(named)) if named else []
    return EntryPage(entries, subjects, sets)


def encode_value(value: Any) -> Any:
    """One stored value as JSON (see the module docstring); :func:`decode_value` inverts it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity; such a value (never written by a store) goes as text.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"time": value.isoformat()}
    return str(value)


def decode_value(value: Any) -> Any:
    """A value as the store returned it (bytes and timestamps restored); :class:`PageError`
    for anything :func:`encode_value` does not produce."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        if isinstance(text, str) and tag == "b64":
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PageError(f"a value is not valid base64 ({exc})") from None
        if isinstance(text, str) and tag == "time":
            try:
                return dt.datetime.fromisoformat(text)
            except ValueError as exc:
                raise PageError(f"a timestamp is not ISO 8601 ({exc})") from None
    raise PageError("a value is neither a stored value nor a tagged one")


def encode_rows(rows: Sequence[Any]) -> list[list[Any]]:
    """Rows as JSON arrays of encoded values."""
    return [[encode_value(v) for v in row] for row in rows]


def decode_rows(rows: Any, width: int, what: str) -> list[tuple[Any, ...]]:
    """Rows of ``width`` values back from JSON; :class:`PageError` for any other shape."""
    if not isinstance(rows, list):
        raise PageError(f"the {what} of a page are not a list")
    decoded: list[tuple[Any, ...]] = []
    for row in rows:
        if not isinstance(row, list) or len(row) != width:
            raise PageError(f"a row of {what} does not have {width} values")
        decoded.append(tuple(decode_value(v) for v in row))
    return decoded
