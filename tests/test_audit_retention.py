"""Retention by purpose, with a clock the test controls, on SQLite and PostgreSQL.

A five-year police purpose (TOEZICHT_VW, 1826 days) and a seven-year IND purpose
(ASIEL_BEHANDELING, 2557 days) side by side: each loses its content exactly when its own
retention ends, the leaves stay, and every earlier checkpoint and proof still verifies.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.audit.merkle import verify_inclusion
from gateway.audit.model import AuditQuery
from gateway.audit.note import COSIGNATURE_V1, Signer
from gateway.audit.stores import open_store
from tests.test_audit_log import ORIGIN, Log, verify_cli, witness_round
from tests.test_audit_store import Backend, backend, batch, context  # noqa: F401

POLICE, IND = "TOEZICHT_VW", "ASIEL_BEHANDELING"
RETENTION = {POLICE: dt.timedelta(days=1826), IND: dt.timedelta(days=2557)}
SECOND = dt.timedelta(seconds=1)


async def test_each_purpose_loses_its_content_exactly_at_its_own_retention(
    backend: Backend,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = open_store(backend.url)
    await store.open()
    log = Log(
        backend,
        store,
        Signer.generate(ORIGIN),
        Signer.generate("witness.test/w1", COSIGNATURE_V1),
        tmp_path / "checkpoints.txt",
        tmp_path / "witness",
    )
    fg = context(officer="fg", organisation="KETENPOORT", purpose="VERANTWOORDING")
    try:
        first = dt.datetime.now(dt.UTC)
        for n in range(6):
            await store.commit(batch(purpose=POLICE if n % 2 == 0 else IND))
        last = dt.datetime.now(dt.UTC)
        cosigned = await witness_round(log, store, 1_700_000_000)
        tree = store.tree()
        root = await tree.root(6)
        proofs = {i: (await tree.leaf(i), await tree.inclusion(i, 6)) for i in range(6)}

        async def purposes() -> list[str | None]:
            found = await store.search(AuditQuery(limit=10_000))
            return sorted({r.purpose for r in found if r.coordinate != "Audit.purge"}, key=str)

        # A second before the first police entry is five years old: nothing goes.
        assert await store.purge_expired(RETENTION, fg, now=first + RETENTION[POLICE] - SECOND) == 0
        assert await purposes() == [IND, POLICE]
        # A second after the last police entry is five years old: police content goes, IND stays.
        removed = await store.purge_expired(RETENTION, fg, now=last + RETENTION[POLICE] + SECOND)
        assert removed == 3 * batch().record_count()
        assert await purposes() == [IND]
        assert await store.purge_expired(RETENTION, fg, now=first + RETENTION[IND] - SECOND) == 0
        assert await purposes() == [IND]
        removed = await store.purge_expired(RETENTION, fg, now=last + RETENTION[IND] + SECOND)
        assert removed == 3 * batch().record_count()
        assert await purposes() == []

        # The leaves stayed: the old root, the old proofs, the old checkpoint all verify.
        assert await tree.root(6) == root == cosigned.checkpoint.root
        for i, (leaf, path) in proofs.items():
            assert await tree.leaf(i) == leaf
            assert await tree.inclusion(i, 6) == path
            verify_inclusion(i, 6, leaf, path, root)
        assert (await store.verify()).ok
        result = await verify_cli(log)
        assert result.exit_code == 0, result.output
        assert "6 purged" in result.output
        again = await witness_round(log, store, 1_700_000_100)  # 10 entries extend 6
        assert again.previous_size == 6 and again.checkpoint.size == 10

        # An entry removed behind the store's back is covered by no purge; and a row added to
        # the purged list by hand breaks the list the purge entry committed to.
        await backend.sql("DELETE FROM audit_entry_subject WHERE entry_seq = 7")
        await backend.sql("DELETE FROM audit_entry WHERE seq = 7")
        result = await verify_cli(log)
        assert result.exit_code == 1, result.output
        assert "leaf 6 (entry seq 7)" in result.output
        await backend.sql("INSERT INTO audit_purged VALUES (7, {}, 10)", "0" * 64)
        result = await verify_cli(log)
        assert result.exit_code == 1, result.output
        assert "leaf 1 (entry seq 2)" in result.output  # purge 10's list no longer matches
    finally:
        await store.close()
