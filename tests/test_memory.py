"""Memory stays bounded: nothing of a request outlives it, and the registry cache has a size.

The caches that keep refusals keep no request's frames.

Refusals are computed once and kept (the admission memo per caller and purpose, a plan's root
refusals and refused-field markers). Raising a kept exception object would chain the raising
request's frames onto its traceback — headers, payload, span, fetched records — and keep them
alive with the cache. The soak saw that as RSS growing for as long as new callers were refused.
The canaries are the request's span and its execution state: the frames of the request path
refer to one or the other.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from gateway.assembly.runtime import Running
from gateway.execution import memory_cache
from gateway.execution.context import RequestState
from gateway.execution.memory_cache import MemoryRecords
from gateway.observability.tracing import RequestSpan
from mocks import Registries
from tests.support import caller

LOOKUP = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
SEARCH = """
query($g: String!, $d: Date!) {
  zoekVreemdelingen(geslachtsnaam: $g, geboortedatum: $d) { vnummer etniciteit }
}
"""


def live_requests() -> int:
    """Spans and execution states of requests still reachable."""
    gc.collect()
    return sum(isinstance(o, RequestSpan | RequestState) for o in gc.get_objects())


async def test_refused_purposes_keep_no_request_alive(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Each new officer is a new admission memo entry; the same one is a memo hit."""
    before = live_requests()
    v = {"v": mock_registries.population.vnummer(2)}
    for i in range(6):
        for purpose in ("MENSENHANDEL", "BEZETTING"):
            who = caller(
                gateway,
                tmp_path / "state",
                org="NVIK",
                roles=["analist"],
                purpose=purpose,
                sub=f"medewerker-{i % 3:03d}",
            )
            answer = await who.query(LOOKUP, v)
            assert answer.status == 403, answer.body
    assert live_requests() == before


async def test_refused_fields_keep_no_request_alive(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """A search runs through the executor, which raises the plan's refused-field markers."""
    person = mock_registries.population.person(mock_registries.population.vnummer(5))
    assert person is not None
    variables = {"g": person["naam"]["geslachtsnaam"], "d": person["geboorte"]["datum"]}
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
    before = live_requests()
    for _ in range(4):
        answer = await who.query(SEARCH, variables)
        assert answer.status == 200, answer.body
        rows = answer.body["data"]["zoekVreemdelingen"]
        assert rows and all(row["etniciteit"] is None for row in rows), answer.body
        codes = {e["extensions"]["code"] for e in answer.body["errors"]}
        assert codes == {"FIELD_NOT_PERMITTED"}, answer.body
    assert live_requests() == before


# --- the in-process registry cache: bounded in count and in time ------------------------------


async def test_memory_cache_keeps_at_most_its_bound_oldest_out() -> None:
    cache = MemoryRecords(ttl=60.0, max_entries=3)
    for i in range(5):
        await cache.multi_set([(f"k{i}", {"i": i})], ttl=60.0)
    assert len(cache) == 3
    assert await cache.multi_get(["k0", "k1", "k2", "k3", "k4"]) == [
        None,
        None,
        {"i": 2},
        {"i": 3},
        {"i": 4},
    ]
    # A renewed entry moves to the back: the next one in goes past it.
    await cache.multi_set([("k2", {"i": 22})])
    await cache.multi_set([("k5", {"i": 5})])
    assert await cache.multi_get(["k2", "k3", "k5"]) == [{"i": 22}, None, {"i": 5}]
    await cache.close()
    assert len(cache) == 0


async def test_memory_cache_never_serves_an_expired_entry_and_empties_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory_cache, "SWEEP_RESOLUTION_S", 0.01)
    cache = MemoryRecords(ttl=0.05, max_entries=100)
    await cache.multi_set([("a", 1), ("b", 2)])
    assert await cache.multi_get(["a", "b", "c"]) == [1, 2, None]
    await asyncio.sleep(0.06)
    assert await cache.multi_get(["a", "b"]) == [None, None]  # expired: a miss at once
    for _ in range(100):  # and gone from memory soon after, with no request to sweep it
        if not len(cache):
            break
        await asyncio.sleep(0.01)
    assert len(cache) == 0
    await cache.close()


async def test_memory_cache_has_one_lifetime() -> None:
    cache = MemoryRecords(ttl=60.0, max_entries=10)
    with pytest.raises(ValueError, match=r"60\.0 s"):
        await cache.multi_set([("a", 1)], ttl=5.0)
    with pytest.raises(ValueError, match="positive TTL"):
        MemoryRecords(ttl=0.0, max_entries=10)
    with pytest.raises(ValueError, match="room for one entry"):
        MemoryRecords(ttl=1.0, max_entries=0)
