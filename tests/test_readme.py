"""The README says what is true: its purposes table is the policy's, its settings table names
every setting, its error table every code, and its first query and audit commands and its cache
purge, run in order as written on a fresh state folder against ``ketenpoort serve``, work (without
``$USER``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.assembly.policy_file import load_policy
from gateway.cli.main import app as cli_app
from gateway.cli.policy import gateway_coordinates
from gateway.config import DEFAULT_POLICY
from gateway.errors import Code
from gateway.policy.register import purposes_table
from tests.tools import ketenpoort_serve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of the same level."""
    level = title.split(" ")[0]
    start = README.index(title + "\n")
    following = re.search(rf"^{level} ", README[start + len(title) :], flags=re.M)
    end = start + len(title) + following.start() if following else len(README)
    return README[start:end]


def test_the_purposes_table_is_the_policys() -> None:
    table = README.split("<!-- purposes:begin -->\n")[1].split("<!-- purposes:end -->")[0]
    assert table == purposes_table(load_policy(DEFAULT_POLICY, gateway_coordinates())), (
        "README's purposes table is stale: paste `ketenpoort policy purposes` between its markers"
    )


def test_the_settings_table_names_every_setting() -> None:
    config = (ROOT / "gateway" / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"(KETENPOORT_[A-Z_]+)"', config))
    help_text = CliRunner().invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"}).stdout
    flagged = set(re.findall(r"\((?:env )?(KETENPOORT_[A-Z_]+)\)", help_text))
    assert {"KETENPOORT_HOST", "KETENPOORT_PORT"} <= read
    assert flagged <= read
    table = section("## Configuration").split("### Error codes")[0]
    documented = set(re.findall(r"`(KETENPOORT_[A-Z_]+)`", table))
    assert read - documented == set(), "settings missing from README's Configuration table"
    assert documented - read == set(), "README documents settings the gateway does not read"
    for flag in re.findall(r"(--[a-z-]+)", help_text):
        if flag != "--help":
            assert f"`{flag}`" in table, f"serve's {flag} is not in the table"


def test_the_error_table_names_every_code() -> None:
    table = section("### Error codes")
    for code in Code:
        assert f"`{code.value}`" in table, f"{code.value} is missing from README's error codes"


def shell_blocks(title: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section(title), flags=re.S)


def run_against_serve(tmp_path: Path, script: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Run README commands with bash against ``ketenpoort serve`` on a fresh state folder, without
    ``$USER`` and without any ``KETENPOORT_*`` of the caller's: (its base URL, the run)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("USER", "LOGNAME") and "KETENPOORT" not in k
    }
    env |= {"KETENPOORT_STATE": str(tmp_path / "state"), "KETENPOORT_TRACES": "none"}
    with ketenpoort_serve(env) as base:
        # The one change: the port this test's server listens on instead of 8000.
        done = subprocess.run(  # noqa: S603 - the README's own commands
            ["/bin/bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8000", base)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return base, done


@pytest.mark.timeout(180)
def test_the_first_query_and_the_audit_commands_work_as_written(tmp_path: Path) -> None:
    blocks = shell_blocks("## A first query")
    assert len(blocks) == 2, "expected the query block and the audit block"
    _, done = run_against_serve(tmp_path, "\n".join(blocks))
    assert done.returncode == 0, done.stderr[-3000:]
    # curl's answer has no newline of its own: the audit output follows it directly.
    answer, end = json.JSONDecoder().raw_decode(done.stdout)
    audit_output = done.stdout[end:]
    person = answer["data"]["vreemdeling"]
    assert person["vnummer"] and person["naam"]["geslachtsnaam"]
    assert person["religie"] is None
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["FIELD_NOT_PERMITTED"]
    # search: the refused field is on record; report: the search itself, by --as; verify: OK.
    assert "refused FIELD_NOT_PERMITTED" in audit_output, audit_output
    assert "vreemdeling.religie" in audit_output
    assert "- Officer: fg-001" in audit_output
    assert re.search(r"^OK: \d+ entries", audit_output, flags=re.M), audit_output


@pytest.mark.timeout(180)
def test_the_cache_purge_works_as_written(tmp_path: Path) -> None:
    """The purge block, after the first query cached a person, against ``ketenpoort serve``:
    the person's answers go from the running gateway's memory cache, and the trail says so."""
    query_block = shell_blocks("## A first query")[0]
    blocks = shell_blocks("### Purging a person's cached data")
    assert len(blocks) == 1, "expected the purge block"
    check = '\necho\n.venv/bin/ketenpoort audit search --vnummer "$V" --as fg-001\n'
    base, done = run_against_serve(tmp_path, query_block + "\necho\n" + blocks[0] + check)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(
        rf"^{re.escape(base)}: removed [1-9]\d* cached answer\(s\) about this person "
        r"\(memory cache; recorded, trace [0-9a-f]{32}\)$",
        done.stdout,
        flags=re.M,
    ), done.stdout
    purges = [line for line in done.stdout.splitlines() if "Cache.purge" in line]
    assert len(purges) == 1 and " fg-001 " in purges[0] and "VERANTWOORDING" in purges[0], purges
