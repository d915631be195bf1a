"""The audit stores against real servers: SQLite files and the PostgreSQL at 127.0.0.1:5432.

Every PostgreSQL test gets a fresh, uniquely named database, dropped afterwards. An unreachable
server fails the test with the server's address; it is never skipped.

The stores keep one ``audit_entry`` row per request, one ``audit_entry_subject`` row per data
subject and content-addressed ``audit_decision_set`` rows (see :mod:`gateway.audit.chain`); the
tamper tests alter each of them behind the store's back.
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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg
import pytest

from gateway.audit.chain import GENESIS_HASH
from gateway.audit.encoding import decision_set_id, encode_decisions
from gateway.audit.entries import entry_hash, read_entry
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
from gateway.audit.report import search_all
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.audit.stores import open_store
from gateway.audit.writer import GroupCommitStore
from gateway.observability.pseudonym import Pseudonymizer

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
        authenticated_as=officer,
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
    """A store under test and a raw SQL door into its database (the tamperer's view).

    Statements take their parameters as ``{}`` markers (rendered as ``?`` or ``$n``).
    """

    kind: str
    url: str
    sql: Callable[..., Awaitable[None]]
    fetch: Callable[..., Awaitable[list[tuple[Any, ...]]]]

    async def count(self, table: str) -> int:
        rows = await self.fetch(f"SELECT count(*) FROM {table}")  # noqa: S608 (test tables)
        return int(rows[0][0])


def _markers(statement: str, kind: str) -> str:
    n = statement.count("{}")
    marks = ["?"] * n if kind == "sqlite" else [f"${i}" for i in range(1, n + 1)]
    return statement.format(*marks)


def _sqlite_backend(path: Path) -> Backend:
    async def sql(statement: str, *params: Any) -> None:
        async with aiosqlite.connect(path) as conn:
            await conn.execute(_markers(statement, "sqlite"), params)
            await conn.commit()

    async def fetch(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        async with (
            aiosqlite.connect(path) as conn,
            conn.execute(_markers(statement, "sqlite"), params) as cursor,
        ):
            return [tuple(row) for row in await cursor.fetchall()]

    return Backend("sqlite", f"sqlite:///{path}", sql, fetch)


def _pg_backend(url: str) -> Backend:
    async def sql(statement: str, *params: Any) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(_markers(statement, "postgresql"), *params)
        finally:
            await conn.close()

    async def fetch(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(_markers(statement, "postgresql"), *params)
        finally:
            await conn.close()
        return [tuple(row) for row in rows]

    return Backend("postgresql", url, sql, fetch)


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

ENTRY_SELECT = (
    "SELECT seq, trace_id, span_id, parent_span_id, start_time, end_time, "
    "processing_activity_id, organisation_oin, organisation, officer, authenticated_as, roles, "
    "purpose, legal_basis, policy_version, subject_count, record_count, subjects_hash, "
    "recorded_at, prev_hash, hash FROM audit_entry"
)


def by_entry(records: list[AuditRecord]) -> dict[int, list[AuditRecord]]:
    entries: dict[int, list[AuditRecord]] = {}
    for r in records:
        entries.setdefault(r.seq, []).append(r)
    return entries


async def test_round_trip_expands_batch_into_records(store: AuditStore, backend: Backend) -> None:
    b = batch(subjects=2, request_decisions=1)
    await store.commit(b)
    records = await all_records(store)
    assert len(records) == b.record_count() == 2 * len(DECISIONS) + 1
    # One request is one entry: its records share the entry's seq, prev_hash and hash.
    assert {r.seq for r in records} == {1}
    assert {(r.prev_hash, r.hash) for r in records} == {(GENESIS_HASH, records[0].hash)}

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
    # Records come in batch order: subject by subject (decision order), request decisions last.
    expected = [
        (PSEUDO(vnummer(i)), d.coordinate, d.path, d.decision, d.reason, d.registry)
        for i in range(2)
        for d in DECISIONS
    ] + [(None, "Query", "", Decision.REFUSED, "TOO_MANY_SUBJECTS", None)]
    got = [
        (r.data_subject_id, r.coordinate, r.path, r.decision, r.reason, r.registry) for r in records
    ]
    assert got == expected
    assert [r.status for r in records[:4]] == ["OK", "OK", "ERROR", "ERROR"]
    last = records[-1]
    assert last.data_subject_id is None
    assert last.data_subject_id_type is None

    now = dt.datetime.now(dt.UTC)
    assert all(r.recorded_at.tzinfo is not None for r in records)
    assert all(abs((now - r.recorded_at).total_seconds()) < 60 for r in records)

    # Physically: one entry row, one row per subject (+ one for the request decisions), and
    # one content-addressed row per distinct decision tuple.
    assert await backend.count("audit_entry") == 1
    assert await backend.count("audit_entry_subject") == 3
    sets = dict(await backend.fetch("SELECT id, encoding FROM audit_decision_set"))
    assert len(sets) == 2
    assert decision_set_id(encode_decisions(DECISIONS)) in sets
    assert all(decision_set_id(bytes(enc)) == set_id for set_id, enc in sets.items())
    (row,) = await backend.fetch(ENTRY_SELECT)
    entry = read_entry(row)
    assert (entry.subject_count, entry.record_count) == (3, b.record_count())
    assert entry_hash(entry) == entry.hash == first.hash


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
    assert [r.seq for r in await store.search(AuditQuery(trace_id=trace))] == [1] * n
    both = await store.search(AuditQuery(officer="other", subject=PSEUDO(vnummer(0))))
    assert len(both) == n
    assert {r.data_subject_id for r in both} == {PSEUDO(vnummer(0))}

    # The limit counts records, even inside one entry; after_seq pages by entry.
    limited = await store.search(AuditQuery(limit=3))
    assert limited == everything[:3]
    page = await store.search(AuditQuery(limit=3, after_seq=1))
    assert page == everything[n : n + 3]
    assert {r.seq for r in page} == {2}
    assert await store.search(AuditQuery(after_seq=2)) == everything[-1:]

    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert await store.search(AuditQuery(since=future)) == []
    assert len(await store.search(AuditQuery(since=past, until=future))) == len(everything)
    assert await store.search(AuditQuery(until=past)) == []
    with pytest.raises(ValueError, match="limit"):
        await store.search(AuditQuery(limit=0))


async def test_search_by_subject_returns_exactly_that_subjects_records(store: AuditStore) -> None:
    own = (
        FieldDecision("Vreemdeling.geslacht", "persoon.geslacht", Decision.GIVEN, "R2", "BVV"),
        FieldDecision("Opvang.locatie", "persoon.opvang.locatie", Decision.GIVEN, "R3", "COA"),
    )
    a, b, c = (PSEUDO(vnummer(i)) for i in (10, 11, 12))
    mixed = batch(subjects=0, request_decisions=1)
    mixed.subjects = [
        SubjectAccess(a, DECISIONS),
        SubjectAccess(b, own),
        SubjectAccess(c, DECISIONS),
    ]
    twice = batch(subjects=0, request_decisions=0)  # b under two root fields of one request
    twice.subjects = [SubjectAccess(b, DECISIONS[:1]), SubjectAccess(a, own), SubjectAccess(b, own)]
    await store.commit(mixed)
    await store.commit(batch(subjects=3))  # subjects 0..2: not b
    await store.commit(twice)

    found = await store.search(AuditQuery(subject=b))
    assert [(r.seq, r.data_subject_id) for r in found] == [(1, b)] * 2 + [(3, b)] * 3
    assert [(r.coordinate, r.path, r.decision, r.reason, r.registry) for r in found] == [
        (d.coordinate, d.path, d.decision, d.reason, d.registry) for d in (*own, DECISIONS[0], *own)
    ]
    assert {r.trace_id for r in found} == {mixed.context.trace_id, twice.context.trace_id}
    assert all(r.data_subject_id_type == "vnummer" for r in found)
    # The other subjects and the request-level record of the same entries stay out.
    assert len(await store.search(AuditQuery(subject=a))) == len(DECISIONS) + len(own)
    assert len(await store.search(AuditQuery(subject=c))) == len(DECISIONS)
    assert len(await store.search(AuditQuery(subject=PSEUDO(vnummer(99))))) == 0
    assert [r.seq for r in await store.search(AuditQuery(subject=b, limit=4))] == [1, 1, 3, 3]


async def test_search_all_pages_by_entry_without_losing_records(store: AuditStore) -> None:
    for n in range(5):
        await store.commit(batch(subjects=1 + n % 3, request_decisions=n % 2))
    everything = await all_records(store)
    # Pages smaller than one entry, pages ending inside an entry: every record exactly once.
    for page in (1, 4, 7, 9, 1000):
        assert await search_all(store, AuditQuery(), page=page) == everything
    subject = PSEUDO(vnummer(0))
    assert await search_all(store, AuditQuery(subject=subject), page=3) == await store.search(
        AuditQuery(subject=subject)
    )


async def test_verify_detects_an_altered_entry_row(store: AuditStore, backend: Backend) -> None:
    for _ in range(3):
        await store.commit(batch())
    ok = await store.verify()
    assert (ok.ok, ok.checked, ok.first_broken_seq) == (True, 3, None), ok
    assert "27 records" in ok.detail

    await backend.sql("UPDATE audit_entry SET officer = 'mallory' WHERE seq = 2")
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 2), broken
    assert "entry 2" in broken.detail
    assert "entry row altered" in broken.detail


async def test_verify_detects_an_altered_subject_row(store: AuditStore, backend: Backend) -> None:
    for _ in range(3):
        await store.commit(batch())
    await backend.sql(
        "UPDATE audit_entry_subject SET subject = {} WHERE entry_seq = 2 AND position = 1",
        PSEUDO(vnummer(42)),
    )
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 2), broken
    assert "subject row altered" in broken.detail

    # Pointing a subject row at another (genuine) decision set is an alteration too.
    await backend.sql(
        "UPDATE audit_entry_subject SET subject = {} WHERE entry_seq = 2 AND position = 1",
        PSEUDO(vnummer(1)),
    )
    assert (await store.verify()).ok
    other = (
        await backend.fetch(
            "SELECT decision_set FROM audit_entry_subject WHERE entry_seq = 3 AND position = 2"
        )
    )[0][0]
    await backend.sql(
        "UPDATE audit_entry_subject SET decision_set = {} WHERE entry_seq = 3 AND position = 0",
        other,
    )
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 3), broken
    assert "subject row altered" in broken.detail


async def test_verify_detects_deleted_and_added_subject_rows(
    store: AuditStore, backend: Backend
) -> None:
    for _ in range(3):
        await store.commit(batch())
    row = await backend.fetch(
        "SELECT entry_seq, position, subject, decision_set FROM audit_entry_subject "
        "WHERE entry_seq = 2 AND position = 0"
    )
    await backend.sql("DELETE FROM audit_entry_subject WHERE entry_seq = 2 AND position = 0")
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 2), broken
    assert "subject row added or removed" in broken.detail

    await backend.sql("INSERT INTO audit_entry_subject VALUES ({}, {}, {}, {})", *row[0])
    assert (await store.verify()).ok
    await backend.sql(
        "INSERT INTO audit_entry_subject VALUES ({}, {}, {}, {})",
        3,
        3,
        PSEUDO(vnummer(7)),
        row[0][3],
    )
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 3), broken
    assert "subject row added or removed" in broken.detail
    await backend.sql("DELETE FROM audit_entry_subject WHERE entry_seq = 3 AND position = 3")
    assert (await store.verify()).ok

    # A subject row for an entry the chain does not have (after the head) is found as well.
    await backend.sql(
        "INSERT INTO audit_entry_subject VALUES ({}, {}, {}, {})",
        9,
        0,
        PSEUDO(vnummer(7)),
        row[0][3],
    )
    broken = await store.verify()
    assert not broken.ok, broken
    assert "belong to no entry" in broken.detail


async def test_verify_detects_an_altered_decision_set(store: AuditStore, backend: Backend) -> None:
    await store.commit(batch(subjects=0, request_decisions=1))  # entry 1: another set only
    for _ in range(2):
        await store.commit(batch())  # entries 2 and 3 use DECISIONS
    set_id = decision_set_id(encode_decisions(DECISIONS))
    original = (
        await backend.fetch("SELECT encoding FROM audit_decision_set WHERE id = {}", set_id)
    )[0][0]
    forged = bytes(original).replace(b"FIELD_NOT_PERMITTED", b"GIVEN_BY_EXCEPTION_")
    assert len(forged) == len(bytes(original)) and forged != bytes(original)
    await backend.sql("UPDATE audit_decision_set SET encoding = {} WHERE id = {}", forged, set_id)
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 2), broken
    assert "decision set" in broken.detail and "altered" in broken.detail

    await backend.sql("DELETE FROM audit_decision_set WHERE id = {}", set_id)
    broken = await store.verify()
    assert (broken.ok, broken.first_broken_seq) == (False, 2), broken
    assert "missing" in broken.detail
    cold = open_store(backend.url)  # a store that has not seen the set cannot expand it
    await cold.open()
    try:
        with pytest.raises(AuditUnavailable, match="decision set"):
            await cold.search(AuditQuery(subject=PSEUDO(vnummer(0))))
    finally:
        await cold.close()

    # A set deleted behind a warm store's back is written again by its next commit (same
    # content, same id), so the trail heals instead of referring to nothing.
    await store.commit(batch())
    assert await backend.count("audit_decision_set") == 2
    result = await store.verify()
    assert (result.ok, result.checked) == (True, 4), result


async def test_sqlite_values_of_a_foreign_type_are_reported_not_crashed(tmp_path: Path) -> None:
    # SQLite keeps whatever type a tamperer writes; verify names the entry instead of failing.
    backend = _sqlite_backend(tmp_path / "audit.db")
    store = open_store(backend.url)
    await store.open()
    try:
        for _ in range(3):
            await store.commit(batch())
        set_id = decision_set_id(encode_decisions(DECISIONS))
        tampering = [
            (
                "UPDATE audit_entry_subject SET position = 'x' "
                "WHERE entry_seq = 2 AND position = 1",
                "UPDATE audit_entry_subject SET position = 1 "
                "WHERE entry_seq = 2 AND position = 'x'",
                2,
                "subject rows altered",
            ),
            (
                "UPDATE audit_entry SET record_count = 'many' WHERE seq = 3",
                "UPDATE audit_entry SET record_count = 9 WHERE seq = 3",
                3,
                "entry row altered",
            ),
        ]
        for alter, restore, seq, what in tampering:
            await backend.sql(alter)
            result = await store.verify()
            assert (result.ok, result.first_broken_seq) == (False, seq), result
            assert what in result.detail
            await backend.sql(restore)
            assert (await store.verify()).ok
        await backend.sql(
            "UPDATE audit_decision_set SET encoding = CAST(encoding AS TEXT) WHERE id = {}", set_id
        )
        result = await store.verify()
        assert (result.ok, result.first_broken_seq) == (False, 1), result
        assert "altered" in result.detail
    finally:
        await store.close()


async def test_warm_store_writes_no_new_decision_set_for_a_repeated_plan(
    store: AuditStore, backend: Backend
) -> None:
    assert isinstance(store, GroupCommitStore)
    await store.commit(batch(subjects=3))
    sets = await backend.count("audit_decision_set")
    encoded = store.decision_sets.encoded
    assert (sets, encoded) == (2, 2)

    for _ in range(5):  # the same plan tuple again: no encoding, no hashing, no new set row
        await store.commit(batch(subjects=3))
    assert store.decision_sets.encoded == encoded
    assert await backend.count("audit_decision_set") == sets
    assert await backend.count("audit_entry") == 6
    assert await backend.count("audit_entry_subject") == 6 * 4

    # An equal tuple that is another object is recognised by content: still nothing new.
    copy = tuple(
        FieldDecision(d.coordinate, d.path, d.decision, d.reason, d.registry) for d in DECISIONS
    )
    assert copy is not DECISIONS
    again = batch(subjects=0, request_decisions=1)
    again.subjects = [SubjectAccess(PSEUDO(vnummer(0)), copy)]
    await store.commit(again)
    assert store.decision_sets.encoded == encoded
    assert await backend.count("audit_decision_set") == sets

    # A new plan adds exactly one set; a cold store (another process) adds none for old ones.
    other = DECISIONS[:2]
    fresh = batch(subjects=0, request_decisions=0)
    fresh.subjects = [SubjectAccess(PSEUDO(vnummer(1)), other)]
    await store.commit(fresh)
    assert store.decision_sets.encoded == encoded + 1
    assert await backend.count("audit_decision_set") == sets + 1
    cold = open_store(backend.url)
    await cold.open()
    try:
        await cold.commit(batch(subjects=3))
        await cold.commit(fresh)
    finally:
        await cold.close()
    assert await backend.count("audit_decision_set") == sets + 1
    assert (await store.verify()).ok


async def test_verify_detects_deleted_entries(store: AuditStore, backend: Backend) -> None:
    for _ in range(4):
        await store.commit(batch())
    await backend.sql("DELETE FROM audit_entry WHERE seq = 2")
    result = await store.verify()
    assert (result.ok, result.first_broken_seq) == (False, 2), result
    assert "missing" in result.detail

    await backend.sql("DELETE FROM audit_entry WHERE seq >= 2")
    result = await store.verify()  # a cut-off tail: the head still knows seq 4
    assert (result.ok, result.first_broken_seq) == (False, 2), result


@pytest.mark.parametrize("table", ["audit_entry", "audit_entry_subject", "audit_decision_set"])
async def test_missing_table_fails_commit_until_restored(
    store: AuditStore, backend: Backend, table: str
) -> None:
    await store.commit(batch())
    await backend.sql(f"ALTER TABLE {table} RENAME TO {table}_gone")
    with pytest.raises(AuditUnavailable) as info:
        await store.commit(batch())  # a warm plan: even the decision set table is checked
    assert info.value.code.value == "AUDIT_UNAVAILABLE"
    with pytest.raises(AuditUnavailable):
        await store.search(AuditQuery())
    assert not await store.ready()
    # The store must not recreate the table behind the tamperer's back.
    with pytest.raises(AuditUnavailable):
        await store.commit(batch())

    await backend.sql(f"ALTER TABLE {table}_gone RENAME TO {table}")
    await store.commit(batch())
    assert await store.ready()
    records = await all_records(store)
    assert len(records) == 18
    assert sorted(by_entry(records)) == [1, 2]
    assert (await store.verify()).ok


async def test_failed_group_commits_nothing_of_any_batch(
    store: AuditStore, backend: Backend
) -> None:
    await store.commit(batch())
    await backend.sql("ALTER TABLE audit_entry_subject RENAME TO audit_entry_subject_gone")
    fresh = batch(subjects=0, request_decisions=0)  # a new decision set: written, then rolled back
    fresh.subjects = [SubjectAccess(PSEUDO(vnummer(3)), DECISIONS[1:])]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(store.commit(batch()) for _ in range(8)), store.commit(fresh), return_exceptions=True
        ),
        timeout=30,
    )
    assert all(isinstance(r, AuditUnavailable) for r in results)
    await backend.sql("ALTER TABLE audit_entry_subject_gone RENAME TO audit_entry_subject")
    assert len(await all_records(store)) == 9
    assert await backend.count("audit_entry") == 1
    assert await backend.count("audit_decision_set") == 2
    assert (await store.verify()).ok
    await store.commit(fresh)  # the rolled-back set is not taken for written
    assert len(await store.search(AuditQuery(subject=PSEUDO(vnummer(3))))) == len(DECISIONS) - 1
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


async def test_purge_removes_old_records_and_records_itself(
    store: AuditStore, backend: Backend
) -> None:
    old = batch()
    await store.commit(old)
    await asyncio.sleep(1.5)
    young = batch()
    await store.commit(young)

    who = context(officer="fg-officer", organisation="KETENPOORT")
    deleted = await store.purge(dt.timedelta(seconds=0.75), who)
    assert deleted == old.record_count()
    records = await all_records(store)
    assert records[0].seq == 2
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
    assert await backend.fetch("SELECT * FROM audit_entry_subject WHERE entry_seq = 1") == []

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
    assert await backend.count("audit_entry_subject") == 1
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
    entries = by_entry(records)
    assert list(entries) == list(range(1, tasks * per_task + 1))
    assert all(len({r.trace_id for r in rs}) == 1 for rs in entries.values())
    for prev, seq in itertools.pairwise(entries):
        assert entries[seq][0].prev_hash == entries[prev][0].hash
    result = await store.verify()
    assert (result.ok, result.checked) == (True, tasks * per_task), result
    assert f"{expected} records" in result.detail
    # Group commit: 160 concurrent batches did not need 160 transactions.
    assert len({r.recorded_at for r in records}) < tasks * per_task


async def test_large_batch_commits(store: AuditStore, backend: Backend) -> None:
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
    # ... stored as 1 entry + 50 subject rows + 1 decision set.
    assert await backend.count("audit_entry") == 1
    assert await backend.count("audit_entry_subject") == 50
    assert await backend.count("audit_decision_set") == 1


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
        assert len(records) == 18
        assert sorted(by_entry(records)) == [1, 2]
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
            expected = 8 * 15
            for s in stores:
                result = await s.verify()
                assert (result.ok, result.checked) == (True, expected), result
                assert f"{expected * (len(DECISIONS) + 1)} records" in result.detail
            entries = by_entry(await all_records(stores[0]))
            assert list(entries) == list(range(1, expected + 1))
            # Both processes wrote the same two decision sets: content-addressed, stored once.
            conn = await asyncpg.connect(url)
            try:
                assert await conn.fetchval("SELECT count(*) FROM audit_decision_set") == 2
            finally:
                await conn.close()
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


@pytest.mark.parametrize("table", ["audit_entry", "audit_entry_subject", "audit_decision_set"])
async def test_open_refuses_to_recreate_a_vanished_table(backend: Backend, table: str) -> None:
    s = open_store(backend.url)
    await s.open()
    await s.commit(batch())
    await s.close()
    await backend.sql(f"ALTER TABLE {table} RENAME TO {table}_gone")
    again = open_store(backend.url)
    with pytest.raises(AuditUnavailable, match="missing"):
        await again.open()
    await again.close()
    await backend.sql(f"ALTER TABLE {table}_gone RENAME TO {table}")
    restored = open_store(backend.url)
    await restored.open()
    try:
        assert (await restored.verify()).ok
    finally:
        await restored.close()


async def test_open_refuses_a_database_of_the_old_per_record_layout(backend: Backend) -> None:
    # The earlier layout: one audit_record row per (subject, field), its own chain head.
    await backend.sql(
        "CREATE TABLE audit_record (seq BIGINT PRIMARY KEY, trace_id TEXT NOT NULL, "
        "data_subject_id TEXT, coordinate TEXT NOT NULL, prev_hash TEXT NOT NULL, "
        "hash TEXT NOT NULL)"
    )
    await backend.sql(
        "INSERT INTO audit_record VALUES (1, {}, NULL, 'Query', {}, {})",
        "ab" * 16,
        GENESIS_HASH,
        "cd" * 32,
    )
    s = open_store(backend.url)
    with pytest.raises(AuditUnavailable, match="earlier one-row-per-record layout") as info:
        await s.open()
    await s.close()
    assert "audit_record" in info.value.message
    # Nothing of the new layout was created next to it.
    with pytest.raises(Exception, match="audit_entry"):
        await backend.count("audit_entry")


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
