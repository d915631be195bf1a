"""What every variant shares: the caller, the policy copy, the query, the population, the clock."""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway.assembly.policy_file import load_policy
from gateway.config import DEFAULT_POLICY
from gateway.execution.schema import graphql_schema, schema_coordinates
from gateway.policy.model import Grant, Policy
from mocks import Population

#: The caller of every variant: DT&V's regievoerder, purpose TERUGKEER (BVV + COA + IND fields,
#: up to 50 persons per request in the approved policy).
ORGANISATION = "DTV"
ROLES: tuple[str, ...] = ("regievoerder",)
PURPOSE = "TERUGKEER"
PERSON_TYPE = "Vreemdeling"
ROOT_FIELD = "vreemdelingen"

#: Raised in the benchmark's policy copy only: the daily quota (the memory quota store counts
#: persons per officer per day) and the per-request cap (for the growth curve up to 100 persons).
BENCH_QUOTA = 1_000_000_000_000
BENCH_CAP = 100

POSTGRES_URL = os.environ.get(
    "KETENPOORT_BENCH_POSTGRES",
    os.environ.get("KETENPOORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
)


def bench_policy(directory: Path, *, quota: int = BENCH_QUOTA, cap: int = BENCH_CAP) -> Path:
    """A copy of the default policy with TERUGKEER's quota and cap raised (nothing else)."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    start = text.index("  - id: TERUGKEER\n")
    end = text.index("\n  - id:", start + 1)
    block = text[start:end]
    block, n_cap = re.subn(
        r"max_personen_per_verzoek: \d+", f"max_personen_per_verzoek: {cap}", block, count=1
    )
    block, n_quota = re.subn(
        r"quotum_per_medewerker_per_dag: \d+",
        f"quotum_per_medewerker_per_dag: {quota}",
        block,
        count=1,
    )
    if n_cap != 1 or n_quota != 1:
        raise RuntimeError("policy/ketenbeleid.yaml: TERUGKEER has no cap or quota to raise")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ketenbeleid-bench.yaml"
    path.write_text(text[:start] + block + text[end:], encoding="utf-8")
    return path


def coordinates() -> dict[str, str]:
    """The gateway schema's coordinates (``Type.field`` → named type)."""
    return schema_coordinates(graphql_schema())


def load_bench_policy(path: Path) -> Policy:
    policy = load_policy(path, coordinates())
    purpose = policy.purposes[PURPOSE]
    if purpose.quota_per_day < BENCH_QUOTA // 2 or purpose.max_subjects < 50:
        raise RuntimeError(f"{path}: TERUGKEER quota/cap were not raised")
    return policy


def grant_of(policy: Policy) -> Grant:
    return policy.grant(ORGANISATION, ROLES, PURPOSE)


def selection(grant_allowed: frozenset[str], coords: Mapping[str, str], type_name: str) -> str:
    """Every field of ``type_name`` (recursively) the grant allows, as a selection set."""
    parts: list[str] = []
    prefix = type_name + "."
    for coordinate, named in coords.items():
        if not coordinate.startswith(prefix) or coordinate not in grant_allowed:
            continue
        name = coordinate[len(prefix) :]
        if any(c.startswith(named + ".") for c in coords):  # an object type: recurse
            inner = selection(grant_allowed, coords, named)
            if inner:
                parts.append(f"{name} {inner}")
        else:
            parts.append(name)
    return "{ " + " ".join(parts) + " }" if parts else ""


def full_query(policy: Policy) -> str:
    """One document for every size: all the fields TERUGKEER allows, persons by variable."""
    grant = grant_of(policy)
    coords = coordinates()
    if f"Query.{ROOT_FIELD}" not in grant.allowed:
        raise RuntimeError(f"{PURPOSE} does not allow Query.{ROOT_FIELD}")
    inner = selection(grant.allowed, coords, PERSON_TYPE)
    return f"query Terugkeer($v: [ID!]!) {{ {ROOT_FIELD}(vnummers: $v) {inner} }}"


def count_fields(value: Any) -> int:
    """Resolved fields in a response's ``data``: every key of every object, nested."""
    if isinstance(value, dict):
        return sum(1 + count_fields(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_fields(v) for v in value)
    return 0


@dataclass(frozen=True, slots=True)
class Dataset:
    """The in-memory registry data all variants serve: one merged record per person."""

    population: Population
    records: dict[str, dict[str, Any]]

    def vnummers(self, n: int, offset: int = 0) -> list[str]:
        return [self.population.vnummer(i) for i in range(offset, offset + n)]


def dataset(population: Population, size: int) -> Dataset:
    """BVV record + COA + IND parts merged per person, the shape the gateway builds."""
    records: dict[str, dict[str, Any]] = {}
    for i in range(size):
        person = dict(population.bvv_record(i))
        coa = population.coa_record(i)
        ind = population.ind_record(i)
        person["opvang"] = coa["opvang"]
        person["overlastmeldingen"] = coa["overlastmeldingen"]
        person["procedures"] = ind["procedures"]
        records[person["vnummer"]] = person
    return Dataset(population, records)


def payload(query: str, vnummers: list[str]) -> dict[str, Any]:
    return {"query": query, "variables": {"v": vnummers}, "operationName": "Terugkeer"}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover - not Linux
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": cpu_model or platform.processor(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in (
                "strawberry-graphql",
                "graphql-core",
                "opentelemetry-sdk",
                "starlette",
                "uvicorn",
                "httpx",
                "aiosqlite",
                "asyncpg",
                "aiocache",
            )
        },
    }
