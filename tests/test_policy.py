"""The policy: loading, validation, compiled decisions, explain, render and the CLI.

Table-driven over the small fixture policies in tests/fixtures/policies/ (basis.yaml is valid;
each ongeldig_*.yaml has exactly one defect) and over the default policy/ketenbeleid.yaml.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.assembly.policy_file import load_policy
from gateway.cli.policy import app
from gateway.domain import (
    CRIMINAL_DATA,
    CRIMINAL_DATA_TYPES,
    SPECIAL_CATEGORY,
    SPECIAL_CATEGORY_TYPES,
)
from gateway.execution.schema import graphql_schema, schema_coordinates
from gateway.policy.model import (
    AGGREGATES_ONLY,
    ART9_NO_BASIS,
    ART10_NO_BASIS,
    DEFAULT_DENY,
    PURPOSE_FORBIDDEN,
    PURPOSE_SUSPENDED,
    Policy,
    PolicyError,
    Scope,
    explain,
)
from gateway.policy.register import render_markdown

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "policies"
DEFAULT_POLICY = ROOT / "policy" / "ketenbeleid.yaml"


@pytest.fixture(scope="module")
def coordinates() -> Mapping[str, str]:
    return schema_coordinates(graphql_schema())


@pytest.fixture(scope="module")
def basis(coordinates: Mapping[str, str]) -> Policy:
    return load_policy(FIXTURES / "basis.yaml", coordinates)


@pytest.fixture(scope="module")
def default(coordinates: Mapping[str, str]) -> Policy:
    return load_policy(DEFAULT_POLICY, coordinates)


# --- decisions on the fixture policy -------------------------------------------------------------

DECISIONS = [
    # (org, roles, purpose, coordinate, given, reason)
    # default deny: not listed by any rule
    ("ORG_A", ["lezer"], "P_BASIS", "Vreemdeling.geslacht", False, DEFAULT_DENY),
    ("ORG_A", ["lezer"], "P_BASIS", "Naam.voornamen", True, "A-lezer-BASIS"),
    # unknown organisation / no roles / foreign roles: nothing
    ("ORG_X", ["lezer"], "P_BASIS", "Vreemdeling.vnummer", False, DEFAULT_DENY),
    ("ORG_A", [], "P_BASIS", "Vreemdeling.vnummer", False, DEFAULT_DENY),
    ("ORG_A", ["x"], "P_BASIS", "Vreemdeling.vnummer", False, DEFAULT_DENY),
    # role union: lezer gives Naam.*, schrijver gives Geboorte.* ...
    ("ORG_A", ["lezer", "schrijver"], "P_BASIS", "Geboorte.datum", True, "A-schrijver-BASIS"),
    ("ORG_A", ["lezer", "schrijver"], "P_BASIS", "Naam.geslachtsnaam", True, "A-lezer-BASIS"),
    # ... but schrijver's forbid beats lezer's allow
    (
        "ORG_A",
        ["lezer", "schrijver"],
        "P_BASIS",
        "Naam.voornamen",
        False,
        "A-schrijver-geen-voornamen",
    ),
    ("ORG_A", ["schrijver"], "P_BASIS", "Geboorte.datum", True, "A-schrijver-BASIS"),
    ("ORG_A", ["lezer"], "P_BASIS", "Geboorte.datum", False, DEFAULT_DENY),
    # special category / criminal data without basis: refused whatever the rule says
    ("ORG_A", ["lezer"], "P_BASIS", "Vreemdeling.biometrie", False, ART9_NO_BASIS),
    ("ORG_A", ["lezer"], "P_BASIS", "Biometrie.opnamedatum", False, ART9_NO_BASIS),
    ("ORG_A", ["lezer"], "P_BASIS", "Vreemdeling.strafrechtelijkeGegevens", False, ART10_NO_BASIS),
    ("ORG_A", ["lezer"], "P_BASIS", "StrafrechtelijkGegeven.feit", False, ART10_NO_BASIS),
    # ... with basis: given
    ("ORG_A", ["lezer"], "P_ART9", "Vreemdeling.biometrie", True, "A-lezer-ART9"),
    ("ORG_A", ["lezer"], "P_ART9", "Gezondheid.zorgbehoefte", True, "A-lezer-ART9"),
    ("ORG_A", ["lezer"], "P_ART10", "StrafrechtelijkGegeven.feit", True, "A-lezer-ART10"),
    ("ORG_A", ["lezer"], "P_ART10", "Biometrie.opnamedatum", False, ART9_NO_BASIS),
    # Type.* expansion, minus the wildcard forbid and the legal safeguards
    ("ORG_B", ["x"], "P_BASIS", "Vreemdeling.geslacht", True, "B-x-BASIS"),
    ("ORG_B", ["x"], "P_BASIS", "Vreemdeling.procedures", True, "B-x-BASIS"),
    ("ORG_B", ["x"], "P_BASIS", "Vreemdeling.religie", False, "KETEN-geen-religie"),
    ("ORG_B", ["x"], "P_BASIS", "Vreemdeling.gezondheid", False, ART9_NO_BASIS),
    ("ORG_B", ["x"], "P_BASIS", "Vreemdeling.etniciteit", False, ART9_NO_BASIS),
    ("ORG_B", ["x"], "P_BASIS", "Naam.voornamen", False, DEFAULT_DENY),
    # status: nothing given, reason says why
    ("ORG_A", ["lezer"], "P_OPGESCHORT", "Vreemdeling.vnummer", False, PURPOSE_SUSPENDED),
    ("ORG_A", ["lezer"], "P_OPGESCHORT", "Vreemdeling.naam", False, DEFAULT_DENY),
    ("ORG_A", ["lezer"], "P_VERBODEN", "Vreemdeling.vnummer", False, DEFAULT_DENY),
    # aggregates only
    ("ORG_A", ["lezer"], "P_AGG", "StatistiekCel.aantal", True, "A-lezer-AGG"),
    ("ORG_A", ["lezer"], "P_AGG", "Query.opvangstatistiek", True, "A-lezer-AGG"),
    ("ORG_A", ["lezer"], "P_AGG", "Vreemdeling.vnummer", False, AGGREGATES_ONLY),
    ("ORG_A", ["lezer"], "P_AGG", "Query.vreemdeling", False, AGGREGATES_ONLY),
    # not in the schema at all
    ("ORG_A", ["lezer"], "P_BASIS", "Vreemdeling.schoenmaat", False, DEFAULT_DENY),
]


@pytest.mark.parametrize(("org", "roles", "purpose", "coordinate", "given", "reason"), DECISIONS)
def test_decision(
    basis: Policy,
    org: str,
    roles: list[str],
    purpose: str,
    coordinate: str,
    given: bool,
    reason: str,
) -> None:
    assert basis.grant(org, roles, purpose).decide(coordinate) == (given, reason)


def test_every_coordinate_has_a_reason(basis: Policy) -> None:
    grant = basis.grant("ORG_A", ["lezer"], "P_BASIS")
    assert set(grant.reasons) == set(basis.coordinates)
    assert grant.allowed <= set(basis.coordinates)
    assert all(grant.reasons[c] not in (DEFAULT_DENY,) for c in grant.allowed)


def test_grant_is_cached_and_ignores_role_order_and_unknown_roles(basis: Policy) -> None:
    first = basis.grant("ORG_A", ["lezer", "schrijver"], "P_BASIS")
    assert basis.grant("ORG_A", ("schrijver", "lezer", "onbekend"), "P_BASIS") is first
    assert first.purpose_id == "P_BASIS"


def test_grant_unknown_purpose_raises(basis: Policy) -> None:
    with pytest.raises(KeyError, match="NIET_BESTAAND"):
        basis.grant("ORG_A", ["lezer"], "NIET_BESTAAND")


def test_suspended_purpose_keeps_the_approved_set_for_the_register(basis: Policy) -> None:
    grant = basis.grant("ORG_A", ["lezer"], "P_OPGESCHORT")
    assert grant.allowed == frozenset()
    assert grant.approved == {"Query.vreemdeling", "Vreemdeling.vnummer"}


def test_purposes_for(basis: Policy) -> None:
    assert basis.purposes_for("ORG_A", ["lezer"]) == {
        "P_BASIS",
        "P_ART9",
        "P_ART10",
        "P_OPGESCHORT",
        "P_VERBODEN",
        "P_AGG",
    }
    assert basis.purposes_for("ORG_A", ["schrijver"]) == {"P_BASIS"}
    assert basis.purposes_for("ORG_B", ["lezer"]) == set()


def test_purposes_scopes_and_statuses(basis: Policy) -> None:
    p = basis.purposes
    assert p["P_BASIS"].rijbereik is None
    assert p["P_ART9"].rijbereik == Scope("signaal", "NATIONALE_VEILIGHEID")
    assert p["P_ART10"].rijbereik == Scope("meldplicht", "actief")
    assert Scope("signaal", "NATIONALE_VEILIGHEID").as_condition() == {
        "signaal": "NATIONALE_VEILIGHEID"
    }
    assert Scope("meldplicht", "actief").as_condition() == {"meldplicht": True}
    assert (p["P_OPGESCHORT"].status, p["P_OPGESCHORT"].status_reason) == (
        "opgeschort",
        "wordt hersteld",
    )
    assert p["P_VERBODEN"].status == "verboden"
    assert not p["P_VERBODEN"].active
    assert p["P_AGG"].aggregates_only
    assert p["P_AGG"].min_cell == 10


def test_identity_helpers(basis: Policy) -> None:
    path = FIXTURES / "basis.yaml"
    assert basis.version == hashlib.sha256(path.read_bytes()).hexdigest()
    assert basis.short_version == basis.version[:16]
    org = basis.organisation_by_oin("00000099000000000002")
    assert org is not None
    assert org.id == "ORG_B"
    assert basis.organisation_by_oin("00000099000000000099") is None
    assert (
        basis.processing_activity_uri("p-art9")
        == "https://register.test.example/verwerkingen/p-art9"
    )
    with pytest.raises(KeyError):
        basis.processing_activity_uri("niet-geregistreerd")


def test_warnings_name_the_rules_that_the_safeguards_overrule(basis: Policy) -> None:
    text = "\n".join(basis.warnings)
    assert "A-lezer-BASIS" in text
    assert "Vreemdeling.biometrie" in text
    assert ART9_NO_BASIS in text
    assert "StrafrechtelijkGegeven.feit" in text
    assert ART10_NO_BASIS in text
    assert "A-lezer-AGG" in text
    assert AGGREGATES_ONLY in text
    assert "Vreemdeling.naam but no field of Naam" in text  # ORG_B: Vreemdeling.* without Naam.*


def test_explain_lists_every_coordinate_in_schema_order(basis: Policy) -> None:
    rows = explain(basis, "ORG_A", ["schrijver"], "P_BASIS")
    assert [c for c, _, _ in rows] == list(basis.coordinates)
    assert ("Naam.voornamen", False, "A-schrijver-geen-voornamen") in rows
    assert ("Geboorte.land", True, "A-schrijver-BASIS") in rows


# --- validation ----------------------------------------------------------------------------------

INVALID = [
    ("ongeldig_onbekend_coordinaat.yaml", ["autorisaties[0]", "'R'", "Vreemdeling.schoenmaat"]),
    ("ongeldig_onbekend_type.yaml", ["autorisaties[0]", "Schoen.*"]),
    ("ongeldig_onbekende_doelbinding.yaml", ["autorisaties[0]", "NIET_BESTAAND"]),
    ("ongeldig_onbekende_organisatie.yaml", ["autorisaties[0]", "unknown organisation 'XYZ'"]),
    ("ongeldig_onbekende_rol.yaml", ["autorisaties[0]", "unknown role 'lezr'"]),
    ("ongeldig_dubbel_id.yaml", ["doelbindingen[1]", "duplicate purpose id 'P'"]),
    ("ongeldig_foute_oin.yaml", ["organisaties[0]", "'ORG_A'", "20 digits", "12345"]),
    ("ongeldig_oin_niet_gequote.yaml", ["organisaties[0]", "quoted"]),
    ("ongeldig_foute_status.yaml", ["doelbindingen[0]", "'status'", "gepauzeerd"]),
    ("ongeldig_ontbrekende_reden.yaml", ["doelbindingen[0]", "'status_reden' is required"]),
    ("ongeldig_onbekende_sleutel.yaml", ["autorisaties[0]", "unknown key 'efect'"]),
    ("ongeldig_wildcard_in_toestaan.yaml", ["autorisaties[0]", "'doelbinding'", "'*'"]),
    ("ongeldig_dubbele_sleutel.yaml", ["duplicate key 'doelbinding'"]),
]


@pytest.mark.parametrize(("name", "fragments"), INVALID)
def test_invalid_policy_is_rejected_naming_file_and_item(
    coordinates: Mapping[str, str], name: str, fragments: list[str]
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(FIXTURES / name, coordinates)
    message = str(caught.value)
    assert name in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_a_policy_error(coordinates: Mapping[str, str], tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "geen.yaml", coordinates)


def test_all_problems_are_reported_at_once(coordinates: Mapping[str, str], tmp_path: Path) -> None:
    text = (FIXTURES / "ongeldig_foute_oin.yaml").read_text(encoding="utf-8")
    text = text.replace("status: actief", "status: gepauzeerd")
    path = tmp_path / "twee_fouten.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path, coordinates)
    assert len(caught.value.problems) >= 2


# --- the default policy (the letter) -------------------------------------------------------------

TOEZICHT_VW_SET = {
    "Query.vreemdeling",
    "Query.vreemdelingen",
    "Query.zoekVreemdelingen",
    "Vreemdeling.vnummer",
    "Vreemdeling.naam",
    "Naam.voornamen",
    "Naam.voorvoegsel",
    "Naam.geslachtsnaam",
    "Vreemdeling.geboorte",
    "Geboorte.datum",
    "Geboorte.plaats",
    "Geboorte.land",
    "Vreemdeling.geslacht",
    "Vreemdeling.nationaliteiten",
    "Nationaliteit.code",
    "Nationaliteit.omschrijving",
    "Vreemdeling.verblijfsstatus",
    "Verblijfsstatus.soort",
    "Verblijfsstatus.ingangsdatum",
    "Verblijfsstatus.einddatum",
    "Verblijfsstatus.grondslag",
    "Vreemdeling.opvang",
    "Opvang.locatie",
    "Opvang.instroomdatum",
    "Opvang.uitstroomdatum",
    "Opvang.modaliteit",
    "Locatie.code",
    "Locatie.naam",
    "Locatie.gemeente",
    "Vreemdeling.meldplicht",
    "Meldplicht.actief",
    "Meldplicht.frequentie",
    "Meldplicht.meldlocatie",
    "Meldplicht.laatsteMelding",
}


def test_default_policy_loads_without_warnings(default: Policy) -> None:
    assert default.warnings == ()
    assert set(default.organisations) == {"NVIK", "COA", "IND", "DTV", "KMAR"}
    for org in default.organisations.values():
        assert org.oin.startswith("0000009900")
        assert len(org.oin) == 20


def test_default_toezicht_vw_is_exactly_the_limited_set(default: Policy) -> None:
    grant = default.grant("NVIK", ["analist"], "TOEZICHT_VW")
    assert grant.allowed == TOEZICHT_VW_SET
    for refused in (
        "Vreemdeling.religie",
        "Vreemdeling.gezondheid",
        "Vreemdeling.biometrie",
        "Vreemdeling.strafrechtelijkeGegevens",
        "Vreemdeling.procedures",
        "Vreemdeling.signaleringen",
        "Query.opvangstatistiek",
        "Query.auditZoeken",
    ):
        assert not grant.decide(refused)[0]
    purpose = default.purposes["TOEZICHT_VW"]
    assert purpose.bijzondere_grondslag is None
    assert purpose.strafrechtelijke_grondslag is None


def test_default_no_special_category_without_basis_anywhere(default: Policy) -> None:
    """For every caller the rules name, no art. 9 / art. 10 field leaks without its basis."""
    for rule in default.rules:
        if rule.effect != "toestaan":
            continue
        for role in rule.roles:
            grant = default.grant(rule.organisation, [role], rule.purpose)
            purpose = grant.purpose
            for coordinate in grant.approved:
                owner = coordinate.partition(".")[0]
                if coordinate in SPECIAL_CATEGORY or owner in SPECIAL_CATEGORY_TYPES:
                    assert purpose.bijzondere_grondslag, (rule.id, coordinate)
                if coordinate in CRIMINAL_DATA or owner in CRIMINAL_DATA_TYPES:
                    assert purpose.strafrechtelijke_grondslag, (rule.id, coordinate)


@pytest.mark.parametrize(
    "coordinate",
    ["Vreemdeling.religie", "Vreemdeling.etniciteit", "Vreemdeling.seksueleGerichtheid"],
)
def test_default_sensitive_traits_forbidden_for_nvik_under_every_purpose(
    default: Policy, coordinate: str
) -> None:
    for purpose in default.purposes:
        given, reason = default.grant("NVIK", ["analist"], purpose).decide(coordinate)
        assert not given
        assert reason == "KETEN-geen-religie-etniciteit-seksuele-gerichtheid"


def test_default_statuses_follow_the_letter(default: Policy) -> None:
    mensenhandel = default.purposes["MENSENHANDEL"]
    assert mensenhandel.status == "opgeschort"
    assert mensenhandel.status_reason
    assert "COA" in mensenhandel.status_reason
    assert mensenhandel.rijbereik == Scope("signaal", "MENSENHANDEL")
    assert default.grant("NVIK", ["analist"], "MENSENHANDEL").allowed == frozenset()

    bezetting = default.purposes["BEZETTING"]
    assert bezetting.status == "verboden"
    assert bezetting.status_reason
    assert "evenredigheid" in bezetting.status_reason
    assert "BEZETTING" in default.purposes_for("NVIK", ["analist"])  # told why, not "not granted"
    assert default.grant("NVIK", ["analist"], "BEZETTING").allowed == frozenset()
    assert PURPOSE_FORBIDDEN not in default.grant("NVIK", ["analist"], "BEZETTING").reasons.values()


def test_default_analyse_gets_aggregates_only(default: Policy) -> None:
    purpose = default.purposes["ANALYSE"]
    assert purpose.aggregates_only
    assert purpose.min_cell == 10
    grant = default.grant("NVIK", ["analist"], "ANALYSE")
    assert grant.allowed == {
        "Query.opvangstatistiek",
        "StatistiekCel.sleutel",
        "StatistiekCel.aantal",
        "StatistiekCel.onderdrukt",
    }


@pytest.mark.parametrize(
    ("purpose", "scope", "cap"),
    [
        ("OVERLAST", Scope("signaal", "OVERLAST"), 50),
        ("TOP_X", Scope("signaal", "TOP_X"), 50),
        ("NATIONALE_VEILIGHEID", Scope("signaal", "NATIONALE_VEILIGHEID"), 50),
        ("MELDPLICHT", Scope("meldplicht", "actief"), 50),
        ("STRAFVORDERING", None, 5),
    ],
)
def test_default_continued_flows_have_scope_and_small_caps(
    default: Policy, purpose: str, scope: Scope | None, cap: int
) -> None:
    p = default.purposes[purpose]
    assert p.active
    assert p.rijbereik == scope
    assert 0 < p.max_subjects <= cap
    assert 0 < p.quota_per_day <= 500


def test_default_special_bases_where_needed(default: Policy) -> None:
    nv = default.grant("NVIK", ["analist"], "NATIONALE_VEILIGHEID")
    assert nv.decide("Biometrie.opnamedatum")[0]
    sv = default.grant("NVIK", ["analist"], "STRAFVORDERING")
    assert sv.decide("StrafrechtelijkGegeven.feit")[0]
    assert not sv.decide("Vreemdeling.biometrie")[0]
    ind = default.grant("IND", ["beslismedewerker"], "ASIEL_BEHANDELING")
    assert ind.decide("Procedure.beslissing")[0]
    assert ind.decide("Biometrie.opnamedatum")[0]


def test_default_accountability_only_for_security_and_fg(default: Policy) -> None:
    for role in ("beveiliging", "fg"):
        grant = default.grant("NVIK", [role], "VERANTWOORDING")
        assert "Query.auditZoeken" in grant.allowed
        assert "AuditRegel.betrokkene" in grant.allowed
    assert not default.grant("NVIK", ["analist"], "VERANTWOORDING").allowed
    assert default.purposes_for("NVIK", ["fg"]) == {"VERANTWOORDING"}


def test_default_partners_each_get_their_own_purpose(default: Policy) -> None:
    assert default.purposes_for("COA", ["medewerker"]) == {"OPVANG_UITVOERING"}
    assert default.purposes_for("IND", ["beslismedewerker"]) == {"ASIEL_BEHANDELING"}
    assert default.purposes_for("DTV", ["regievoerder"]) == {"TERUGKEER"}
    assert default.purposes_for("KMAR", ["grensbewaker"]) == {"GRENSTOEZICHT"}
    assert not default.grant("COA", ["medewerker"], "TOEZICHT_VW").allowed


def test_default_processing_activities(default: Policy) -> None:
    uri = default.processing_activity_uri("nvik-toezicht-vw")
    assert uri == "https://register.ketenpoort.example/verwerkingen/nvik-toezicht-vw"
    assert all(p.processing_activities for p in default.purposes.values())


# --- render --------------------------------------------------------------------------------------


def test_render_contains_every_purpose_and_is_deterministic(default: Policy) -> None:
    text = render_markdown(default)
    assert text == render_markdown(default)
    assert default.version in text
    for purpose in default.purposes.values():
        assert f"## Doelbinding `{purpose.id}`" in text
        assert purpose.grondslag in text
        if purpose.status_reason:
            assert purpose.status_reason in text
    assert "- **Naam**: voornamen, voorvoegsel, geslachtsnaam" in text
    assert "cellen met minder dan 10 personen" in text


def test_render_shows_safeguard_refusals(basis: Policy) -> None:
    text = render_markdown(basis)
    assert "`Vreemdeling.biometrie`: bijzonder persoonsgegeven zonder grondslag" in text
    assert "Zolang de status opgeschort is, wordt niets verstrekt." in text


# --- CLI ------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_check_default() -> None:
    result = runner.invoke(app, ["check", str(DEFAULT_POLICY)])
    assert result.exit_code == 0, result.output
    assert "policy OK" in result.output
    assert hashlib.sha256(DEFAULT_POLICY.read_bytes()).hexdigest() in result.output
    assert "purposes: 14" in result.output


def test_cli_check_uses_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETENPOORT_POLICY", str(FIXTURES / "basis.yaml"))
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0
    assert "test-basis" in result.output
    assert "warning:" in result.output  # the fixture has rules the safeguards overrule
    assert runner.invoke(app, ["check", "--strict"]).exit_code == 1


def test_cli_check_invalid_exits_1_with_message() -> None:
    result = runner.invoke(app, ["check", str(FIXTURES / "ongeldig_onbekend_coordinaat.yaml")])
    assert result.exit_code == 1
    assert "Vreemdeling.schoenmaat" in result.output


def test_cli_explain_text_and_all() -> None:
    base = ["explain", "--policy", str(DEFAULT_POLICY), "--org", "NVIK", "--role", "analist"]
    result = runner.invoke(app, [*base, "--doelbinding", "TOEZICHT_VW"])
    assert result.exit_code == 0, result.output
    assert "Naam.voornamen" in result.output
    assert "NVIK-analist-TOEZICHT_VW" in result.output
    assert "Vreemdeling.religie" not in result.output
    result = runner.invoke(app, [*base, "--doelbinding", "TOEZICHT_VW", "--all"])
    assert "KETEN-geen-religie-etniciteit-seksuele-gerichtheid" in result.output
    result = runner.invoke(app, [*base, "--doelbinding", "BEZETTING"])
    assert "verboden" in result.output
    assert "evenredigheid" in result.output


def test_cli_explain_json_with_several_roles() -> None:
    result = runner.invoke(
        app,
        [
            "explain",
            "--policy",
            str(DEFAULT_POLICY),
            "--org",
            "NVIK",
            "--role",
            "beveiliging",
            "--role",
            "fg",
            "--doelbinding",
            "VERANTWOORDING",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["rollen"] == ["beveiliging", "fg"]
    assert document["toegekend"] is True
    assert {v["coordinaat"] for v in document["velden"]} >= {"Query.auditZoeken"}
    assert all(v["toegestaan"] for v in document["velden"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--org", "XYZ", "--role", "a", "--doelbinding", "TOEZICHT_VW"], "unknown organisation"),
        (["--org", "NVIK", "--role", "analist", "--doelbinding", "ZZZ"], "unknown purpose"),
    ],
)
def test_cli_explain_unknown_arguments(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["explain", "--policy", str(DEFAULT_POLICY), *args])
    assert result.exit_code == 2
    assert fragment in result.output


def test_cli_render_to_file(tmp_path: Path) -> None:
    target = tmp_path / "register.md"
    result = runner.invoke(app, ["render", str(DEFAULT_POLICY), "--output", str(target)])
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert "## Doelbinding `BEZETTING`" in text
    assert "## Doelbinding `ANALYSE`" in text
    stdout = runner.invoke(app, ["render", str(DEFAULT_POLICY)])
    assert stdout.output == text
