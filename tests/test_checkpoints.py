"""The running gateway signs checkpoints: at start, every M entries, at shutdown; it publishes
them to the checkpoint file, as a span event and over HTTP (docs/audit-log.md)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from gateway.assembly.runtime import start_gateway
from gateway.audit.checkpoints import (
    KEY_FILE,
    PUBLIC_FILE,
    Checkpointer,
    iter_notes,
    load_verifier,
)
from gateway.audit.merkle import leaf_hash
from gateway.audit.note import Checkpoint, Note, Signer, open_checkpoint
from gateway.cli.audit import app as audit_app
from gateway.config import Settings
from mocks import Registries
from tests.support import caller, settings_for

QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer } }"


def checkpoints_in(path: Path, state: Path) -> list[Checkpoint]:
    key = load_verifier(state / PUBLIC_FILE)
    return [open_checkpoint(n.render(), key)[0] for n in iter_notes(path.read_text("utf-8"))]


async def test_checkpoints_at_start_every_m_entries_and_at_shutdown(
    tmp_path: Path, mock_registries: Registries
) -> None:
    state = tmp_path / "state"
    published = tmp_path / "elsewhere" / "checkpoints.txt"
    exporter = InMemorySpanExporter()
    settings: Settings = settings_for(
        state,
        checkpoints=f"file:{published}",
        checkpoint_entries=2,
        checkpoint_interval=3600.0,
        traces="console",
    )
    running = await start_gateway(settings, mocks=mock_registries, exporter=exporter)
    try:
        assert (state / KEY_FILE).stat().st_mode & 0o777 == 0o600
        assert running.checkpointer is not None
        assert [c.size for c in checkpoints_in(published, state)] == [0]  # at start
        nvik = caller(running, state, org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
        for i in range(3):
            answer = await nvik.query(QUERY, {"v": mock_registries.population.vnummer(i)})
            assert answer.status == 200
        for _ in range(500):  # the 2-entry trigger, not the hour: bounded wait (10 s)
            if running.checkpointer.latest and running.checkpointer.latest[1].size >= 2:
                break
            await asyncio.sleep(0.02)
        assert running.checkpointer.latest is not None
        assert running.checkpointer.latest[1].size >= 2
    finally:
        await running.close()
    sizes = [c.size for c in checkpoints_in(published, state)]
    assert sizes[0] == 0 and sizes[-1] == 3  # the shutdown checkpoint covers every entry
    assert sizes == sorted(sizes)
    events = [
        e
        for span in exporter.get_finished_spans()
        if span.name == "ketenpoort.checkpoint"
        for e in span.events
    ]
    assert [e.attributes["log.size"] for e in events if e.attributes] == sizes
    assert str(events[-1].attributes and events[-1].attributes["log.checkpoint"]).startswith(
        "ketenpoort.local/audit\n3\n"
    )
    # What the gateway published verifies the store it wrote (the size-0 checkpoint too).
    verified = await asyncio.to_thread(
        CliRunner().invoke,
        audit_app,
        ["verify", "--checkpoint", str(published), "--state", str(state)],
    )
    assert verified.exit_code == 0, verified.output
    assert "3 leaves" in verified.output and "up to 3" in verified.output


async def test_one_checkpoint_per_m_entries_while_commits_go_on_during_the_signing() -> None:
    # Commits that land while a checkpoint is being published still count toward the old
    # total; they must not trigger a second checkpoint a few entries later.
    size = 0
    release, publishing = threading.Event(), threading.Event()
    published: list[int] = []

    async def head() -> tuple[int, bytes]:
        return size, leaf_hash(b"%d" % size)

    def publish(_: Note, checkpoint: Checkpoint) -> None:
        publishing.set()
        release.wait(10)
        published.append(checkpoint.size)

    release.set()
    cp = Checkpointer(
        Signer.generate("ketenpoort.test/audit"), head, [publish], interval=3600, every=10
    )
    await cp.start()  # signs size 0
    release.clear()
    size = 10
    cp.appended(10)
    assert await asyncio.to_thread(publishing.wait, 10)
    for _ in range(3):  # three more commits while size 10 is being published
        size += 1
        cp.appended(1)
    release.set()
    for _ in range(500):  # bounded: 10 s
        if len(published) == 2:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # a second checkpoint would follow at once
    assert published == [0, 10]
    await cp.close()  # the shutdown checkpoint covers the three
    assert published == [0, 10, 13]
