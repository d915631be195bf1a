"""Memory stays bounded: nothing of a request outlives it; the heap gives large blocks back.

The caches that keep refusals keep no request's frames.

Refusals are computed once and kept (the admission memo per caller and purpose, a plan's root
refusals and refused-field markers). Raising a kept exception object would chain the raising
request's frames onto its traceback — headers, payload, span, fetched records — and keep them
alive with the cache. The soak saw that as RSS growing for as long as new callers were refused.
The canaries are the request's span and its execution state: the frames of the request path
refer to one or the other.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from gateway.assembly.runtime import Running
from gateway.execution.context import RequestState
from gateway.http import allocator
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


# --- the allocator: large blocks mapped and given back ----------------------------------------


def test_serve_pins_glibcs_mmap_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine runs glibc: the threshold is set; an operator's own value stands."""
    monkeypatch.delenv(allocator.ENV_OVERRIDE, raising=False)
    assert allocator.pin_mmap_threshold() is True
    monkeypatch.setenv(allocator.ENV_OVERRIDE, "262144")
    assert allocator.pin_mmap_threshold() is False
