"""The audit stores against real servers: SQLite files and the PostgreSQL at 127.0.0.1:5432.

Every PostgreSQL test gets a fresh, uniquely named database, dropped afterwards. An unreachable
server fails the test with the server's address; it is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg
import pytest

from gateway.audit.chain import GENESIS_HASH, record_hash
from gateway.audit.model import (
    AccessContext,
    AuditBatch,
    AuditQuery,
    AuditRecord,
    Decision,
    FieldDecision,
    SubjectAccess,
)
from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.store import AuditStore, AuditUnavailable, open_store
from gateway.pseudonym import Pseudonymizer

PG_BASE = os.environ.get("KETENPOORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
OIN = "00000001234567890000"
PSEUDO = Pseudonymizer(b"k" * 32)

DECISIONS = (
    FieldDecision("Vreemdeling.vnummer", "persoon.vnummer", Decision.GIVEN, "R1", "BVV"),
    FieldDecision("Naam.geslachtsnaam", "persoon.naam.geslachtsnaam", Decision.GIVEN, "R1", "BVV"),
    FieldDecision(
        "Vreemdeling.religie", "persoon.religie", Decision.REFUSED, "FIELD_NOT_PERMITTED", None
    ),
    FieldDecision(
        "Vreemdeling.opvang", "persoon.opvang", Decision.ERROR, "REGISTRY_UNAVAILABLE", "COA"
    ),
)


def vnummer(i: int) -> str:
    return f"{1_000_000_000 + i}"


def context(
    officer: str = "agent-7", organisation: str = "NVIK", purpose: str = "TOEZICHT_VW"
) -> AccessContext:
    return AccessContext(
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        parent_span_id=secrets.token_hex(8),
        start_time=dt.datetime.now(dt.UTC),
        organisation_oin=OIN,
        organisation=organisation,
        officer=officer,
        roles=("analist", "toezicht"),
        purpose=purpose,
        legal_basis="Vw 2000 art. 107",
        processing_activity="https://ketenpoort.example/verwerkingen/toezicht",
        policy_version="ab" * 32,
    )


def batch(subjects: int = 2, request_decisions: int = 1, **ctx: str) -> AuditBatch:
    c = context(**ctx)
    return AuditBatch(
        context=c,
        end_time=c.start_time + dt.timedelta(milliseconds=12),
        subjects=[SubjectAccess(PSEUDO(vnummer(i)), DECISIONS) for i in range(subjects)],
        request_decisions=[FieldDecision("Query", "", Decision.REFUSED, "TOO_MANY_SUBJECTS", None)]
        * request_decisions,
    )


# ---- servers ----------------------------------------------------------------------------


async def _admin() -> asyncpg.Connection:
    server = urlsplit(PG_BASE).netloc.rsplit("@", 1)[-1]
    try:
        return await asyncio.wait_for(asyncpg.connect(PG_BASE), timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL test server {server} (KETENPOORT_TEST_POSTGRES) is unreachable: {exc}"
        )


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A fresh database on the test server (its URL); dropped afterwards."""
    name = f"ketenpoort_test_{secrets.token_hex(6)}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(PG_BASE)._replace(path=f"/{name}"))
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Backend:
    """A store under test and a raw SQL door into its database (the tamperer's view)."""

    kind: str
    url: str
    sql: Callable[[str], Awaitable[None]]


def _sqlite_backend(path: Path) -> Backend:
    async def sql(statement: str) -> None:
        async with aiosqlite.connect(path) as conn:
            await conn.execute(statement)
            await conn.commit()

    return Backend("sqlite", f"sqlite:///{path}", sql)


def _pg_backend(url: str) -> Backend:
    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    return Backend("postgresql", url, sql)


@pytest.fixture(params=["sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield _sqlite_backend(tmp_path / "audit.db")
        return
    async with fresh_pg_database() as url:
        yield _pg_backend(url)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[AuditStore]:
    s = open_store(backend.url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def all_records(store: AuditStore) -> list[AuditRecord]:
    return await store.search(AuditQuery(limit=1_000_000))


# ---- tests --------------------------------------------------------------------------------


async def test_round_trip_expands_batch_into_records(store: AuditStore) -> None:
    b = batch(subjects=2, request_decisions=1)
    await store.commit(b)
    records = await all_records(store)
    assert len(records) == b.record_count() == 2 * len(DECISIONS) + 1
    assert [r.seq for r in records] == list(range(1, len(records) + 1))

    ctx = b.context
    first = records[0]
    assert first.data_subject_id == PSEUDO(vnummer(0))
    assert first.data_subject_id_type == "vnummer"
    assert first.trace_id == ctx.trace_id
    assert first.span_id == ctx.span_id
    assert first.parent_span_id == ctx.parent_span_id
    assert first.start_time == ctx.start_time
    assert first.end_time == b.end_time
    assert first.organisation_oin == OIN
    assert first.organisation == "NVIK"
    assert first.officer == "agent-7"
    assert first.roles == ("analist", "toezicht")
    assert first.purpose == "TOEZICHT_VW"
    assert first.legal_basis == "Vw 2000 art. 107"
    assert first.processing_activity_id == ctx.processing_activity
    assert first.policy_version == ctx.policy_version
    assert (first.coordinate, first.path, first.decision, first.reason, first.registry) == (
        "Vreemdeling.vnummer",
        "persoon.vnummer",
        Decision.GIVEN,
        "R1",
        "BVV",
    )
    assert [r.status for r in records[:4]] == ["OK", "OK", "ERROR", "ERROR"]
    assert records[2].registry is None
    assert records[2].reason == "FIELD_NOT_PERMITTED"
    last = records[-1]
    assert last.data_subject_id is None
    assert last.data_subject_id_type is None
    assert last.coordinate == "Query"
    assert last.path == ""

    now = dt.datetime.now(dt.UTC)
    assert all(r.recorded_at.tzinfo is not None for r in records)
    assert all(abs((now - r.recorded_at).total_seconds()) < 60 for r in records)
    assert records[0].prev_hash == GENESIS_HASH
    for prev, rec in itertools.pairwise(records):
        assert rec.prev_hash == prev.hash
    assert all(record_hash(r) == r.hash for r in records)


async def test_search_filters(store: AuditStore) -> None:
    await store.commit(batch(subjects=1, request_decisions=0))
    await store.commit(batch(subjects=2, request_decisions=0, officer="other", organisation="COA"))
    await store.commit(batch(subjects=0, request_decisions=1, purpose="ANALYSE"))
    n = len(DECISIONS)

    by_subject = await store.search(AuditQuery(subject=PSEUDO(vnummer(1))))
    assert len(by_subject) == n
    assert {r.officer for r in by_subject} == {"other"}
    assert len(await store.search(AuditQuery(subject=PSEUDO(vnummer(0))))) == 2 * n
    assert len(await store.search(AuditQuery(officer="other"))) == 2 * n
    assert len(await store.search(AuditQuery(organisation="COA"))) == 2 * n
    assert len(await store.search(AuditQuery(organisation=OIN))) == 3 * n + 1
    assert len(await store.search(AuditQuery(purpose="ANALYSE"))) == 1
    everything = await all_records(store)
    trace = everything[0].trace_id
    assert {r.seq for r in await store.search(AuditQuery(trace_id=trace))} == set(range(1, n + 1))
    both = await store.search(AuditQuery(officer="other", subject=PSEUDO(vnummer(0))))
    assert len(both) == n

    limited = await store.search(AuditQuery(limit=3))
    assert [r.seq for r in limited] == [1, 2, 3]
    page = await store.search(AuditQuery(limit=3, after_seq=3))
    assert [r.seq for r in page] == [4, 5, 6]

    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert await store.search(AuditQuery(since=future)) == []
    assert len(await store.search(AuditQuery(since=past, until=future))) == len(everything)
    assert await store.search(AuditQuery(until=past)) == []
    with pytest.raises(ValueError, match="limit"):
        await store.search(AuditQuery(limit=0))


async def test_verify_detects_an_altered_row(store: AuditStore, backend: Backend) -> None:
    for _ in range(3):
        await store.commit(batch())
    ok = await store.verify()
    assert (ok.ok, ok.checked, ok.first_broken_seq) == (True, 27, None), ok

    await backend.sql("UPDATE audit_record SET officer = 'mallory' WHERE seq = 14")
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 14), broken
    assert "14" in broken.detail


async def test_verify_detects_deleted_rows(store: AuditStore, backend: Backend) -> None:
    for _ in range(2):
        await store.commit(batch())
    await backend.sql("DELETE FROM audit_record WHERE seq = 5")
    result = await store.verify()
    assert (result.ok, result.first_broken_seq) == (False, 5), result

    await backend.sql("DELETE FROM audit_record WHERE seq >= 5")
    result = await store.verify()  # a cut-off tail: the head still knows seq 18
    assert (result.ok, result.first_broken_seq) == (False, 5), result


async def test_missing_table_fails_commit_until_restored(
    store: AuditStore, backend: Backend
) -> None:
    await store.commit(batch())
    await backend.sql("ALTER TABLE audit_record RENAME TO audit_record_gone")
    with pytest.raises(AuditUnavailable) as info:
        await store.commit(batch())
    assert info.value.code.value == "AUDIT_UNAVAILABLE"
    with pytest.raises(AuditUnavailable):
        await store.search(AuditQuery())
    assert not await store.ready()
    # The store must not recreate the table behind the tamperer's back.
    with pytest.raises(AuditUnavailable):
        await store.commit(batch())

    await backend.sql("ALTER TABLE audit_record_gone RENAME TO audit_record")
    await store.commit(batch())
    assert await store.ready()
    records = await all_records(store)
    assert len(records) == 18
    assert [r.seq for r in records] == list(range(1, 19))
    assert (await store.verify()).ok


async def test_failed_group_commits_nothing_of_any_batch(
    store: AuditStore, backend: Backend
) -> None:
    await store.commit(batch())
    await backend.sql("ALTER TABLE audit_record RENAME TO audit_record_gone")
    results = await asyncio.wait_for(
        asyncio.gather(*(store.commit(batch()) for _ in range(8)), return_exceptions=True),
        timeout=30,
    )
    assert all(isinstance(r, AuditUnavailable) for r in results)
    await backend.sql("ALTER TABLE audit_record_gone RENAME TO audit_record")
    assert len(await all_records(store)) == 9
    assert (await store.verify()).ok


async def test_raw_vnummer_and_naive_times_are_refused(store: AuditStore) -> None:
    raw = batch(subjects=0, request_decisions=0)
    raw.subjects.append(SubjectAccess("1234567890", DECISIONS))
    with pytest.raises(AuditUnavailable, match="pseudonym"):
        await store.commit(raw)
    naive = batch()
    naive.end_time = dt.datetime(2025, 1, 1, 12, 0)
    with pytest.raises(AuditUnavailable, match="naive"):
        await store.commit(naive)
    assert await all_records(store) == []
    assert (await store.verify()).ok


async def test_purge_removes_old_records_and_records_itself(store: AuditStore) -> None:
    old = batch()
    await store.commit(old)
    await asyncio.sleep(1.5)
    young = batch()
    await store.commit(young)

    who = context(officer="fg-officer", organisation="KETENPOORT")
    deleted = await store.purge(dt.timedelta(seconds=0.75), who)
    assert deleted == old.record_count()
    records = await all_records(store)
    assert records[0].seq == old.record_count() + 1
    assert {r.trace_id for r in records[:-1]} == {young.context.trace_id}
    purge = records[-1]
    assert (purge.coordinate, purge.decision, purge.reason) == (
        "Audit.purge",
        Decision.GIVEN,
        "RETENTION_PURGE",
    )
    assert purge.data_subject_id is None
    assert purge.officer == "fg-officer"
    assert (await store.verify()).ok

    # The chain goes on after a purge, and a purge of everything leaves a valid anchor.
    await store.commit(batch())
    assert (await store.verify()).ok
    await asyncio.sleep(0.01)
    everything = len(await all_records(store))
    assert await store.purge(dt.timedelta(microseconds=1), who) == everything
    remaining = await all_records(store)
    assert [r.coordinate for r in remaining] == ["Audit.purge"]
    result = await store.verify()
    assert (result.ok, result.checked) == (True, 1), result
    assert await store.purge(dt.timedelta(days=365), who) == 0
    assert (await store.verify()).ok


async def test_concurrent_commits_form_one_linear_chain(store: AuditStore) -> None:
    tasks, per_task = 16, 10

    async def worker(n: int) -> None:
        for _ in range(per_task):
            await store.commit(batch(subjects=1 + n % 3, request_decisions=n % 2))

    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(tasks))), timeout=60)
    expected = per_task * sum((1 + n % 3) * len(DECISIONS) + n % 2 for n in range(tasks))
    records = await all_records(store)
    assert len(records) == expected
    assert [r.seq for r in records] == list(range(1, expected + 1))
    result = await store.verify()
    assert (result.ok, result.checked) == (True, expected), result
    # Group commit: 160 concurrent batches did not need 160 transactions.
    assert len({r.recorded_at for r in records}) < tasks * per_task


async def test_large_batch_commits(store: AuditStore) -> None:
    # A 50-person request with ~70 decisions each: ~3,500 records in one batch.
    decisions = tuple(
        FieldDecision(f"T.f{i}", f"p.f{i}", Decision.GIVEN, "R", "BVV") for i in range(70)
    )
    b = batch(subjects=0, request_decisions=0)
    b.subjects = [SubjectAccess(PSEUDO(vnummer(i)), decisions) for i in range(50)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(store.commit(b), timeout=30)
    elapsed = loop.time() - started
    assert len(await all_records(store)) == 3_500
    assert (await store.verify()).ok
    assert elapsed < 10, f"3,500 records took {elapsed:.2f}s"


async def test_reopen_is_idempotent_and_keeps_the_chain(backend: Backend) -> None:
    first = open_store(backend.url)
    await first.open()
    await first.open()
    await first.commit(batch())
    await first.close()
    assert not await first.ready()
    with pytest.raises(AuditUnavailable):
        await first.commit(batch())

    second = open_store(backend.url)
    await second.open()
    try:
        await second.commit(batch())
        records = await all_records(second)
        assert [r.seq for r in records] == list(range(1, 19))
        assert (await second.verify()).ok
        assert await second.ready()
    finally:
        await second.close()


async def test_two_postgres_stores_keep_one_chain() -> None:
    async with fresh_pg_database() as url:
        stores = [PostgresAuditStore(url), PostgresAuditStore(url)]
        await asyncio.gather(*(s.open() for s in stores))
        try:

            async def worker(s: AuditStore) -> None:
                for _ in range(15):
                    await s.commit(batch(subjects=1))

            await asyncio.wait_for(
                asyncio.gather(*(worker(stores[n % 2]) for n in range(8))), timeout=60
            )
            expected = 8 * 15 * (len(DECISIONS) + 1)
            for s in stores:
                result = await s.verify()
                assert (result.ok, result.checked) == (True, expected), result
        finally:
            await asyncio.gather(*(s.close() for s in stores))


async def test_memory_store_works() -> None:
    s = open_store("sqlite:///:memory:")
    await s.open()
    try:
        await asyncio.gather(*(s.commit(batch()) for _ in range(5)))
        assert len(await all_records(s)) == 45
        assert (await s.verify()).ok
    finally:
        await s.close()


def test_open_store_rejects_unknown_urls() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_store("mysql://secret@host/db")
    with pytest.raises(ValueError, match="no path"):
        open_store("sqlite:///")


async def test_unreachable_postgres_is_audit_unavailable() -> None:
    s = open_store("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(AuditUnavailable):
        await asyncio.wait_for(s.open(), timeout=30)


async def test_open_refuses_to_recreate_a_vanished_records_table(backend: Backend) -> None:
    s = open_store(backend.url)
    await s.open()
    await s.commit(batch())
    await s.close()
    await backend.sql("ALTER TABLE audit_record RENAME TO audit_record_gone")
    again = open_store(backend.url)
    with pytest.raises(AuditUnavailable, match="missing"):
        await again.open()
    await again.close()
    await backend.sql("ALTER TABLE audit_record_gone RENAME TO audit_record")
    restored = open_store(backend.url)
    await restored.open()
    try:
        assert (await restored.verify()).ok
    finally:
        await restored.close()


async def test_postgres_store_reconnects_after_its_connections_are_killed() -> None:
    async with fresh_pg_database() as url:
        s = PostgresAuditStore(url)
        await s.open()
        try:
            await s.commit(batch())
            name = urlsplit(url).path.lstrip("/")
            admin = await _admin()
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await admin.close()
            landed = False
            for _ in range(3):  # the first try may meet a dead connection; then it reconnects
                try:
                    await s.commit(batch())
                except AuditUnavailable:
                    continue
                landed = True
                break
            assert landed
            assert (await s.verify()).ok
        finally:
            await s.close()
