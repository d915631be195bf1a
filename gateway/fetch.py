"""Per-request fetching of persons: one DataLoader per registry, through the cache.

All root fields of an operation share the request's loaders, so 150 aliased look-ups or a list
of 50 V-nummers become one call per registry. The projection is the plan's fetch set: refused
and unselected fields are never asked for. With a row scope the BVV is asked first (it checks
the scope at the source) and the other registries only for persons within it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from strawberry.dataloader import DataLoader

from gateway.cache import RecordCache, field_set_digest
from gateway.errors import Code, GatewayError
from resolvers import BvvClient, CoaClient, IndClient, RegistryUnavailable

#: Cached/loaded outcomes other than a record (JSON-able: they go to Redis too).
NOT_FOUND: dict[str, str] = {"__ketenpoort": "not_found"}
OUT_OF_SCOPE: dict[str, str] = {"__ketenpoort": "out_of_scope"}


@dataclass(frozen=True, slots=True)
class Registries:
    """The registry clients the gateway talks to (sharing one httpx client)."""

    bvv: BvvClient
    coa: CoaClient
    ind: IndClient


class _Failed:
    """A registry's failure, as a loaded value (so the other registries' data still comes)."""

    __slots__ = ("error",)

    def __init__(self, error: RegistryUnavailable) -> None:
        self.error = error


@dataclass(slots=True)
class PersonOutcome:
    """What the gateway knows of one person after fetching."""

    vnummer: str
    value: dict[str, Any] | None  # the person object (overlay not yet applied), None = unknown
    out_of_scope: bool
    failed: frozenset[str]  # registries that did not answer for this person


class PersonFetcher:
    """Loads persons for one request, per the request's fetch set and the purpose's scope."""

    def __init__(
        self,
        registries: Registries,
        cache: RecordCache,
        fetch: dict[str, frozenset[str]],
        scope: dict[str, Any] | None,
        pseudonym: Callable[[str], str],
    ) -> None:
        self._registries = registries
        self._cache = cache
        self._fetch = fetch
        self._scope = scope
        self._pseudonym = pseudonym
        scope_text = repr(sorted(scope.items())) if scope else ""
        self._bvv_digest = field_set_digest(fetch.get("BVV", ()), scope_text)
        self._coa_digest = field_set_digest(fetch.get("COA", ()))
        self._ind_digest = field_set_digest(fetch.get("IND", ()))
        # Without any registry field (only `vnummer` asked) the BVV still says whether the person
        # exists; otherwise a known person would be answered as unknown (null).
        self._bvv = DataLoader(self._load_bvv) if ("BVV" in fetch or scope or not fetch) else None
        self._coa = DataLoader(self._load_coa) if "COA" in fetch else None
        self._ind = DataLoader(self._load_ind) if "IND" in fetch else None
        #: Top-level fields per registry: these become errors when that registry fails.
        self._top = {reg: {p.split(".", 1)[0] for p in paths} for reg, paths in fetch.items()}

    async def _cached(
        self,
        registry: str,
        digest: str,
        vnummers: list[str],
        fetch: Callable[[list[str]], Any],
    ) -> list[Any]:
        keys = [RecordCache.key(registry, digest, self._pseudonym(v)) for v in vnummers]
        values = await self._cache.get_many(keys)
        missing = [v for v, value in zip(vnummers, values, strict=True) if value is None]
        if missing:
            try:
                fetched: dict[str, Any] = await fetch(missing)
            except RegistryUnavailable as exc:
                failed = _Failed(exc)
                return [failed if value is None else value for value in values]
            await self._cache.set_many(
                [
                    (keys[i], fetched[v])
                    for i, v in enumerate(vnummers)
                    if v in fetched and values[i] is None
                ]
            )
            values = [
                fetched[v] if value is None else value
                for v, value in zip(vnummers, values, strict=True)
            ]
        return values

    async def _load_bvv(self, vnummers: list[str]) -> list[Any]:
        async def fetch(missing: list[str]) -> dict[str, Any]:
            answer = await self._registries.bvv.persons(
                missing, self._fetch.get("BVV", ()), self._scope
            )
            return {
                v: answer.records.get(v)
                or (OUT_OF_SCOPE if v in answer.out_of_scope else NOT_FOUND)
                for v in missing
            }

        return await self._cached("BVV", self._bvv_digest, vnummers, fetch)

    def _subgraph_loader(
        self, client: CoaClient | IndClient, registry: str, digest: str
    ) -> Callable[[list[str]], Awaitable[list[Any]]]:
        async def load(vnummers: list[str]) -> list[Any]:
            async def fetch(missing: list[str]) -> dict[str, Any]:
                entities = await client.entities(missing, self._fetch[registry])
                return {v: entities.get(v) or NOT_FOUND for v in missing}

            return await self._cached(registry, digest, vnummers, fetch)

        return load

    async def _load_coa(self, vnummers: list[str]) -> list[Any]:
        return await self._subgraph_loader(self._registries.coa, "COA", self._coa_digest)(vnummers)

    async def _load_ind(self, vnummers: list[str]) -> list[Any]:
        return await self._subgraph_loader(self._registries.ind, "IND", self._ind_digest)(vnummers)

    async def persons(self, vnummers: Sequence[str]) -> list[PersonOutcome]:
        """One outcome per V-nummer, in order."""
        wanted = list(vnummers)
        if not wanted:
            return []
        bvv: list[Any] | None = None
        if self._bvv is not None and self._scope is not None:
            # Scope first: nothing is asked of other registries about persons outside it.
            bvv = list(await self._bvv.load_many(wanted))
            in_scope = [
                v
                for v, b in zip(wanted, bvv, strict=True)
                if isinstance(b, dict) and "__ketenpoort" not in b
            ]
            coa, ind = await asyncio.gather(
                self._maybe(self._coa, in_scope), self._maybe(self._ind, in_scope)
            )
        else:
            bvv_list, coa, ind = await asyncio.gather(
                self._maybe(self._bvv, wanted),
                self._maybe(self._coa, wanted),
                self._maybe(self._ind, wanted),
            )
            bvv = bvv_list[1] if bvv_list is not None else None
        coa_by = dict(zip(coa[0], coa[1], strict=True)) if coa else {}
        ind_by = dict(zip(ind[0], ind[1], strict=True)) if ind else {}
        return [self._combine(i, v, bvv, coa_by, ind_by) for i, v in enumerate(wanted)]

    @staticmethod
    async def _maybe(loader: DataLoader[str, Any] | None, vnummers: list[str]) -> Any:
        if loader is None:
            return None
        values = await loader.load_many(vnummers)
        return (vnummers, list(values))

    def _combine(
        self,
        index: int,
        vnummer: str,
        bvv: list[Any] | None,
        coa: dict[str, Any],
        ind: dict[str, Any],
    ) -> PersonOutcome:
        person: dict[str, Any] = {"vnummer": vnummer}
        failed: set[str] = set()
        known = False
        if bvv is not None:
            value = bvv[index]
            if isinstance(value, _Failed):
                if self._scope is not None:  # scope cannot be checked: nothing of this person
                    return PersonOutcome(vnummer, None, False, frozenset({"BVV"}))
                failed.add("BVV")
            elif value == OUT_OF_SCOPE:
                return PersonOutcome(vnummer, None, True, frozenset())
            elif value == NOT_FOUND:
                return PersonOutcome(vnummer, None, False, frozenset())
            else:
                known = True
                person.update(value)
        for registry, answers in (("COA", coa), ("IND", ind)):
            if registry not in self._fetch:
                continue
            value = answers.get(vnummer)
            if isinstance(value, _Failed):
                failed.add(registry)
            elif isinstance(value, dict) and "__ketenpoort" not in value:
                known = True
                for name in self._top[registry]:
                    person[name] = value.get(name)
            else:
                for name in self._top[registry]:
                    person[name] = None
        for registry in failed:
            error = GatewayError(
                Code.REGISTRY_UNAVAILABLE, f"Registry {registry} is unavailable.", registry=registry
            )
            for name in self._top.get(registry, ()):
                person[name] = error
        if not known and not failed:
            return PersonOutcome(vnummer, None, False, frozenset())
        return PersonOutcome(vnummer, person, False, frozenset(failed))
