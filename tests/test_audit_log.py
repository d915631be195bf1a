"""The audit trail as a Merkle log, against real SQLite files and the PostgreSQL server.

Tamper tests: a trail of 12 entries has published checkpoints at sizes 5 and 12, cosigned by
a witness. Then the database is changed behind the store's back, each way the issue names.
``audit verify --checkpoint`` must exit 1 naming the first bad leaf or the inconsistent size.
The *cover-up* variant also makes the database agree with itself (entries renumbered, the
hash chain and the whole tree recomputed, the head moved: what passes ``audit verify``
today); a gateway restarted on it signs a new checkpoint, and the witness must refuse it,
naming the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from gateway.audit.chain import ENTRY_COLUMNS, GENESIS_HASH
from gateway.audit.checkpoints import Checkpointer, file_publisher
from gateway.audit.entries import entry_bytes, entry_hash, read_entry
from gateway.audit.merkle import MemoryTree, ProofError, frontier, leaf_hash, verify_consistency
from gateway.audit.merkle import verify_inclusion as check_inclusion
from gateway.audit.note import COSIGNATURE_V1, Signer
from gateway.audit.store import AuditStore, AuditUnavailable
from gateway.audit.stores import open_store
from gateway.audit.tables import audit_schema
from gateway.audit.tree import SELECT_NODES, node_params
from gateway.audit.witness import WitnessRefusal, witness_once
from gateway.cli.audit import app
from gateway.http.log_routes import log_routes
from tests.test_audit_store import ENTRY_SELECT, Backend, backend, batch  # noqa: F401

ORIGIN = "ketenpoort.test/audit"
runner = CliRunner()


@dataclass
class Log:
    """A store with 12 entries, checkpoints at 5 and 12 in a file, a witness that cosigned."""

    backend: Backend
    store: AuditStore
    signer: Signer
    witness: Signer
    checkpoints: Path
    witness_state: Path


def checkpointer(store: AuditStore, signer: Signer, path: Path) -> Checkpointer:
    return Checkpointer(signer, store.tree().head, [file_publisher(path)], interval=3600, every=1)


@contextlib.asynccontextmanager
async def log_client(store: AuditStore, cp: Checkpointer) -> AsyncIterator[httpx.AsyncClient]:
    app_ = Starlette(routes=log_routes(lambda: (store, cp)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_), base_url="http://log"
    ) as c:
        yield c


async def witness_round(log: Log, store: AuditStore, now: int) -> Any:
    cp = checkpointer(store, log.signer, log.checkpoints)
    await cp.checkpoint()
    async with log_client(store, cp) as client:
        return await witness_once(
            client, "http://log", log.signer.verifier, log.witness, log.witness_state, now
        )


@pytest.fixture
async def log(backend: Backend, tmp_path: Path) -> AsyncIterator[Log]:  # noqa: F811
    store = open_store(backend.url)
    await store.open()
    signer = Signer.generate(ORIGIN)
    result = Log(
        backend,
        store,
        signer,
        Signer.generate("witness.test/w1", COSIGNATURE_V1),
        tmp_path / "checkpoints.txt",
        tmp_path / "witness",
    )
    try:
        await witness_round(result, store, 1_699_999_999)  # the empty log, as at first start
        for n in range(12):
            await store.commit(batch(subjects=1 + n % 3))
            if n + 1 in (5, 12):
                await witness_round(result, store, 1_700_000_000 + n)
        yield result
    finally:
        await store.close()


async def verify_cli(log: Log) -> Any:
    # The CLI runs its own event loop: on a thread of its own, as from a shell.
    return await asyncio.to_thread(
        runner.invoke,
        app,
        [
            "verify",
            "--checkpoint",
            str(log.checkpoints),
            "--pubkey",
            log.signer.verifier.vkey(),
            "--store",
            log.backend.url,
        ],
    )


# ---- the tamperer's tools ------------------------------------------------------------------


async def entries(b: Backend) -> list[Any]:
    return [read_entry(r) for r in await b.fetch(ENTRY_SELECT + " ORDER BY seq")]


async def cover_up(b: Backend) -> None:
    """Make the database agree with itself: entries renumbered 1..n in seq order, the chain
    recomputed from genesis, the tree rebuilt from the entries, the head moved."""
    prev, tree = GENESIS_HASH, MemoryTree()
    for new_seq, e in enumerate(await entries(b), 1):
        fixed = dataclasses.replace(e, seq=new_seq, prev_hash=prev, hash="")
        digest = entry_hash(fixed)
        await b.sql(
            "UPDATE audit_entry SET seq = {}, prev_hash = {}, hash = {} WHERE seq = {}",
            new_seq,
            prev,
            digest,
            e.seq,
        )
        await b.sql(
            "UPDATE audit_entry_subject SET entry_seq = {} WHERE entry_seq = {}", new_seq, e.seq
        )
        tree.append(leaf_hash(entry_bytes(fixed)))
        prev = digest
    await b.sql("DELETE FROM audit_tree_node")
    for (level, idx), h in tree.nodes.items():
        await b.sql(
            "INSERT INTO audit_tree_node (level, idx, hash) VALUES ({}, {}, {})", level, idx, h
        )
    await b.sql(
        "UPDATE audit_chain_head SET seq = {}, hash = {}, anchor_seq = 0, anchor_hash = {}",
        tree.size,
        prev,
        GENESIS_HASH,
    )


async def alter_one_field(b: Backend) -> None:
    await b.sql("UPDATE audit_entry SET officer = 'someone-else' WHERE seq = 3")


async def delete_last_entries(b: Backend) -> None:
    await b.sql("DELETE FROM audit_entry_subject WHERE entry_seq > 9")
    await b.sql("DELETE FROM audit_entry WHERE seq > 9")
    nine = (await entries(b))[-1]
    await b.sql("UPDATE audit_chain_head SET seq = 9, hash = {}", nine.hash)


async def delete_oldest_entries(b: Backend) -> None:
    three = (await entries(b))[2]
    await b.sql("DELETE FROM audit_entry_subject WHERE entry_seq <= 3")
    await b.sql("DELETE FROM audit_entry WHERE seq <= 3")
    await b.sql("UPDATE audit_chain_head SET anchor_seq = 3, anchor_hash = {}", three.hash)


async def rewrite_and_rehash_chain(b: Backend) -> None:
    await b.sql("UPDATE audit_entry SET purpose = 'IETS_ANDERS' WHERE seq = 6")
    prev = None
    for e in await entries(b):
        if e.seq < 6:
            prev = e.hash
            continue
        fixed = dataclasses.replace(e, prev_hash=prev)
        digest = entry_hash(fixed)
        await b.sql(
            "UPDATE audit_entry SET prev_hash = {}, hash = {} WHERE seq = {}", prev, digest, e.seq
        )
        prev = digest
    await b.sql("UPDATE audit_chain_head SET hash = {}", prev)


async def reorder_two_entries(b: Backend) -> None:
    for table, column in (("audit_entry", "seq"), ("audit_entry_subject", "entry_seq")):
        await b.sql(f"UPDATE {table} SET {column} = -1 WHERE {column} = 7")  # noqa: S608
        await b.sql(f"UPDATE {table} SET {column} = 7 WHERE {column} = 8")  # noqa: S608
        await b.sql(f"UPDATE {table} SET {column} = 8 WHERE {column} = -1")  # noqa: S608


TABLES = (
    "audit_entry",
    "audit_entry_subject",
    "audit_decision_set",
    "audit_chain_head",
    "audit_tree_node",
)


async def snapshot(b: Backend) -> dict[str, list[tuple[Any, ...]]]:
    return {t: await b.fetch(f"SELECT * FROM {t}") for t in TABLES}  # noqa: S608


async def restore(b: Backend, saved: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, rows in saved.items():
        await b.sql(f"DELETE FROM {table}")  # noqa: S608
        for row in rows:
            marks = ", ".join("{}" for _ in row)
            await b.sql(f"INSERT INTO {table} VALUES ({marks})", *row)  # noqa: S608


async def restore_older_backup(b: Backend) -> None:
    """The backup taken at size 5 restored (rebuilt here from the rows of the first 5
    entries); the restored trail goes on, to the same size 12, with other entries."""
    saved = await snapshot(b)
    keep = {
        "audit_entry": lambda r: r[0] <= 5,
        "audit_entry_subject": lambda r: r[0] <= 5,
        "audit_tree_node": lambda r: (r[1] + 1) * 2 ** r[0] <= 5,
    }
    old = {t: [r for r in rows if keep.get(t, lambda _r: True)(r)] for t, rows in saved.items()}
    five = next(e for e in await entries(b) if e.seq == 5)
    await restore(b, old)
    await b.sql("UPDATE audit_chain_head SET seq = 5, hash = {}", five.hash)
    store = open_store(b.url)
    await store.open()
    try:
        for _ in range(7):
            await store.commit(batch())
    finally:
        await store.close()


Tamper = Callable[[Backend], Awaitable[None]]
# name → (tamper, what `verify --checkpoint` must name without a cover-up)
TAMPERS: dict[str, tuple[Tamper, str]] = {
    "alter one field": (alter_one_field, "leaf 2 (entry seq 3)"),
    "delete the last entries, re-point the head": (delete_last_entries, "inconsistent size 9"),
    "delete the oldest entries, move the anchor": (delete_oldest_entries, "leaf 0 (entry seq 1)"),
    "rewrite one entry, re-hash the chain after it": (
        rewrite_and_rehash_chain,
        "leaf 5 (entry seq 6)",
    ),
    "reorder two entries": (reorder_two_entries, "leaf 6 (entry seq 7)"),
}


async def test_a_clean_log_verifies_and_proofs_from_the_store_match_a_tree_in_memory(
    log: Log,
) -> None:
    result = await verify_cli(log)
    assert result.exit_code == 0, result.output
    assert "12 leaves" in result.output and "up to 12" in result.output
    tree = MemoryTree()
    for e in await entries(log.backend):
        tree.append(leaf_hash(entry_bytes(e)))
    reader = log.store.tree()
    assert await reader.head() == (12, tree.root())
    for size in (1, 5, 7, 12):
        for index in range(size):
            proof = await reader.inclusion(index, size)
            assert proof == tree.inclusion(index, size)
            check_inclusion(index, size, await reader.leaf(index), proof, tree.root(size))
        for first in range(1, size + 1):
            proof = await reader.consistency(first, size)
            verify_consistency(first, size, tree.root(first), tree.root(size), proof)
    with pytest.raises(ProofError):
        await reader.inclusion(0, 13)


@pytest.mark.parametrize("name", list(TAMPERS))
async def test_tampering_is_named_by_verify_against_the_checkpoints(log: Log, name: str) -> None:
    tamper, named = TAMPERS[name]
    await tamper(log.backend)
    result = await verify_cli(log)
    assert result.exit_code == 1, result.output
    assert named in result.output, result.output


@pytest.mark.parametrize("name", list(TAMPERS))
async def test_covered_up_tampering_is_refused_by_the_witness_and_named_by_verify(
    log: Log, name: str
) -> None:
    tamper, _ = TAMPERS[name]
    await tamper(log.backend)
    await cover_up(log.backend)
    await log.store.close()
    log.store = open_store(log.backend.url)  # the gateway restarted on the covered-up trail
    await log.store.open()
    with pytest.raises(WitnessRefusal) as refused:
        await witness_round(log, log.store, 1_800_000_000)
    assert refused.value.size is not None
    assert f"inconsistent size {refused.value.size}" in str(refused.value)
    result = await verify_cli(log)  # the file now also holds the cover-up's own checkpoint
    assert result.exit_code == 1, result.output
    assert "inconsistent" in result.output, result.output


async def test_restoring_an_older_backup_is_caught_by_verify_and_the_witness(log: Log) -> None:
    await restore_older_backup(log.backend)
    await log.store.close()
    log.store = open_store(log.backend.url)
    await log.store.open()
    result = await verify_cli(log)
    assert result.exit_code == 1, result.output
    assert "inconsistent at size 12" in result.output, result.output
    with pytest.raises(WitnessRefusal, match="inconsistent size 12"):
        await witness_round(log, log.store, 1_800_000_000)


async def test_a_recorded_purge_keeps_the_log_verifiable(log: Log) -> None:
    import datetime as dt

    from tests.test_audit_store import context

    await log.store.purge(
        dt.timedelta(microseconds=1), context(officer="fg", organisation="KETENPOORT")
    )
    result = await verify_cli(log)
    assert result.exit_code == 0, result.output
    assert "12 purged" in result.output
    await witness_round(log, log.store, 1_800_000_000)  # size 13 extends 12


async def test_proof_endpoints_refuse_bad_parameters_with_bad_user_input(log: Log) -> None:
    cp = checkpointer(log.store, log.signer, log.checkpoints)
    await cp.checkpoint()
    async with log_client(log.store, cp) as client:
        ok = await client.get(
            "/.well-known/ketenpoort/proof/inclusion", params={"leaf": 3, "size": 12}
        )
        assert ok.status_code == 200 and len(ok.json()["inclusion"]) == 4
        text = (await client.get("/.well-known/ketenpoort/checkpoint")).text
        assert text.startswith(f"{ORIGIN}\n12\n")
        for path, params in (
            ("inclusion", {"leaf": 12, "size": 12}),
            ("inclusion", {"leaf": 0, "size": 13}),
            ("inclusion", {"leaf": "x", "size": 3}),
            ("inclusion", {"size": 3}),
            ("consistency", {"from": 6, "to": 5}),
            ("consistency", {"from": 0, "to": 5}),
            ("consistency", {"from": 1, "to": -5}),
        ):
            got = await client.get(f"/.well-known/ketenpoort/proof/{path}", params=params)
            assert got.status_code == 400, (path, params)
            assert got.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
            json.dumps(got.json())


async def test_a_trail_written_before_the_tree_gets_it_at_open(log: Log) -> None:
    await log.store.close()
    await log.backend.sql("DROP TABLE audit_tree_node")  # as a store of the earlier version
    log.store = open_store(log.backend.url)
    await log.store.open()  # rebuilds the leaves from the entries: the same tree
    result = await verify_cli(log)
    assert result.exit_code == 0, result.output
    await witness_round(log, log.store, 1_800_000_000)


# ---- the writer's frontier (gateway.audit.tree.TreeTip) ------------------------------------


async def stored_tree_is_the_entries_tree(b: Backend) -> None:
    """Every stored node is the node of the tree of the stored entries, none missing."""
    tree = MemoryTree()
    for e in await entries(b):
        tree.append(leaf_hash(entry_bytes(e)))
    rows = await b.fetch("SELECT level, idx, hash FROM audit_tree_node")
    assert {(int(lv), int(i)): bytes(h) for lv, i, h in rows} == tree.nodes


async def test_two_writers_of_one_trail_each_extend_the_tree_the_other_left(log: Log) -> None:
    # Two gateway processes on one store: each keeps its own frontier, valid only while the
    # head is where it left it.
    other = open_store(log.backend.url)
    await other.open()
    try:
        for writer in "ABBAAABABBBA":
            await (log.store if writer == "A" else other).commit(batch())
    finally:
        await other.close()
    await stored_tree_is_the_entries_tree(log.backend)
    assert (await log.store.tree().head())[0] == 24


async def test_a_head_at_the_same_size_with_another_history_is_not_extended_from_memory(
    log: Log,
) -> None:
    # A backup of size 5 is restored under the running gateway and another process grows it
    # back to 12 entries: the same size as this writer's frontier, another tree.
    await restore_older_backup(log.backend)
    for _ in range(4):  # leaves 12..15 complete subtrees over leaves 8..11 and 0..7
        await log.store.commit(batch())
    await stored_tree_is_the_entries_tree(log.backend)


async def test_after_a_failed_write_the_next_ones_extend_the_stored_tree(log: Log) -> None:
    # Entry 13 is already taken (by a stray row): the group's transaction fails, tree rows too.
    rest = ", ".join(c for c in ENTRY_COLUMNS if c != "seq")
    await log.backend.sql(
        f"INSERT INTO audit_entry (seq, {rest}) SELECT 13, {rest} FROM audit_entry WHERE seq = 12"  # noqa: S608
    )
    with pytest.raises(AuditUnavailable):
        await log.store.commit(batch())
    await log.backend.sql("DELETE FROM audit_entry WHERE seq = 13")
    for _ in range(4):
        await log.store.commit(batch())
    await stored_tree_is_the_entries_tree(log.backend)
    result = await verify_cli(log)
    assert result.exit_code == 0, result.output


def test_sqlite_reads_tree_nodes_by_primary_key_with_one_statement_text(tmp_path: Path) -> None:
    # A node list spelled as VALUES rows made SQLite scan the whole table once it had two or
    # more rows: every group commit read the entire tree.
    db = sqlite3.connect(tmp_path / "plan.db")
    try:
        db.executescript(audit_schema("sqlite"))
        db.executemany(
            "INSERT INTO audit_tree_node VALUES (?, ?, ?)",
            [(lv, i, b"h" * 32) for lv in range(4) for i in range(500)],
        )
        db.execute("ANALYZE")
        for nodes in ([(0, 7)], frontier(4095), frontier(2**40 - 1)):
            params = node_params(nodes, "sqlite")
            plan = " | ".join(
                row[3] for row in db.execute("EXPLAIN QUERY PLAN " + SELECT_NODES["sqlite"], params)
            )
            assert "audit_tree_node USING PRIMARY KEY" in plan, plan
            assert "SCAN audit_tree_node" not in plan, plan
        got = db.execute(SELECT_NODES["sqlite"], node_params([(0, 7), (3, 499), (5, 0)], "sqlite"))
        assert sorted((lv, i) for lv, i, _ in got) == [(0, 7), (3, 499)]
    finally:
        db.close()
