"""The data-subject report with proofs, checked offline; a state directory without its key.

On both stores: ``audit report --json`` gives every access an inclusion proof against a
signed checkpoint, and ``audit check-report`` verifies it with only the log's public key.
Flipping a byte of the report, or of its checkpoint, makes the check fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from gateway.audit.checkpoints import PUBLIC_FILE, Checkpointer, load_signer
from gateway.audit.evidence import ReportError, check_report
from gateway.audit.model import AuditBatch, SubjectAccess
from gateway.audit.note import COSIGNATURE_V1, Signer, Verifier
from gateway.audit.stores import open_store
from gateway.audit.witness import witness_once
from gateway.cli.audit import app
from gateway.config import Settings
from gateway.http.log_routes import log_routes
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key
from tests.test_audit_store import DECISIONS, Backend, backend, batch, context  # noqa: F401

VNUMMER = "3141592653"
runner = CliRunner()


async def cli(*args: str) -> Any:
    # The CLI runs its own event loop: on a thread of its own, as from a shell.
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def seed(url: str, state: Path) -> None:
    """Accesses to the subject among other traffic; one request names the subject twice."""
    me = Pseudonymizer(load_or_create_key(state))(VNUMMER)
    store = open_store(url)
    await store.open()
    try:
        for n in range(9):
            await store.commit(batch(subjects=2))
            if n % 3 == 0:
                b = batch(subjects=1, request_decisions=0)
                b.subjects.append(SubjectAccess(me, DECISIONS[: 1 + n % 4]))
                if n == 3:
                    b.subjects.append(SubjectAccess(me, DECISIONS[2:]))
                await store.commit(b)
        c = dataclasses.replace(context(), organisation="IND", officer="ind-officer")
        await store.commit(
            AuditBatch(
                c, c.start_time + dt.timedelta(milliseconds=3), [SubjectAccess(me, DECISIONS)]
            )
        )
    finally:
        await store.close()


async def test_report_proofs_verify_offline_and_any_flipped_byte_fails(
    backend: Backend,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    await seed(backend.url, state)
    args = ("--store", backend.url, "--state", str(state), "--officer", "fg-coa")
    made = await cli("report", "--vnummer", VNUMMER, "--json", *args)
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert report["access_count"] == 4
    assert all("inclusion" in a["proof"] for a in report["accesses"])
    path = tmp_path / "report.json"
    path.write_text(made.stdout, encoding="utf-8")
    pubkey = (state / PUBLIC_FILE).read_text(encoding="ascii").strip()

    ok = await cli("check-report", str(path), "--pubkey", pubkey)
    assert ok.exit_code == 0, ok.output
    assert "4 access(es) proven" in ok.stdout

    key = Verifier.parse(pubkey)
    raw = path.read_bytes()
    checkpoint = report["log"]["checkpoint"].encode()
    start = raw.index(json.dumps(report["log"]["checkpoint"])[1:20].encode())
    positions = sorted({*range(0, len(raw), 5), *range(start, start + len(checkpoint))})
    for i in positions:
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises((ReportError, ValueError)):
            check_report(json.loads(bytes(flipped).decode("utf-8")), key)

    flipped = bytearray(raw)
    flipped[start + 3] ^= 0x01  # in the checkpoint's origin line
    path.write_bytes(bytes(flipped))
    bad = await cli("check-report", str(path), "--pubkey", pubkey)
    assert bad.exit_code == 1, bad.output
    assert "does not verify" in bad.output


async def test_report_and_search_refuse_a_state_directory_without_the_pseudonym_key(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    empty = tmp_path / "wrong-state"
    empty.mkdir()
    for command in (["report", "--vnummer", VNUMMER], ["search", "--vnummer", VNUMMER]):
        got = await cli(*command, "--store", url, "--state", str(empty), "--as", "fg")
        assert got.exit_code == 2, got.output
        assert str(empty) in got.output and "pseudonym key" in got.output
        assert not (empty / "pseudonym.key").exists()  # no key was made up


async def test_a_report_proves_against_a_cosigned_checkpoint_when_given_one(
    backend: Backend,  # noqa: F811
    tmp_path: Path,
) -> None:
    state, witness_state = tmp_path / "state", tmp_path / "witness"
    await seed(backend.url, state)
    signer = load_signer(state, Settings().log_origin, create=True)
    witness = Signer.generate("witness.test/fg", COSIGNATURE_V1)
    store = open_store(backend.url)
    await store.open()
    try:
        cp = Checkpointer(signer, store.tree().head, [], interval=3600, every=1)
        await cp.checkpoint()
        app_ = Starlette(routes=log_routes(lambda: (store, cp)))
        transport = httpx.ASGITransport(app=app_)
        async with httpx.AsyncClient(transport=transport, base_url="http://log") as client:
            cosigned = await witness_once(
                client, "http://log", signer.verifier, witness, witness_state, 1_700_000_000
            )
    finally:
        await store.close()
    args = ("--store", backend.url, "--state", str(state), "--officer", "fg-coa")
    made = await cli(
        "report",
        "--vnummer",
        VNUMMER,
        "--json",
        "--cosigned",
        str(witness_state / "cosigned.txt"),
        *args,
    )
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert report["log"]["checkpoint"] == cosigned.note.render()
    path = tmp_path / "report.json"
    path.write_text(made.stdout, encoding="utf-8")
    pubkey = signer.verifier.vkey()
    ok = await cli(
        "check-report", str(path), "--pubkey", pubkey, "--witness-key", witness.verifier.vkey()
    )
    assert ok.exit_code == 0, ok.output
    assert "cosigned by witness.test/fg" in ok.stdout
    other = Signer.generate("witness.test/other", COSIGNATURE_V1).verifier.vkey()
    missing = await cli("check-report", str(path), "--pubkey", pubkey, "--witness-key", other)
    assert missing.exit_code == 1 and "not cosigned by witness.test/other" in missing.output


async def test_the_witness_command_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    from gateway.cli.main import app as main_app

    log_key = Signer.generate("ketenpoort.test/audit").verifier.vkey()
    base = ["witness", "--key", str(tmp_path / "w.key"), "--state", str(tmp_path / "w")]
    for extra, message in (
        ([], "no log key"),
        (["--log-key", "not-a-key"], "verifier key"),
        (["--log-key", log_key, "--log", "ftp://x"], "http(s) URL"),
    ):
        argv = (
            [*base, *extra] if "--log" in extra else [*base, "--log", "http://127.0.0.1:9", *extra]
        )
        got = await asyncio.to_thread(runner.invoke, main_app, argv)
        assert got.exit_code == 2, (extra, got.output)
        assert message in got.output, (extra, got.output)
