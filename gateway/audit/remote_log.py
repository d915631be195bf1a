"""The log's stored rows read over HTTP: a :class:`~gateway.audit.logcheck.LogReads` built from
the gateway's content pages (:mod:`gateway.audit.log_pages`), so that a witness runs the same
:func:`~gateway.audit.logcheck.check_log` as ``audit verify --checkpoint`` without database
access.

The reads stop at a tree size: the size of the checkpoint being checked. Entries up to a
signed size change only by recorded purges, and a purge recorded at or before that size was
complete when the checkpoint was signed (its deletions and its entry are one transaction), so
pages read one after another see one history. The exception is a purge recorded *after* the
checkpoint: the entries it removed are missing, and its entry lies beyond the size read, so the
check names them (:func:`gateway.audit.witness.witness_once` then tries a newer checkpoint once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from gateway.audit.log_pages import (
    ENTRIES_PATH,
    ENTRY_WIDTH,
    LEAF_WIDTH,
    LEAVES_PATH,
    MAX_ENTRIES,
    MAX_LEAVES,
    MAX_PURGED,
    PURGED_PATH,
    PURGED_WIDTH,
    SET_WIDTH,
    SUBJECT_WIDTH,
    PageError,
    decode_rows,
)
from gateway.audit.logcheck import LogReads

#: Most purged-list pages one check reads (10,000 rows each): a bound, not an expected size.
MAX_PURGED_PAGES = 10_000


class PagesRefused(Exception):
    """The gateway answered a page with an error: its HTTP status and stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


class RemoteLog:
    """Pages of one gateway's log, read with a bearer token of a reader of the trail.

    Raises :class:`PagesRefused` for an error answer, :class:`PageError` for a page that is not
    one, ``httpx.HTTPError`` when the gateway cannot be reached.
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, token: str) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def _get(self, path: str, params: Mapping[str, int]) -> dict[str, Any]:
        response = await self._client.get(self._base + path, params=params, headers=self._headers)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            code, message = "", response.reason_phrase
            if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
                error = body["errors"][0]
                if isinstance(error, dict):
                    message = str(error.get("message", message))
                    extensions = error.get("extensions")
                    if isinstance(extensions, dict):
                        code = str(extensions.get("code", ""))
            raise PagesRefused(response.status_code, code or "UNKNOWN", message)
        if not isinstance(body, dict):
            raise PageError(f"{path} did not answer a JSON object")
        return body

    async def purged(self, size: int) -> list[tuple[Any, ...]]:
        """Every ``audit_purged`` row with ``seq <= size``."""
        rows: list[tuple[Any, ...]] = []
        after = 0
        for _ in range(MAX_PURGED_PAGES):
            body = await self._get(
                PURGED_PATH, {"after": after, "size": size, "limit": MAX_PURGED}
            )
            page = decode_rows(body.get("purged"), PURGED_WIDTH, "purged rows")
            if not page:
                return rows
            last = page[-1][0]
            if not isinstance(last, int) or last <= after:
                raise PageError("the purged page does not advance")
            rows += page
            if len(page) < MAX_PURGED:  # the last page
                return rows
            after = last
        raise PageError(f"the purged list has more than {MAX_PURGED_PAGES} pages")

    async def reads(self, size: int) -> LogReads:
        """:class:`LogReads` of the log's first ``size`` leaves and their entries.

        ``head_seq`` is ``size``: the check then requires exactly ``size`` leaves. The anchor is
        not read (``check_log`` judges a missing prefix by the recorded purges alone).
        """
        purged = await self.purged(size)
        # check_log asks for the subject rows and decision sets of each entries page right
        # after the page: they came in the same answer (one snapshot), kept until the next.
        current: dict[str, Any] = {}

        async def entries_after(after: int, n: int) -> Sequence[Any]:
            current.clear()
            current["range"] = (after, after)
            if after >= size:  # nothing to read (and no read to record)
                return []
            body = await self._get(
                ENTRIES_PATH, {"after": after, "size": size, "limit": min(n, MAX_ENTRIES)}
            )
            entries = decode_rows(body.get("entries"), ENTRY_WIDTH, "entries")
            if entries and (not isinstance(entries[-1][0], int) or entries[-1][0] <= after):
                raise PageError("the entries page does not advance")
            current["range"] = (after, entries[-1][0] if entries else after)
            current["subjects"] = decode_rows(body.get("subjects"), SUBJECT_WIDTH, "subjects")
            current["sets"] = decode_rows(body.get("sets"), SET_WIDTH, "decision sets")
            return entries

        async def subjects_between(lo: int, hi: int) -> Sequence[Any]:
            if current.get("range") != (lo, hi):
                raise PageError(f"subject rows {lo}..{hi} were not read with their entries")
            rows: list[tuple[Any, ...]] = current["subjects"]
            return rows

        async def sets_named(ids: list[str]) -> Iterable[tuple[str, bytes]]:
            wanted = set(ids)
            found: list[tuple[Any, ...]] = current.get("sets", [])
            return [(row[0], row[1]) for row in found if row[0] in wanted]

        async def leaves_after(idx: int, _: int) -> Sequence[Any]:
            # Leaves are 32 bytes: a page of them is worth more rows than an entries page, and
            # check_log takes however many come.
            if idx + 1 >= size:
                return []
            body = await self._get(
                LEAVES_PATH, {"start": idx + 1, "size": size, "limit": MAX_LEAVES}
            )
            return decode_rows(body.get("leaves"), LEAF_WIDTH, "leaves")

        return LogReads(
            head_seq=size,
            anchor_seq=0,
            entries_after=entries_after,
            subjects_between=subjects_between,
            sets_named=sets_named,
            leaves_after=leaves_after,
            purged=purged,
            page=MAX_ENTRIES,
        )
