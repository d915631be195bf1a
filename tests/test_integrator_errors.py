"""Refusals that send an integrator to the right place: a wrong X-Verwerking names the
registered activities, and ``ketenpoort token`` refuses a role the policy does not know."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.assembly.runtime import Running
from gateway.cli.main import app as cli_app
from mocks import Registries
from tests.support import caller

QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer } }"


@pytest.mark.parametrize("activity", ["nvik-overlast", "iets-anders"])
async def test_a_wrong_processing_activity_names_the_registered_ones(
    gateway: Running, mock_registries: Registries, tmp_path: Path, activity: str
) -> None:
    who = caller(
        gateway,
        tmp_path / "state",
        org="NVIK",
        roles=["analist"],
        purpose="TOEZICHT_VW",
        activity=activity,
    )
    answer = await who.query(QUERY, {"v": mock_registries.population.vnummer(2)})
    assert answer.status == 403
    assert not answer.executed
    (error,) = answer.body["errors"]
    registered = list(gateway.gateway.policy.purposes["TOEZICHT_VW"].processing_activities)
    assert registered == ["nvik-toezicht-vw"]
    assert error["extensions"] == {
        "code": "PROCESSING_ACTIVITY_NOT_REGISTERED",
        "doelbinding": "TOEZICHT_VW",
        "verwerking": activity,
        "geregistreerd": registered,
    }
    assert "nvik-toezicht-vw" in error["message"]
    assert "X-Verwerking" in error["message"]
    assert all(registry.served == [] for registry in mock_registries.all)


async def test_a_purpose_not_granted_does_not_list_its_activities(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    who = caller(
        gateway,
        tmp_path / "state",
        org="COA",
        roles=["medewerker"],
        purpose="TOEZICHT_VW",
        activity="iets-anders",
    )
    answer = await who.query(QUERY, {"v": mock_registries.population.vnummer(2)})
    assert answer.status == 403
    (error,) = answer.body["errors"]
    assert error["extensions"]["code"] == "PURPOSE_NOT_GRANTED"
    assert "nvik-toezicht-vw" not in str(answer.body)


def token(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli_app, ["token", *args], env={"KETENPOORT_STATE": str(tmp_path / "state")}
    )
    return result.exit_code, result.stdout, result.stderr


def test_token_refuses_a_role_unknown_to_the_organisation(tmp_path: Path) -> None:
    code, out, err = token(
        tmp_path, "--org", "NVIK", "--role", "medewerker", "--doelbinding", "TOEZICHT_VW"
    )
    assert code == 2
    assert out == ""
    assert "unknown role(s) for NVIK: medewerker" in err
    assert "known: analist, beveiliging, fg" in err
    code, out, _ = token(
        tmp_path, "--org", "NVIK", "--role", "analist", "--doelbinding", "TOEZICHT_VW"
    )
    assert code == 0
    assert out.strip().count(".") == 2  # a JWT: header.claims.signature
