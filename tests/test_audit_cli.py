"""``ketenpoort audit`` against a real SQLite store in a temporary state directory."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.audit.model import (
    AccessContext,
    AuditBatch,
    AuditQuery,
    AuditRecord,
    Decision,
    FieldDecision,
    SubjectAccess,
)
from gateway.audit.stores import open_store
from gateway.cli.audit import app
from gateway.cli.audit_support import parse_duration
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key

VNUMMER = "3141592653"
OTHER = "2718281828"

runner = CliRunner()


class Env:
    """The temporary state directory and store of one test."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.db = state / "audit.db"
        self.url = f"sqlite:///{self.db}"
        self.pseudonym = Pseudonymizer(load_or_create_key(state))

    def seed(self, vnummer: str = VNUMMER, officer: str = "agent-7") -> None:
        """One NVIK request about ``vnummer``: two fields given, one refused."""
        now = dt.datetime.now(dt.UTC)
        ctx = AccessContext(
            trace_id=secrets.token_hex(16),
            span_id=secrets.token_hex(8),
            parent_span_id=None,
            start_time=now,
            organisation_oin="00000001234567890000",
            organisation="NVIK",
            officer=officer,
            authenticated_as=officer,
            roles=("toezicht",),
            purpose="TOEZICHT_VW",
            legal_basis="Vw 2000 art. 107",
            processing_activity="https://ketenpoort.example/verwerkingen/toezicht",
            policy_version="cd" * 32,
        )
        decisions = (
            FieldDecision(
                "Naam.geslachtsnaam", "v.naam.geslachtsnaam", Decision.GIVEN, "R1", "BVV"
            ),
            FieldDecision("Vreemdeling.opvang", "v.opvang", Decision.GIVEN, "R2", "COA"),
            FieldDecision(
                "Vreemdeling.religie", "v.religie", Decision.REFUSED, "FIELD_NOT_PERMITTED", None
            ),
        )
        batch = AuditBatch(
            ctx,
            now + dt.timedelta(milliseconds=5),
            subjects=[SubjectAccess(self.pseudonym(vnummer), decisions)],
        )
        self._run(lambda s: s.commit(batch))

    def records(self) -> list[AuditRecord]:
        return self._run(lambda s: s.search(AuditQuery(limit=100_000)))

    def _run(self, action):  # type: ignore[no-untyped-def]
        async def main():  # type: ignore[no-untyped-def]
            store = open_store(self.url)
            await store.open()
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(main())


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    state = tmp_path / "state"
    for name in ("KETENPOORT_MODE", "KETENPOORT_PORT", "KETENPOORT_CACHE_TTL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KETENPOORT_STATE", str(state))
    monkeypatch.setenv("KETENPOORT_AUDIT_STORE", f"sqlite:///{state / 'audit.db'}")
    monkeypatch.setenv("USER", "fg-test")
    return Env(state)


def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=input)


def test_search_by_vnummer_records_itself_and_hides_the_number(env: Env) -> None:
    env.seed()
    env.seed(OTHER, officer="agent-9")
    result = invoke("search", "--vnummer", VNUMMER)
    assert result.exit_code == 0, result.output
    assert "3 record(s)" in result.output
    assert "agent-7" in result.output
    assert "agent-9" not in result.output
    assert VNUMMER not in result.output

    records = env.records()
    viewing = records[-1]
    assert viewing.coordinate == "Audit.search"
    assert viewing.organisation == "KETENPOORT"
    assert viewing.organisation_oin == "00000000000000000000"
    assert viewing.officer == "fg-test"
    assert viewing.purpose == "VERANTWOORDING"
    assert viewing.data_subject_id == env.pseudonym(VNUMMER)

    # The raw V-nummer is in no byte of the store (database file and its WAL).
    for path in env.state.glob("audit.db*"):
        assert VNUMMER.encode() not in path.read_bytes(), path


def test_search_filters_and_json(env: Env) -> None:
    env.seed()
    env.seed(OTHER, officer="agent-9")
    result = invoke("search", "--officer", "agent-9", "--json", "--as", "auditor-1")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 3
    assert {r["officer"] for r in rows} == {"agent-9"}
    assert rows[0]["data_subject_id"] == env.pseudonym(OTHER)
    assert rows[0]["decision"] == "given"

    result = invoke("search", "--org", "NVIK", "--doelbinding", "TOEZICHT_VW", "--json")
    assert len(json.loads(result.output)) == 6
    trace = rows[0]["trace_id"]
    result = invoke("search", "--trace-id", trace, "--json")
    assert {r["trace_id"] for r in json.loads(result.output)} == {trace}
    result = invoke("search", "--since", "1d", "--until", "2999-01-01", "--limit", "2", "--json")
    # seq is the request's entry: the first two records are both of the first request
    assert [r["seq"] for r in json.loads(result.output)] == [1, 1]
    result = invoke("search", "--until", "2000-01-01T00:00:00+01:00")
    assert result.exit_code == 0
    assert "0 record(s)" in result.output
    searches = [r for r in env.records() if r.coordinate == "Audit.search"]
    assert len(searches) == 5
    assert searches[0].officer == "auditor-1"
    assert searches[0].data_subject_id is None


def test_report_markdown_and_json(env: Env) -> None:
    env.seed()
    env.seed()
    env.seed(OTHER)
    result = invoke("report", "--vnummer", VNUMMER)
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("# Inzageverslag")
    assert "Accesses: 2" in text
    assert "NVIK" in text
    assert "agent-7" in text
    assert "TOEZICHT_VW" in text
    assert "Vw 2000 art. 107" in text
    assert "v.naam.geslachtsnaam" in text
    assert "v.religie (FIELD_NOT_PERMITTED)" in text
    assert VNUMMER not in text

    result = invoke("report", "--vnummer", VNUMMER, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["subject"] == env.pseudonym(VNUMMER)
    assert report["access_count"] == 3  # the markdown report above was itself recorded
    assert report["accesses"][2]["organisation"] == "KETENPOORT"
    access = report["accesses"][0]
    assert access["given"] == ["v.naam.geslachtsnaam", "v.opvang"]
    assert access["refused"] == [{"field": "v.religie", "reason": "FIELD_NOT_PERMITTED"}]
    assert access["purpose"] == "TOEZICHT_VW"

    # Each report is recorded against the subject, so the next report shows it.
    reports = [r for r in env.records() if r.coordinate == "Audit.report"]
    assert len(reports) == 2
    assert {r.data_subject_id for r in reports} == {env.pseudonym(VNUMMER)}
    again = json.loads(invoke("report", "--vnummer", VNUMMER, "--json").output)
    assert again["access_count"] == 4
    assert {a["organisation"] for a in again["accesses"]} == {"NVIK", "KETENPOORT"}


def test_verify_ok_then_names_the_tampered_entry(env: Env) -> None:
    env.seed()
    env.seed()
    env.seed()
    result = invoke("verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 3 entries (9 records) verified")

    with sqlite3.connect(env.db) as conn:
        conn.execute("UPDATE audit_entry SET officer = 'agent-8' WHERE seq = 2")
    result = invoke("verify")
    assert result.exit_code == 1
    assert "BROKEN at entry seq 2: entry 2: entry row altered" in result.output
    with sqlite3.connect(env.db) as conn:
        conn.execute("UPDATE audit_entry SET officer = 'agent-7' WHERE seq = 2")
    assert invoke("verify").exit_code == 0

    # The person's line in an entry: moved to another person, then removed.
    other = env.pseudonym(OTHER)
    with sqlite3.connect(env.db) as conn:
        conn.execute(
            "UPDATE audit_entry_subject SET subject = ? WHERE entry_seq = 3 AND position = 0",
            (other,),
        )
    result = invoke("verify")
    assert result.exit_code == 1
    assert "BROKEN at entry seq 3: entry 3: subject row altered" in result.output
    with sqlite3.connect(env.db) as conn:
        conn.execute("DELETE FROM audit_entry_subject WHERE entry_seq = 3")
    result = invoke("verify")
    assert result.exit_code == 1
    assert "BROKEN at entry seq 3: entry 3: subject row added or removed" in result.output


def test_purge(env: Env) -> None:
    env.seed()
    result = invoke("purge", "--older-than", "30d", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged 0 record(s)" in result.output
    time.sleep(1.2)
    # 1 s would cut into TOEZICHT_VW's five-year retention: refused, nothing removed.
    result = invoke("purge", "--older-than", "1s", "--yes")
    assert result.exit_code == 2, result.output
    assert "TOEZICHT_VW" in result.output and "1826 days" in result.output
    assert len(env.records()) == 4  # 3 seeded + the first purge's record
    # Without --older-than: each purpose's own retention; nothing is that old yet.
    result = invoke("purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged 0 record(s) past their purpose's retention" in result.output
    records = env.records()
    assert [r.coordinate for r in records][-1] == "Audit.purge"
    assert records[-1].reason == "RETENTION_PURGE"
    assert records[-1].officer == "fg-test"
    assert invoke("verify").exit_code == 0

    result = invoke("purge", "--older-than", "30d", input="n\n")
    assert result.exit_code == 1
    assert len(env.records()) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--vnummer", "12345"], "10 digits"),
        (["report", "--vnummer", "V123456789"], "10 digits"),
        (["purge", "--older-than", "soon", "--yes"], "invalid duration"),
        (["purge", "--older-than", "0d", "--yes"], "positive"),
        (["search", "--since", "yesterday-ish"], "invalid time"),
        (["verify", "--store", "mysql://db/audit"], "unsupported audit store URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(env: Env, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "12345" not in result.output
    assert result.output.count("\n") == 1


def test_unavailable_store_exits_1(env: Env) -> None:
    env.seed()
    with sqlite3.connect(env.db) as conn:
        conn.execute("ALTER TABLE audit_entry RENAME TO hidden")
    result = invoke("search")
    assert result.exit_code == 1
    assert "audit store unavailable" in result.output
    assert "Traceback" not in result.output


def test_old_per_record_layout_is_refused_with_a_clear_message(env: Env) -> None:
    env.state.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(env.db) as conn:
        conn.execute("CREATE TABLE audit_record (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL)")
        conn.execute("INSERT INTO audit_record VALUES (1, ?)", ("ab" * 32,))
    for args in (["verify"], ["search"]):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert "earlier one-row-per-record layout (table audit_record)" in result.output
        assert "Traceback" not in result.output
    with sqlite3.connect(env.db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"audit_record"}, "nothing of the new layout was mixed in"


def test_missing_officer_is_refused(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USER")
    monkeypatch.delenv("LOGNAME", raising=False)
    result = invoke("search")
    assert result.exit_code == 2
    assert "--officer" in result.output


def test_state_option_moves_the_default_store(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KETENPOORT_AUDIT_STORE")
    other = tmp_path / "other"
    result = invoke("search", "--state", str(other))
    assert result.exit_code == 0, result.output
    assert (other / "audit.db").exists()
    assert not env.db.exists()


def test_parse_duration() -> None:
    assert parse_duration("30d") == dt.timedelta(days=30)
    assert parse_duration("12h") == dt.timedelta(hours=12)
    assert parse_duration("90m") == dt.timedelta(minutes=90)
    assert parse_duration("1d12h") == dt.timedelta(days=1, hours=12)
