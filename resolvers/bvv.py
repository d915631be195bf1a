"""The BVV (Basisvoorziening Vreemdelingen): REST/JSON with field projection and row scope."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from resolvers.base import RegistryClient, malformed

MAX_PER_CALL = 100


@dataclass(frozen=True, slots=True)
class BvvAnswer:
    """Projected records by V-nummer, and the V-nummers outside the asked row scope (of a
    look-up only: the caller named them; a search's answer never holds any)."""

    records: dict[str, dict[str, Any]]
    out_of_scope: frozenset[str]


class BvvClient(RegistryClient):
    name = "BVV"

    async def persons(
        self,
        vnummers: Sequence[str],
        fields: Iterable[str],
        scope: dict[str, Any] | None = None,
    ) -> BvvAnswer:
        """``POST /personen``: only ``fields`` (dotted paths), only persons within ``scope``."""
        field_list = sorted(fields)
        chunks = [vnummers[i : i + MAX_PER_CALL] for i in range(0, len(vnummers), MAX_PER_CALL)]
        answers = await asyncio.gather(
            *(self._persons(list(chunk), field_list, scope) for chunk in chunks)
        )
        records: dict[str, dict[str, Any]] = {}
        out: set[str] = set()
        for answer in answers:
            records.update(answer.records)
            out.update(answer.out_of_scope)
        return BvvAnswer(records, frozenset(out))

    async def _persons(
        self, vnummers: list[str], fields: list[str], scope: dict[str, Any] | None
    ) -> BvvAnswer:
        body: dict[str, Any] = {"vnummers": vnummers, "fields": fields}
        if scope is not None:
            body["voorwaarde"] = scope
        answer = await self.post_json("/personen", body, subjects=len(vnummers))
        return self._parse(answer, set(vnummers))

    def _parse(self, answer: Any, asked: set[str]) -> BvvAnswer:
        if not isinstance(answer, dict) or not isinstance(answer.get("personen"), list):
            raise malformed(self.name)
        records: dict[str, dict[str, Any]] = {}
        for record in answer["personen"]:
            vnummer = record.get("vnummer") if isinstance(record, dict) else None
            # A registry that answers for persons we did not ask about is not trusted.
            if vnummer not in asked:
                raise malformed(self.name)
            records[vnummer] = record
        out = answer.get("buitenVoorwaarde", [])
        if not isinstance(out, list) or not asked.issuperset(out):
            raise malformed(self.name)
        return BvvAnswer(records, frozenset(out))

    async def search(
        self,
        surname: str,
        birth_date: str,
        fields: Iterable[str],
        limit: int,
        scope: dict[str, Any] | None = None,
    ) -> BvvAnswer:
        """``POST /zoeken``: exact match on surname and birth date, at most ``limit``, only
        persons within ``scope``. The registry names no match outside the scope, not even by
        V-nummer: an answer that does (``buitenVoorwaarde``) breaks the contract and is refused
        as malformed, so an out-of-scope V-nummer is never kept (``out_of_scope`` stays empty).
        """
        body: dict[str, Any] = {
            "geslachtsnaam": surname,
            "geboortedatum": birth_date,
            "fields": sorted(fields),
            "max": limit,
        }
        if scope is not None:
            body["voorwaarde"] = scope
        answer = await self.post_json("/zoeken", body, subjects=1)
        if (
            not isinstance(answer, dict)
            or not isinstance(answer.get("personen"), list)
            or "buitenVoorwaarde" in answer
        ):
            raise malformed(self.name)
        found = [r for r in answer["personen"] if isinstance(r, dict) and "vnummer" in r]
        if len(found) != len(answer["personen"]) or len(found) > limit:
            raise malformed(self.name)
        return BvvAnswer({str(r["vnummer"]): r for r in found}, frozenset())
