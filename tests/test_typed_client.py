"""The typed-client example works as documented: the caller's schema from ``ketenpoort schema``,
a client generated from it with ariadne-codegen (in a temporary folder, never committed), run
against ``ketenpoort serve``; its typed answer is the person in the mock registries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mocks import Population
from tests.tools import EXAMPLE_CLIENT, example_client_tools, ketenpoort, ketenpoort_serve

CALLER = ("--org", "NVIK", "--role", "analist", "--doelbinding", "TOEZICHT_VW")


@pytest.mark.timeout(600)
def test_the_generated_client_gets_a_typed_answer(tmp_path: Path) -> None:
    tools = example_client_tools()
    env = {"KETENPOORT_STATE": str(tmp_path / "state"), "KETENPOORT_TRACES": "none"}
    work = tmp_path / "client"
    work.mkdir()
    for name in ("pyproject.toml", "queries.graphql", "main.py"):
        shutil.copy(EXAMPLE_CLIENT / name, work / name)
    (work / "schema.graphql").write_text(ketenpoort("schema", *CALLER, env=env))
    generated = subprocess.run(  # noqa: S603 - the example's own tool
        [str(tools / "ariadne-codegen"), "--config", "pyproject.toml"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert (work / "ketenpoort_client" / "client.py").exists()

    population = Population()
    vnummer = population.vnummer(3)
    record = population.record(3)
    token = ketenpoort("token", *CALLER, env=env).strip().splitlines()[-1]
    with ketenpoort_serve(env) as base:
        run = subprocess.run(  # noqa: S603 - the example's own program
            [str(tools / "python"), "main.py"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "KETENPOORT_URL": f"{base}/graphql",
                "KETENPOORT_TOKEN": token,
                "VNUMMER": vnummer,
            },
            check=False,
        )
        refused = subprocess.run(  # noqa: S603
            [str(tools / "python"), "main.py"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "KETENPOORT_URL": f"{base}/graphql",
                "KETENPOORT_TOKEN": "not-a-token",
                "VNUMMER": vnummer,
            },
            check=False,
        )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    status = record["verblijfsstatus"]
    assert answer == {
        "vnummer": vnummer,
        "geslachtsnaam": record["naam"]["geslachtsnaam"],
        "geboortedatum": record["geboorte"]["datum"],
        "geboortejaar": int(record["geboorte"]["datum"][:4]),
        "verblijfsstatus": status["soort"] if status else None,
    }
    assert refused.returncode == 1
    assert json.loads(refused.stderr.strip().splitlines()[-1]) == {
        "status": 401,
        "refused": ["UNAUTHENTICATED"],
    }
