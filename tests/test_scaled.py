"""Scale-out: two real gateway processes sharing Redis (quota, cache) and PostgreSQL (audit).

Both processes run ``ketenpoort serve`` on loopback ports with the same state directory (so the
same development key and pseudonym key), KETENPOORT_QUOTA_STORE and KETENPOORT_CACHE on the local
Redis, and KETENPOORT_AUDIT_STORE on a fresh PostgreSQL database. The Redis quota key prefix is
not configurable, so every run uses fresh officer ids (``sub``) instead.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bench.cluster import Cluster as ProcessCluster
from bench.cluster import ClusterError
from bench.harness import free_port
from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.policy_file import load_policy
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.audit.stores import open_store
from gateway.cli.main import app as cli_app
from gateway.cli.policy import gateway_coordinates
from gateway.config import DEFAULT_POLICY, Settings
from gateway.policy.model import Policy
from mocks import Population
from tests.support import REDIS_URL, drop_database, fresh_database, require_redis

REPO = Path(__file__).resolve().parent.parent
LIST_QUERY = "query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer naam { geslachtsnaam } } }"
START_TIMEOUT_S = 45.0


@dataclass
class Cluster:
    """Two running gateway processes (:mod:`bench.cluster`) and what the tests need of them."""

    run: ProcessCluster
    policy: Policy
    population: Population

    @property
    def urls(self) -> list[str]:
        return self.run.urls

    @property
    def state(self) -> Path:
        return self.run.state

    @property
    def audit_url(self) -> str:
        return self.run.audit_url

    def token(self, sub: str, purpose: str) -> str:
        settings = Settings()
        return mint_dev_token(
            load_or_create_dev_key(self.state),
            issuer=settings.issuer,
            audience=settings.audience,
            subject=sub,
            oin=self.policy.organisations["NVIK"].oin,
            organisation="NVIK",
            roles=["analist"],
            purposes=[purpose],
        )

    def headers(self, sub: str, purpose: str) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self.token(sub, purpose)}",
            "x-doelbinding": purpose,
            "x-verwerking": self.policy.purposes[purpose].processing_activities[0],
        }

    def log_tail(self) -> str:
        return self.run.log_tail()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    asyncio.run(require_redis())
    audit_url, database = asyncio.run(fresh_database())
    base = tmp_path_factory.mktemp("scaled")
    run = ProcessCluster.start(
        base, ports=[free_port(), free_port()], audit_url=audit_url, redis_url=REDIS_URL
    )
    try:
        try:
            run.wait_ready(START_TIMEOUT_S)
        except ClusterError as exc:
            raise AssertionError(str(exc)) from exc
        yield Cluster(run, load_policy(DEFAULT_POLICY, gateway_coordinates()), Population())
    finally:
        run.stop()
        asyncio.run(drop_database(database))


def officer(label: str) -> str:
    return f"scaled-{label}-{secrets.token_hex(6)}"


async def lookup(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], numbers: list[str]
) -> httpx.Response:
    return await client.post(
        f"{url}/graphql", json={"query": LIST_QUERY, "variables": {"v": numbers}}, headers=headers
    )


def persons(body: dict[str, Any]) -> int:
    return sum(1 for p in (body.get("data") or {}).get("vreemdelingen") or [] if p is not None)


async def officer_records(cluster: Cluster, sub: str) -> list[AuditRecord]:
    store = open_store(cluster.audit_url)
    await store.open()
    try:
        return await store.search(AuditQuery(officer=sub, limit=1_000_000))
    finally:
        await store.close()


async def test_quota_used_on_one_process_is_used_on_the_other(cluster: Cluster) -> None:
    purpose = cluster.policy.purposes["STRAFVORDERING"]
    quota, cap = purpose.quota_per_day, purpose.max_subjects
    assert quota % cap == 0
    sub = officer("a")
    headers = cluster.headers(sub, "STRAFVORDERING")
    first, second = cluster.urls
    numbers = [cluster.population.vnummer(i) for i in range(quota)]
    async with httpx.AsyncClient(timeout=10.0) as client:
        for start in range(0, quota, cap):
            answer = await lookup(client, first, headers, numbers[start : start + cap])
            assert answer.status_code == 200, answer.text
            assert persons(answer.json()) == cap

        refused = await lookup(client, second, headers, numbers[:1])
        assert refused.status_code == 429, refused.text
        assert "data" not in refused.json()  # refused before execution
        assert refused.json()["errors"][0]["extensions"]["code"] == "QUOTA_EXCEEDED"
        assert int(refused.headers["retry-after"]) >= 1
        again = await lookup(client, first, headers, numbers[:1])
        assert again.status_code == 429, again.text

        other = await lookup(
            client, second, cluster.headers(officer("b"), "STRAFVORDERING"), numbers[:1]
        )
        assert other.status_code == 200 and persons(other.json()) == 1, other.text

    records = await officer_records(cluster, sub)
    refusals = [r for r in records if r.data_subject_id is None]
    assert [r.reason for r in refusals] == ["QUOTA_EXCEEDED", "QUOTA_EXCEEDED"]
    assert len({r.trace_id for r in records if r.data_subject_id}) == quota // cap


async def test_load_across_both_processes_grants_exactly_the_quota(cluster: Cluster) -> None:
    purpose = cluster.policy.purposes["TOEZICHT_VW"]
    quota = purpose.quota_per_day
    requests, concurrency, sizes = 400, 20, (1, 2, 3)
    assert sum(sizes[i % len(sizes)] for i in range(requests)) > 2 * quota, "demand must exceed it"
    sub = officer("load")
    headers = cluster.headers(sub, "TOEZICHT_VW")
    gate = asyncio.Semaphore(concurrency)
    results: list[tuple[int, int, int, int]] = []  # (process, status, asked, persons)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        size = sizes[i % len(sizes)]
        numbers = [cluster.population.vnummer((i * 3 + k) % 5000) for k in range(size)]
        process = i % 2
        async with gate:
            answer = await lookup(client, cluster.urls[process], headers, numbers)
        body = answer.json()
        results.append(
            (process, answer.status_code, size, persons(body) if answer.status_code == 200 else 0)
        )
        if answer.status_code == 429:
            assert (
                "data" not in body and body["errors"][0]["extensions"]["code"] == "QUOTA_EXCEEDED"
            )

    began = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=15.0, limits=limits) as client:
        async with asyncio.timeout(60):
            await asyncio.gather(*(one(client, i) for i in range(requests)))
    elapsed = time.monotonic() - began

    statuses = Counter(status for _, status, _, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    assert all(p == asked for _, status, asked, p in results if status == 200), "whole answers only"
    granted = sum(p for _, status, _, p in results if status == 200)
    assert granted == quota, f"{granted} persons granted for a quota of {quota} ({statuses})"
    assert {process for process, status, _, _ in results if status == 200} == {0, 1}
    print(f"\n{requests} requests in {elapsed:.2f} s: {dict(statuses)}")

    # Both processes wrote to one trail: every request is on it, and the chain is linear.
    records = await officer_records(cluster, sub)
    refused_requests = {r.trace_id for r in records if r.data_subject_id is None}
    assert all(r.reason == "QUOTA_EXCEEDED" for r in records if r.data_subject_id is None)
    assert len(refused_requests) == statuses[429]
    assert len({r.trace_id for r in records if r.data_subject_id is not None}) == statuses[200]
    given_subject_fields = [
        r for r in records if r.data_subject_id and r.decision is Decision.GIVEN
    ]
    assert len({(r.trace_id, r.data_subject_id) for r in given_subject_fields}) == quota

    env = {"KETENPOORT_AUDIT_STORE": cluster.audit_url, "KETENPOORT_STATE": str(cluster.state)}
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, ["audit", "verify"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK"), result.output
