"""Per-request fetching of persons: through the cache, one batched call per registry.

Every person an operation names (all root fields and aliases together) is fetched in one go
before execution. The cache is asked once for every registry; what it lacks goes to one
DataLoader per registry, so 150 aliased look-ups or a list of 50 V-nummers become at most one
call per registry. The projection is the plan's fetch set: refused and unselected fields are
never asked for. With a row scope the BVV is asked first (it checks the scope at the source) and
the other registries only about persons within it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from strawberry.dataloader import DataLoader

from gateway.errors import Code, GatewayError
from gateway.execution.cache import RecordCache, field_set_digest
from gateway.planning.plan import RequestPlan
from resolvers import BvvClient, CoaClient, IndClient, RegistryUnavailable

#: Outcomes other than a record (JSON-able: they are cached in Redis too).
NOT_FOUND: dict[str, str] = {"__ketenpoort": "not_found"}
OUT_OF_SCOPE: dict[str, str] = {"__ketenpoort": "out_of_scope"}
REGISTRIES = ("BVV", "COA", "IND")


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


@lru_cache(maxsize=4096)
def _digest(fields: frozenset[str], scope: str) -> str:
    return field_set_digest(fields, scope)


class PersonFetcher:
    """Loads persons for one request, per the request's plan and the purpose's scope."""

    def __init__(
        self,
        registries: Registries,
        cache: RecordCache,
        plan: RequestPlan,
        scope: dict[str, Any] | None,
        pseudonym: Callable[[str], str],
    ) -> None:
        self._registries = registries
        self._cache = cache
        self._fetch = plan.fetch
        self._top = plan.top_fields
        self._scope = scope
        self._pseudonym = pseudonym
        asked = [r for r in REGISTRIES if r in plan.fetch]
        if "BVV" not in asked and (scope is not None or not asked):
            # The BVV checks the row scope, and says whether a person exists when nothing
            # else is asked (a query for the V-nummer only).
            asked.insert(0, "BVV")
        self._asked = tuple(asked)
        scope_text = repr(sorted(scope.items())) if scope else ""
        self._digests = {
            r: _digest(plan.fetch.get(r, frozenset()), scope_text if r == "BVV" else "")
            for r in asked
        }
        self._loaders: dict[str, DataLoader[str, Any]] = {}

    # ---- registry calls (through DataLoaders, for what the cache lacks) --------------------

    def _loader(self, registry: str) -> DataLoader[str, Any]:
        loader = self._loaders.get(registry)
        if loader is None:
            loader = DataLoader(self._batch_function(registry))
            self._loaders[registry] = loader
        return loader

    def _batch_function(self, registry: str) -> Callable[[list[str]], Any]:
        async def load(vnummers: list[str]) -> list[Any]:
            try:
                if registry == "BVV":
                    answer = await self._registries.bvv.persons(
                        vnummers, self._fetch.get("BVV", ()), self._scope
                    )
                    return [
                        answer.records.get(v)
                        or (OUT_OF_SCOPE if v in answer.out_of_scope else NOT_FOUND)
                        for v in vnummers
                    ]
                client = self._registries.coa if registry == "COA" else self._registries.ind
                entities = await client.entities(vnummers, self._fetch[registry])
                return [entities.get(v) or NOT_FOUND for v in vnummers]
            except RegistryUnavailable as error:
                failed = _Failed(error)
                return [failed] * len(vnummers)

        return load

    async def _values(
        self, registries: Iterable[str], vnummers: Sequence[str]
    ) -> dict[str, list[Any]]:
        """Per registry, one value per V-nummer: one cache read for all, loaders for misses."""
        registries = list(registries)
        if not registries or not vnummers:
            return {r: [] for r in registries}
        pseudonyms = [self._pseudonym(v) for v in vnummers]
        keys = [RecordCache.key(r, self._digests[r], p) for r in registries for p in pseudonyms]
        epoch = self._cache.epoch  # a purge from here on keeps these records out of the cache
        found = await self._cache.get_many(keys)
        n = len(vnummers)
        values = {r: found[i * n : (i + 1) * n] for i, r in enumerate(registries)}
        misses = {r: [i for i, value in enumerate(vs) if value is None] for r, vs in values.items()}
        misses = {r: m for r, m in misses.items() if m}
        if misses:
            loaded = await asyncio.gather(
                *(self._loader(r).load_many([vnummers[i] for i in m]) for r, m in misses.items())
            )
            fresh: list[tuple[str, Any]] = []
            for (registry, indices), answers in zip(misses.items(), loaded, strict=True):
                column = values[registry]
                offset = registries.index(registry) * n
                for i, answer in zip(indices, answers, strict=True):
                    column[i] = answer
                    if not isinstance(answer, _Failed):
                        fresh.append((keys[offset + i], answer))
            await self._cache.set_many(fresh, epoch)
        return values

    # ---- persons ---------------------------------------------------------------------------

    async def persons(self, vnummers: Sequence[str]) -> list[PersonOutcome]:
        """One outcome per V-nummer, in order."""
        wanted = list(vnummers)
        if not wanted:
            return []
        if self._scope is not None:
            # Scope first: nothing is asked of other registries about persons outside it.
            bvv = (await self._values(("BVV",), wanted))["BVV"]
            in_scope = [
                v
                for v, b in zip(wanted, bvv, strict=True)
                if isinstance(b, dict) and "__ketenpoort" not in b
            ]
            others = await self._values([r for r in self._asked if r != "BVV"], in_scope)
            by_registry = {r: dict(zip(in_scope, vs, strict=True)) for r, vs in others.items()}
            by_registry["BVV"] = dict(zip(wanted, bvv, strict=True))
        else:
            values = await self._values(self._asked, wanted)
            by_registry = {r: dict(zip(wanted, vs, strict=True)) for r, vs in values.items()}
        return [self._combine(v, by_registry) for v in wanted]

    def _combine(self, vnummer: str, by_registry: dict[str, dict[str, Any]]) -> PersonOutcome:
        person: dict[str, Any] = {"vnummer": vnummer}
        failed: list[str] = []
        known = False
        bvv = by_registry.get("BVV")
        if bvv is not None:
            value = bvv[vnummer]
            if isinstance(value, _Failed):
                if self._scope is not None:  # scope cannot be checked: nothing of this person
                    return PersonOutcome(vnummer, None, False, frozenset(("BVV",)))
                failed.append("BVV")
            elif value == OUT_OF_SCOPE:
                return PersonOutcome(vnummer, None, True, frozenset())
            elif value == NOT_FOUND:
                return PersonOutcome(vnummer, None, False, frozenset())
            else:
                known = True
                person.update(value)
        for registry in ("COA", "IND"):
            answers = by_registry.get(registry)
            if answers is None:
                continue
            value = answers[vnummer]
            fields = self._top[registry]
            if isinstance(value, _Failed):
                failed.append(registry)
            elif "__ketenpoort" not in value:
                known = True
                for name in fields:
                    person[name] = value.get(name)
            else:
                for name in fields:
                    person[name] = None
        if not failed:
            return PersonOutcome(vnummer, person if known else None, False, frozenset())
        for registry in failed:
            error = GatewayError(
                Code.REGISTRY_UNAVAILABLE, f"Registry {registry} is unavailable.", registry=registry
            )
            for name in self._top.get(registry, ()):
                person[name] = error
        return PersonOutcome(vnummer, person, False, frozenset(failed))
