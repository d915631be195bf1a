"""What the Merkle log costs: leaf hashing per request, and a checkpoint.

* ``link_us_per_request``: :func:`gateway.audit.chain.link` for one prepared 50-person batch
  (its entry and subject rows, chain hash and leaf hash), in the group-commit writer, and
  ``leaf_hash_us_per_request``, the part the log adds: one SHA-256 of the entry's bytes;
* ``tree_append_us_per_request``: appending that leaf to the tree's right frontier the writer
  keeps in memory (:class:`~gateway.audit.merkle.Frontier`: the leaf row and the subtrees it
  completes, about one node hash on average), as the writer does per group before inserting
  the rows (no read: the frontier is read from the store only when another process moved the
  head);
* ``checkpoint_ms``: reading the head of a store of ``entries`` entries, signing the C2SP
  checkpoint (Ed25519) and appending it to a file; with the default schedule (every 60 s or
  1000 entries) that is at most one per 1000 requests, so ``checkpoint_us_per_request`` is
  ``checkpoint_ms * 1000 / 1000``.

None of this runs in the request's own task: ``prepare`` (unchanged) runs there, the rest in
the writer, once per group. Nothing is asserted.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from bench.store import fresh_batch
from gateway.audit.chain import PreparedBatch, link, prepare
from gateway.audit.checkpoints import Checkpointer, file_publisher
from gateway.audit.encoding import DecisionSets
from gateway.audit.entries import entry_bytes, read_entry
from gateway.audit.merkle import Frontier, leaf_hash
from gateway.audit.model import AuditBatch
from gateway.audit.note import Signer
from gateway.audit.stores import open_store

#: Checkpoints the default schedule signs at most per request (every 1000 entries).
DEFAULT_EVERY = 1000


def one_entry(prepared: PreparedBatch, head: str, stamp: str) -> tuple[object, ...]:
    """The entry row ``link`` makes of ``prepared`` (to rebuild its bytes)."""
    linked = link(
        [prepared], head_seq=41, head_hash=head, recorded_at=stamp, recorded_at_text=stamp
    )
    return linked.entries[0]


def _per_call_us(fn: Any, n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - started) / n / 1000


async def merkle_costs(work: Path, template: AuditBatch, *, quick: bool) -> dict[str, Any]:
    """The numbers of the module docstring."""
    n = 50 if quick else 5_000
    sets = DecisionSets()
    prepared = prepare(fresh_batch(template), sets, text_timestamps=True)
    head = secrets.token_hex(32)
    stamp = "2026-01-01T00:00:00.000000+00:00"

    def one_link() -> None:
        link([prepared], head_seq=41, head_hash=head, recorded_at=stamp, recorded_at_text=stamp)

    link_us = _per_call_us(one_link, n)
    # What the log adds to link(): one more SHA-256 over the entry bytes it already built.
    data = entry_bytes(read_entry(one_entry(prepared, head, stamp)))
    leaf_us = _per_call_us(lambda: leaf_hash(data), n)
    leaves = link(
        [prepared], head_seq=0, head_hash=head, recorded_at=stamp, recorded_at_text=stamp
    ).leaves
    tree = Frontier()
    append_us = _per_call_us(lambda: tree.extend(leaves), n)

    entries = 20 if quick else 2_000
    store = open_store(f"sqlite:///{work / 'merkle-bench.db'}")
    await store.open()
    try:
        for _ in range(entries):
            await store.commit(fresh_batch(template))
        signer = Signer.generate("bench.ketenpoort.local/audit")
        checkpointer = Checkpointer(
            signer,
            store.tree().head,
            [file_publisher(work / "bench-checkpoints.txt")],
            interval=60,
            every=DEFAULT_EVERY,
        )
        rounds = 5 if quick else 200
        started = time.perf_counter_ns()
        for _ in range(rounds):
            await checkpointer.checkpoint(force=True)
        checkpoint_ms = (time.perf_counter_ns() - started) / rounds / 1e6
    finally:
        await store.close()
    return {
        "records_per_request": template.record_count(),
        "link_us_per_request": round(link_us, 2),
        "leaf_hash_us_per_request": round(leaf_us, 2),
        "entry_bytes": len(data),
        "tree_append_us_per_request": round(append_us, 2),
        "checkpoint_store_entries": entries,
        "checkpoint_ms": round(checkpoint_ms, 3),
        "checkpoint_every_entries": DEFAULT_EVERY,
        "checkpoint_us_per_request": round(checkpoint_ms * 1000 / DEFAULT_EVERY, 3),
    }
