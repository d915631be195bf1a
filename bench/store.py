"""Audit store write throughput, the fresh PostgreSQL databases the benchmark uses, and the
store the in-process ketenpoort variant commits to (:class:`ChainBufferStore`).

Batches are the gateway's own: a real 50-person request's :class:`AuditBatch` (its plan's
decision tuples, its subjects' pseudonyms) with a fresh trace, span and time per commit, as
every request brings. Sixteen committers commit concurrently, as sixteen requests in flight
would; the store's group commit turns them into shared transactions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import POSTGRES_URL
from gateway.audit.chain import PreparedBatch, link, prepare
from gateway.audit.encoding import DecisionSets, ts
from gateway.audit.logcheck import LogCheck
from gateway.audit.merkle import Frontier, Node
from gateway.audit.model import AuditBatch, AuditQuery, AuditRecord
from gateway.audit.note import Checkpoint
from gateway.audit.querying import EntryRows
from gateway.audit.store import AuditStore
from gateway.audit.stores import open_store
from gateway.audit.verify import VerifyResult
from gateway.audit.writer import GroupCommitStore
from tests import support


@dataclass(frozen=True, slots=True)
class StoreCounts:
    seconds: float
    max_batches: int
    committers: int = 16


FULL_STORE = StoreCounts(seconds=6.0, max_batches=2_000)
QUICK_STORE = StoreCounts(seconds=0.3, max_batches=32)


async def require_postgres() -> None:
    await support.require_postgres(POSTGRES_URL, "KETENPOORT_BENCH_POSTGRES")


async def fresh_database() -> tuple[str, str]:
    """A new, uniquely named database on the benchmark's PostgreSQL server: (URL, name)."""
    return await support.fresh_database(POSTGRES_URL, "ketenpoort_bench")


async def drop_database(name: str) -> None:
    await support.drop_database(name, POSTGRES_URL)


def fresh_batch(template: AuditBatch) -> AuditBatch:
    """The template's decisions and subjects in a new request: new trace, span and times."""
    now = dt.datetime.now(dt.UTC)
    context = dataclasses.replace(
        template.context,
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        parent_span_id=None,
        start_time=now,
    )
    return AuditBatch(context, now, list(template.subjects), list(template.request_decisions))


async def write_throughput(
    store: AuditStore, template: AuditBatch, counts: StoreCounts
) -> dict[str, Any]:
    """``committers`` tasks commit fresh batches until the time or the batch budget is spent."""
    await store.commit(fresh_batch(template))  # warm: connections, statements, chain head
    per_batch = template.record_count()
    # Rows a batch writes: its entry and its subject rows (decision sets are shared: written
    # once per distinct set, so not per batch).
    rows_per_batch = len(prepare(template, DecisionSets(), text_timestamps=True))
    issued = 0
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + counts.seconds

    async def committer() -> None:
        nonlocal issued, done
        while time.perf_counter() < deadline and issued < counts.max_batches:
            issued += 1
            batch = fresh_batch(template)
            start = time.perf_counter_ns()
            await store.commit(batch)
            latencies.append((time.perf_counter_ns() - start) / 1e6)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(committer() for _ in range(counts.committers)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "committers": counts.committers,
        "records_per_batch": per_batch,
        "batches": done,
        "records": done * per_batch,
        "seconds": round(elapsed, 3),
        "records_per_s": round(done * per_batch / elapsed) if elapsed else None,
        "rows_per_batch": rows_per_batch,
        "rows_per_s": round(done * rows_per_batch / elapsed) if elapsed else None,
        "batches_per_s": round(done / elapsed, 1) if elapsed else None,
        "commit_p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "commit_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)
        if latencies
        else None,
    }


async def sqlite_throughput(
    work: Path, template: AuditBatch, counts: StoreCounts
) -> dict[str, Any]:
    store = open_store(f"sqlite:///{work / 'store-bench.db'}")
    await store.open()
    try:
        result = await write_throughput(store, template, counts)
    finally:
        await store.close()
    return {"url": "sqlite:///<tmp>/store-bench.db", **result}


async def postgres_throughput(template: AuditBatch, counts: StoreCounts) -> dict[str, Any]:
    url, name = await fresh_database()
    try:
        store = open_store(url)
        await store.open()
        try:
            result = await write_throughput(store, template, counts)
        finally:
            await store.close()
    finally:
        await drop_database(name)
    return {"url": f"postgresql://{urlparse(POSTGRES_URL).hostname}:<fresh database>", **result}


class ChainBufferStore(GroupCommitStore):
    """The real audit path up to the database: the store's own ``commit`` (record encoding,
    decision-set encoding and ids, subject hashing), its queue and group-commit writer task,
    and the chain linking (entry hashes, Merkle leaf hashes and the tree nodes they complete)
    of every group — only the SQL write is left out.

    The in-process ``ketenpoort`` variant commits here, so what it is timed with is the path a
    request takes to a durable commit minus the database (the database's own cost is measured
    apart: ``store_write``, and over HTTP with SQLite and PostgreSQL). It keeps the last
    ``keep`` batches (for the store benchmark's template) and counts logical records and the
    rows a database store would have written (entries, subject rows, new decision sets).
    """

    text_timestamps = True

    def __init__(self, keep: int = 64) -> None:
        super().__init__()
        self.batches: list[AuditBatch] = []
        self.commits = 0
        self.records = 0
        self.rows = 0
        self._keep = keep
        self._head_seq = 0
        self._head_hash = "0" * 64
        self._sets: set[str] = set()
        self._frontier = Frontier()

    async def commit(self, batch: AuditBatch) -> None:
        await super().commit(batch)
        if len(self.batches) >= self._keep:
            del self.batches[: self._keep // 2]
        self.batches.append(batch)
        self.commits += 1
        self.records += batch.record_count()

    async def _open_backend(self) -> None:
        return None

    async def _close_backend(self) -> None:
        return None

    async def _write(self, batches: list[PreparedBatch]) -> None:
        now = dt.datetime.now(dt.UTC)
        text = ts(now)
        linked = link(
            batches,
            head_seq=self._head_seq,
            head_hash=self._head_hash,
            recorded_at=text,
            recorded_at_text=text,
        )
        self._head_seq, self._head_hash = linked.seq, linked.hash
        # The Merkle log's nodes, as a database store computes them per group from the
        # frontier it keeps in memory (gateway.audit.tree.TreeTip).
        new = self._frontier.extend(linked.leaves)
        new_sets = {i for b in batches for i in b.sets} - self._sets
        self._sets |= new_sets
        self.rows += len(linked.entries) + len(linked.subjects) + len(new_sets) + len(new)

    async def _purge(
        self,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        return 0

    async def _purge_expired(
        self,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        return 0

    async def _tree_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        known = self._frontier.nodes()
        return {n: known[n] for n in nodes if n in known}

    async def _tree_size(self) -> int:
        return self._frontier.size

    async def _check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        return LogCheck(True, "benchmark store: the tree's frontier only, nothing to check")

    async def _entries(self, seqs: list[int]) -> EntryRows:
        return EntryRows([], [], {})

    async def _search(self, q: AuditQuery) -> list[AuditRecord]:
        return []

    async def _verify(self) -> VerifyResult:
        return VerifyResult(True, self._head_seq, None, "benchmark store: chain kept in memory")

    async def _ping(self) -> None:
        return None
