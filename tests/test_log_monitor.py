"""The witness as a monitor: ``ketenpoort witness --check-entries`` reads the stored leaves and
entries over HTTP and checks them like ``audit verify --checkpoint``, with no database access.

The trail of tests/test_audit_log.py (12 entries, checkpoints at 5 and 12 cosigned by a
witness; SQLite and PostgreSQL) is tampered with each way the issue names, a gateway (uvicorn
on 127.0.0.1) starts over it with the log's key, and the witness's command line runs against
it. Without a cover-up, four of the six tampers leave the stored tree alone: only reading the
entries catches them. With a cover-up the tree is rebuilt too and the consistency proof fails
first. The log's content pages themselves (auth, bad input, recording, a store that is down)
are tested in process over the same stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import build_authenticator, load_gateway_policy
from gateway.audit.checkpoints import Checkpointer, signed_checkpoints
from gateway.audit.log_pages import (
    ENTRIES_PATH,
    ENTRY_WIDTH,
    LEAVES_PATH,
    MAX_ENTRIES,
    PURGED_PATH,
    SUBJECT_WIDTH,
    decode_rows,
)
from gateway.audit.model import AuditQuery, AuditRecord, Decision
from gateway.audit.remote_log import RemoteLog
from gateway.audit.store import AuditStore
from gateway.audit.stores import open_store
from gateway.audit.witness import COSIGNED_FILE, WitnessRefusal, witness_once
from gateway.cli.main import app as cli_app
from gateway.config import Settings
from gateway.http.app import create_app
from gateway.http.log_pages import PageSource, log_page_routes
from gateway.http.log_routes import log_routes
from mocks import Registries
from tests.support import settings_for
from tests.test_audit_log import (
    ORIGIN,
    TAMPERS,
    Log,
    Tamper,
    checkpointer,
    cover_up,
    log,  # noqa: F401 - fixture
    restore_older_backup,
)
from tests.test_audit_store import ENTRY_SELECT, backend, context  # noqa: F401 - fixture
from tests.tools import serve

pytestmark = pytest.mark.timeout(90)
runner = CliRunner()
READER = "fg-monitor"

# name → (tamper, whether it leaves the stored tree alone, what the witness must name)
HTTP_TAMPERS: dict[str, tuple[Tamper, bool, str]] = {
    "alter one field": (TAMPERS["alter one field"][0], True, "leaf 2 (entry seq 3)"),
    "delete the last entries, re-point the head": (
        TAMPERS["delete the last entries, re-point the head"][0],
        False,
        "inconsistent size 9",
    ),
    "delete the oldest entries, move the anchor": (
        TAMPERS["delete the oldest entries, move the anchor"][0],
        True,
        "leaf 0 (entry seq 1)",
    ),
    "rewrite one entry, re-hash the chain after it": (
        TAMPERS["rewrite one entry, re-hash the chain after it"][0],
        True,
        "leaf 5 (entry seq 6)",
    ),
    "restore an older backup": (restore_older_backup, False, "inconsistent size 12"),
    "reorder two entries": (TAMPERS["reorder two entries"][0], True, "leaf 6 (entry seq 7)"),
}


def reader_token(
    state: Path, *, role: str = "fg", purposes: tuple[str, ...] = ("VERANTWOORDING",)
) -> str:
    """A development token of an NVIK officer (the gateway's dev key in ``state``)."""
    settings = Settings()
    policy = load_gateway_policy(settings_for(state))
    return mint_dev_token(
        load_or_create_dev_key(state),
        issuer=settings.issuer,
        audience=settings.audience,
        subject=READER if role == "fg" else f"{role}-monitor",
        oin=policy.organisations["NVIK"].oin,
        organisation="NVIK",
        roles=[role],
        purposes=list(purposes),
    )


@dataclasses.dataclass
class Monitor:
    """A gateway over the log's store (with the log's key) and a witness with a token file."""

    log: Log
    settings: Settings
    mocks: Registries
    witness_key: Path
    token_file: Path

    @contextlib.contextmanager
    def gateway(self) -> Iterator[str]:
        """The gateway served over real HTTP; yields its base URL."""
        with serve(create_app(self.settings, mocks=self.mocks)) as url:
            yield url

    async def witness(self, url: str, *extra: str, env: dict[str, str] | None = None) -> Any:
        """``ketenpoort witness`` as from a shell (its own event loop, on a thread)."""
        args = [
            "witness",
            "--log",
            url,
            "--key",
            str(self.witness_key),
            "--state",
            str(self.log.witness_state),
            "--log-key",
            self.log.signer.verifier.vkey(),
            *extra,
        ]
        return await asyncio.to_thread(runner.invoke, cli_app, args, env=env)

    def cosigned(self) -> list[tuple[int, bytes]]:
        text = (self.log.witness_state / COSIGNED_FILE).read_text(encoding="utf-8")
        return [(c.size, c.root) for c in signed_checkpoints(text, self.log.signer.verifier)]


@pytest.fixture
async def monitor(log: Log, tmp_path: Path, mock_registries: Registries) -> Monitor:  # noqa: F811
    state = tmp_path / "gateway"
    state.mkdir()
    # The gateway signs with the log's key: its checkpoints are those the witness followed.
    (state / "checkpoint.key").write_text(log.signer.skey() + "\n", encoding="ascii")
    (state / "checkpoint.key").chmod(0o600)
    witness_key = tmp_path / "witness.key"
    witness_key.write_text(log.witness.skey() + "\n", encoding="ascii")
    witness_key.chmod(0o600)
    token_file = tmp_path / "token"
    token_file.write_text(reader_token(state) + "\n", encoding="ascii")
    settings = settings_for(state, audit_store=log.backend.url, log_origin=ORIGIN)
    return Monitor(log, settings, mock_registries, witness_key, token_file)


async def trail_reads(url: str, officer: str) -> list[AuditRecord]:
    store = open_store(url)
    await store.open()
    try:
        found = await store.search(AuditQuery(officer=officer, limit=1_000))
    finally:
        await store.close()
    return [r for r in found if r.coordinate == "Audit.logPage"]


# ---- the witness over real HTTP -----------------------------------------------------------


async def test_a_clean_log_is_cosigned_with_its_entries_checked_and_every_page_recorded(
    monitor: Monitor,
) -> None:
    token = monitor.token_file.read_text(encoding="ascii").strip()
    with monitor.gateway() as url:
        result = await monitor.witness(
            url, "--check-entries", "--token-env", "KP_TOKEN", env={"KP_TOKEN": token}
        )
    assert result.exit_code == 0, result.output
    assert f"cosigned {ORIGIN} at size 12 (consistent with size 12) (entries checked)" in (
        result.output
    )
    assert [size for size, _ in monitor.cosigned()] == [0, 5, 12, 12]
    reads = await trail_reads(monitor.log.backend.url, READER)
    assert sorted(r.path for r in reads) == [
        "entries;after=0;size=12;limit=1000;rows=12",
        "leaves;start=0;size=12;limit=10000;rows=12",
        "purged;after=0;size=12;limit=10000;rows=0",
    ]
    assert {(r.purpose, r.decision, r.data_subject_id) for r in reads} == {
        ("VERANTWOORDING", Decision.GIVEN, None)
    }


@pytest.mark.parametrize(
    ("name", "covered"),
    [
        pytest.param(name, covered, id=f"{name}{', covered up' if covered else ''}")
        for name in HTTP_TAMPERS
        for covered in (False, True)
        # A restored backup agrees with itself already: it has no cover-up variant.
        if not (covered and HTTP_TAMPERS[name][0] is restore_older_backup)
    ],
)
async def test_every_tamper_is_refused_by_the_witness_checking_entries_over_http(
    monitor: Monitor, name: str, covered: bool
) -> None:
    tamper, tree_untouched, named = HTTP_TAMPERS[name]
    await tamper(monitor.log.backend)
    if covered:
        await cover_up(monitor.log.backend)
    before = monitor.cosigned()
    with monitor.gateway() as url:  # the gateway restarted on the tampered trail
        result = await monitor.witness(
            url, "--check-entries", "--token-file", str(monitor.token_file)
        )
        assert result.exit_code == 1, result.output
        if covered:  # the rebuilt tree is not an extension: refused before any entry is read
            assert re.search(r"REFUSED: inconsistent size \d+", result.output), result.output
        else:
            assert f"REFUSED: {named}" in result.output, result.output
        assert monitor.cosigned() == before, "nothing cosigned"
        if tree_untouched and not covered:
            # Why the flag exists: the checkpoint alone still extends what was cosigned.
            plain = await monitor.witness(url)
            assert plain.exit_code == 0, plain.output
            assert "at size 12 (consistent with size 12)" in plain.output


async def test_a_token_that_may_not_read_the_trail_is_refused_and_nothing_cosigned(
    monitor: Monitor, tmp_path: Path
) -> None:
    analist = tmp_path / "analist-token"
    analist.write_text(
        reader_token(monitor.settings.state_dir, role="analist", purposes=("TOEZICHT_VW",)),
        encoding="ascii",
    )
    before = monitor.cosigned()
    with monitor.gateway() as url:
        result = await monitor.witness(url, "--check-entries", "--token-file", str(analist))
    assert result.exit_code == 2, result.output
    assert "refused the token" in result.output and "PURPOSE_NOT_GRANTED" in result.output
    assert monitor.cosigned() == before


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--check-entries"], {}, "--token-env VAR or --token-file FILE"),
        (["--check-entries", "--token-env", "KP_NONE"], {}, "KP_NONE is empty or not set"),
        (["--check-entries", "--token-env", "KP_T"], {"KP_T": "a b"}, "not a token"),
        (["--check-entries", "--token-file", "/nonexistent/token"], {}, "cannot read"),
        (["--token-env", "KP_T"], {"KP_T": "abc"}, "goes with --check-entries"),
        (
            ["--check-entries", "--token-env", "KP_T", "--token-file", "t"],
            {"KP_T": "abc"},
            "give one of",
        ),
    ],
)
def test_the_token_options_are_checked_before_anything_is_fetched(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = runner.invoke(
        cli_app,
        [
            *("witness", "--log", "http://127.0.0.1:9", "--key", str(tmp_path / "k")),
            *("--state", str(tmp_path / "s"), *args),
        ],
        env={"KP_NONE": "", **env},
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "k").exists() and not (tmp_path / "s").exists()


# ---- in process: the log's routes and content pages over the store -------------------------


@dataclasses.dataclass
class Pages:
    """The log's public routes and content pages over ``log.store`` (a checkpoint of size 12
    signed), with the gateway's development key and policy in ``state``."""

    log: Log
    cp: Checkpointer
    state: Path

    def bearer(self, **token: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {reader_token(self.state, **token)}"}

    @contextlib.asynccontextmanager
    async def client(self, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = settings_for(self.state)
        store, cp = self.log.store, self.cp
        source = PageSource(store, build_authenticator(settings), load_gateway_policy(settings))
        routes = [*log_routes(lambda: (store, cp)), *log_page_routes(lambda: source)]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=Starlette(routes=routes)),
            base_url="http://log",
            **options,
        ) as http:
            yield http

    async def witness_round(self, http: httpx.AsyncClient) -> Any:
        remote = RemoteLog(http, "http://log", reader_token(self.state))
        trail = self.log
        return await witness_once(
            http, "http://log", trail.signer.verifier, trail.witness, trail.witness_state, 1,
            entries=remote,
        )  # fmt: skip


@pytest.fixture
async def pages(log: Log, tmp_path: Path) -> Pages:  # noqa: F811
    cp = checkpointer(log.store, log.signer, log.checkpoints)
    await cp.checkpoint()  # size 12, as cosigned
    return Pages(log, cp, tmp_path / "gateway")


async def purge_everything(store: AuditStore) -> None:
    await store.purge(dt.timedelta(microseconds=1), context(officer="fg", organisation="X"))


async def test_a_purge_after_the_checkpoint_fails_the_round_until_a_checkpoint_covers_it(
    pages: Pages,
) -> None:
    await purge_everything(pages.log.store)  # entries 1..12 go; the purge is 13, not yet signed
    async with pages.client() as http:
        with pytest.raises(WitnessRefusal) as refused:
            await pages.witness_round(http)
    assert str(refused.value).startswith("leaf 0 (entry seq 1): its entry is missing")
    assert refused.value.leaf == 0


async def test_the_round_is_repeated_once_when_a_newer_checkpoint_covers_the_purge(
    pages: Pages,
) -> None:
    await purge_everything(pages.log.store)
    signed: list[int] = []

    async def gateway_signs_meanwhile(request: httpx.Request) -> None:
        # The gateway's next checkpoint falls while the witness reads the entries.
        if request.url.path == ENTRIES_PATH and not signed:
            _, checkpoint = await pages.cp.checkpoint(force=True)
            signed.append(checkpoint.size)

    async with pages.client(event_hooks={"request": [gateway_signs_meanwhile]}) as http:
        result = await pages.witness_round(http)
    assert signed and signed[0] > 13, "covers the purge (13) and the page reads recorded"
    assert result.checkpoint.size == signed[0] and result.previous_size == 12


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


async def test_pages_answer_only_readers_of_the_trail_and_record_every_read(
    pages: Pages,
) -> None:
    trail, fg = pages.log, pages.bearer()
    not_a_reader = pages.bearer(role="analist", purposes=("TOEZICHT_VW", "VERANTWOORDING"))
    bounds = {"after": 0, "size": 12}
    async with pages.client() as http:
        for path, params in ((LEAVES_PATH, {"start": 0, "size": 12}), (ENTRIES_PATH, bounds)):
            for headers, challenge in (
                ({}, 'Bearer realm="ketenpoort"'),
                ({"Authorization": "Bearer nonsense"}, 'error="invalid_token"'),
            ):
                got = await http.get(path, params=params, headers=headers)
                assert got.status_code == 401 and error_code(got) == "UNAUTHENTICATED"
                assert challenge in got.headers["www-authenticate"]
            got = await http.get(path, params=params, headers=not_a_reader)
            assert got.status_code == 403 and error_code(got) == "PURPOSE_NOT_GRANTED"
            assert "entries" not in got.json() and "leaves" not in got.json()
        refusals = await trail_reads(trail.backend.url, "analist-monitor")
        assert [(r.decision, r.reason, r.path) for r in refusals] == [
            (Decision.REFUSED, "PURPOSE_NOT_GRANTED", LEAVES_PATH),
            (Decision.REFUSED, "PURPOSE_NOT_GRANTED", ENTRIES_PATH),
        ]

        head = (await trail.store.tree().head())[0]
        for path, params in (
            (ENTRIES_PATH, {"size": 12}),
            (ENTRIES_PATH, {"after": 0}),
            (ENTRIES_PATH, {"after": -1, "size": 12}),
            (ENTRIES_PATH, {"after": "x", "size": 12}),
            (ENTRIES_PATH, {"after": 0, "size": 2**63}),
            (ENTRIES_PATH, {**bounds, "limit": 0}),
            (ENTRIES_PATH, {**bounds, "limit": MAX_ENTRIES + 1}),
            (ENTRIES_PATH, {**bounds, "limit": "ten"}),
            (LEAVES_PATH, {"after": 0, "size": 12}),
            (PURGED_PATH, {"after": "", "size": 12}),
        ):
            got = await http.get(path, params=params, headers=fg)
            assert got.status_code == 400, (path, params)
            assert error_code(got) == "BAD_USER_INPUT"
        assert (await trail.store.tree().head())[0] == head, "a refused parameter reads nothing"

        got = await http.get(ENTRIES_PATH, params={**bounds, "limit": 5}, headers=fg)
        assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
        page = got.json()
        # The rows are the store's own, value for value (timestamps and bytes included).
        stored = await trail.backend.fetch(ENTRY_SELECT + " WHERE seq <= 5 ORDER BY seq")
        assert decode_rows(page["entries"], ENTRY_WIDTH, "entries") == stored
        subjects = decode_rows(page["subjects"], SUBJECT_WIDTH, "subjects")
        assert {row[0] for row in subjects} == {1, 2, 3, 4, 5}
        assert {row[3] for row in subjects} == {row[0] for row in page["sets"]}
        leaves = (await http.get(LEAVES_PATH, params={"start": 3, "size": 5}, headers=fg)).json()
        assert [row[0] for row in leaves["leaves"]] == [3, 4]
        assert [row[1] for row in decode_rows(leaves["leaves"], 2, "leaves")] == [
            await trail.store.tree().leaf(3),
            await trail.store.tree().leaf(4),
        ]
    reads = await trail_reads(trail.backend.url, READER)
    assert [(r.decision, r.path) for r in reads] == [
        (Decision.GIVEN, "entries;after=0;size=12;limit=5;rows=5"),
        (Decision.GIVEN, "leaves;start=3;size=5;limit=10000;rows=2"),
    ]


async def test_a_store_that_cannot_read_or_record_answers_audit_unavailable(
    pages: Pages,
) -> None:
    fg = pages.bearer()
    async with pages.client() as http:
        await pages.log.store.close()
        got = await http.get(ENTRIES_PATH, params={"after": 0, "size": 12}, headers=fg)
        assert got.status_code == 503 and error_code(got) == "AUDIT_UNAVAILABLE"
        assert "entries" not in got.json()
        await pages.log.store.open()
    starting = Starlette(routes=log_page_routes(lambda: None))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=starting), base_url="http://log"
    ) as http:
        got = await http.get(PURGED_PATH, params={"after": 0, "size": 1}, headers=fg)
        assert got.status_code == 503 and error_code(got) == "AUDIT_UNAVAILABLE"
