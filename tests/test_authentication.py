"""Negative paths of authentication and purpose admission: code AND HTTP status, nothing fetched.

Every authentication failure looks the same to the caller (401 UNAUTHENTICATED, the generic
message, no data, no detail); every purpose failure has its own code and status. In none of them
does any registry receive a call. A policy naming an unknown schema coordinate refuses the start
and fails ``ketenpoort policy check``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import Running
from gateway.cli.main import app as cli_app
from gateway.config import DEFAULT_POLICY, Settings
from gateway.pipeline.answer import Answer
from gateway.policy.model import PolicyError
from mocks import Registries
from tests.support import Caller, caller

QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
GENERIC_401 = {
    "data": None,
    "errors": [{"message": "Authentication required.", "extensions": {"code": "UNAUTHENTICATED"}}],
}
NVIK_OIN = "00000099000000000101"
SETTINGS = Settings()
NOW = int(time.time())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims of an NVIK analist granted TOEZICHT_VW; ``changes`` override (None drops)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": SETTINGS.issuer,
        "aud": SETTINGS.audience,
        "sub": "medewerker-auth",
        "oin": NVIK_OIN,
        "org": "NVIK",
        "roles": ["analist"],
        "doelbindingen": ["TOEZICHT_VW"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def purpose_headers(authorization: str | None) -> dict[str, str]:
    headers = {"x-doelbinding": "TOEZICHT_VW", "x-verwerking": "nvik-toezicht-vw"}
    if authorization is not None:
        headers["authorization"] = authorization
    return headers


async def ask(running: Running, headers: dict[str, str], mocks: Registries) -> Answer:
    vnummer = mocks.population.vnummer(1)
    return await running.gateway.handle(headers, {"query": QUERY, "variables": {"v": vnummer}})


def assert_refused_401(answer: Answer, mocks: Registries) -> None:
    assert answer.status == 401, answer.body
    assert answer.body == GENERIC_401, "no data and no detail beyond the generic message"
    assert all(registry.served == [] for registry in mocks.all)


def dev_key(tmp_path: Path) -> bytes:
    return load_or_create_dev_key(tmp_path / "state")


# --- authentication (development mode: HS256 development tokens are accepted) -----------------


async def test_valid_development_token_is_accepted(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """Positive control: the same request with a correct token gets data."""
    token = jwt.encode(claims(), dev_key(tmp_path), algorithm="HS256")
    answer = await ask(gateway, purpose_headers(f"Bearer {token}"), mock_registries)
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert answer.body["data"]["vreemdeling"]["vnummer"] == mock_registries.population.vnummer(1)


def _none_token(_: bytes) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims()).encode())}."


def _none_token_capitalised(_: bytes) -> str:
    header = b64url(json.dumps({"alg": "None", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims()).encode())}."


def _none_token_with_valid_signature_part(key: bytes) -> str:
    """``alg: none`` header glued to a correctly signed body: the signature must not save it."""
    valid = jwt.encode(claims(), key, algorithm="HS256")
    _, body, signature = valid.split(".")
    return f"{b64url(json.dumps({'alg': 'none'}).encode())}.{body}.{signature}"


def _hs(**changes: Any) -> Callable[[bytes], str]:
    return lambda key: jwt.encode(claims(**changes), key, algorithm="HS256")


TOKENS: dict[str, Callable[[bytes], str]] = {
    "bad-signature": lambda _: jwt.encode(claims(), b"another-key-" * 4, algorithm="HS256"),
    "tampered-claims": lambda key: ".".join(
        [
            jwt.encode(claims(), key, algorithm="HS256").split(".")[0],
            b64url(json.dumps(claims(roles=["analist", "fg"])).encode()),
            jwt.encode(claims(), key, algorithm="HS256").split(".")[2],
        ]
    ),
    "expired": _hs(exp=NOW - 120, iat=NOW - 900, nbf=NOW - 900),
    "no-exp": _hs(exp=None),
    "not-yet-valid": _hs(nbf=NOW + 3600),
    "alg-none": _none_token,
    "alg-None": _none_token_capitalised,
    "alg-none-with-signature": _none_token_with_valid_signature_part,
    "wrong-audience": _hs(aud="een-andere-dienst"),
    "no-audience": _hs(aud=None),
    "wrong-issuer": _hs(iss="https://evil.example/"),
    "no-issuer": _hs(iss=None),
    "no-sub": _hs(sub=None),
    "oin-19-digits": _hs(oin=NVIK_OIN[:-1]),
    "oin-21-digits": _hs(oin=NVIK_OIN + "1"),
    "oin-letters": _hs(oin="0000009900000000010A"),
    "oin-number": _hs(oin=int(NVIK_OIN)),
    "oin-missing": _hs(oin=None),
}


@pytest.mark.parametrize("name", list(TOKENS))
async def test_bad_tokens_are_unauthenticated(
    gateway: Running, mock_registries: Registries, tmp_path: Path, name: str
) -> None:
    token = TOKENS[name](dev_key(tmp_path))
    answer = await ask(gateway, purpose_headers(f"Bearer {token}"), mock_registries)
    assert_refused_401(answer, mock_registries)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Basic YWxhZGRpbjpvcGVu",
        "Token abc.def.ghi",
        "bearer",
        "Bearer ....",
    ],
    ids=[
        "missing",
        "empty",
        "bearer-only",
        "bearer-space",
        "garbage",
        "abc",
        "basic",
        "token",
        "lowercase-only",
        "dots",
    ],
)
async def test_missing_or_malformed_authorization(
    gateway: Running, mock_registries: Registries, authorization: str | None
) -> None:
    answer = await ask(gateway, purpose_headers(authorization), mock_registries)
    assert_refused_401(answer, mock_registries)


async def test_token_without_bearer_scheme(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    token = jwt.encode(claims(), dev_key(tmp_path), algorithm="HS256")
    answer = await ask(gateway, purpose_headers(token), mock_registries)
    assert_refused_401(answer, mock_registries)


async def test_expiry_within_leeway_is_still_accepted(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """The leeway is small (clock skew), not a licence: 5 s past exp still works, 120 s not."""
    token = jwt.encode(claims(exp=int(time.time()) - 5), dev_key(tmp_path), algorithm="HS256")
    answer = await ask(gateway, purpose_headers(f"Bearer {token}"), mock_registries)
    assert answer.status == 200, answer.body


async def test_identity_claims_that_contradict_the_policy_get_nothing(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    """A token naming NVIK with COA's OIN, or an OIN the policy does not know, is refused."""
    key = dev_key(tmp_path)
    for changes in ({"oin": "00000099000000000202"}, {"oin": "00000099000000009999"}):
        token = jwt.encode(claims(**changes), key, algorithm="HS256")
        answer = await ask(gateway, purpose_headers(f"Bearer {token}"), mock_registries)
        assert answer.status in (401, 403), answer.body
        assert answer.body["data"] is None
        codes = [e["extensions"]["code"] for e in answer.body["errors"]]
        assert codes in (["UNAUTHENTICATED"], ["PURPOSE_NOT_GRANTED"]), codes
        assert all(registry.served == [] for registry in mock_registries.all)


# --- production mode: RS256 tokens verified against a JWKS file -------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_jwks(path: Path, key: rsa.RSAPrivateKey, kid: str) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    path.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")


def rs256(key: rsa.RSAPrivateKey, kid: str | None, **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**changes), key, algorithm="RS256", headers=headers)


async def test_production_mode_accepts_only_tokens_of_the_jwks(
    start: Any, mock_registries: Registries, tmp_path: Path
) -> None:
    trusted_key, other_key = rsa_key(), rsa_key()
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, trusted_key, "sleutel-1")
    running: Running = await start(mode="production", jwks=str(jwks))

    # Signed by the JWKS key: accepted, data comes.
    good = rs256(trusted_key, "sleutel-1")
    answer = await ask(running, purpose_headers(f"Bearer {good}"), mock_registries)
    assert answer.status == 200 and "errors" not in answer.body, answer.body
    assert answer.body["data"]["vreemdeling"]["naam"]["geslachtsnaam"]
    mock_registries.reset()

    public_pem = trusted_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "sleutel-1"}).encode())
    body = b64url(json.dumps(claims()).encode())
    confused = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    refused = {
        # Same kid, another RSA key: the signature does not verify.
        "other-rsa-key": rs256(other_key, "sleutel-1"),
        "other-rsa-key-no-kid": rs256(other_key, None),
        "unknown-kid": rs256(trusted_key, "sleutel-2"),
        # HS256 development tokens are refused outside development, with any key.
        "hs256-dev-key": jwt.encode(claims(), dev_key(tmp_path), algorithm="HS256"),
        "hs256-dev-mint": mint_dev_token(
            dev_key(tmp_path),
            issuer=SETTINGS.issuer,
            audience=SETTINGS.audience,
            subject="medewerker-auth",
            oin=NVIK_OIN,
            organisation="NVIK",
            roles=["analist"],
            purposes=["TOEZICHT_VW"],
        ),
        # Algorithm confusion: the public key used as an HMAC secret.
        "hs256-public-key-as-secret": f"{header}.{body}.{b64url(confused)}",
        "alg-none": _none_token(b""),
        "expired": rs256(trusted_key, "sleutel-1", exp=int(time.time()) - 120),
        "wrong-audience": rs256(trusted_key, "sleutel-1", aud="elders"),
        "wrong-issuer": rs256(trusted_key, "sleutel-1", iss="https://elders.example/"),
        "oin-short": rs256(trusted_key, "sleutel-1", oin="123"),
    }
    for name, token in refused.items():
        answer = await ask(running, purpose_headers(f"Bearer {token}"), mock_registries)
        assert answer.status == 401, (name, answer.body)
        assert answer.body == GENERIC_401, name
        assert all(registry.served == [] for registry in mock_registries.all), name


# --- purpose admission -------------------------------------------------------------------------


async def refused_purpose(who: Caller, mocks: Registries, **headers: str) -> Answer:
    answer = await who.query(QUERY, {"v": mocks.population.vnummer(2)}, **headers)
    assert answer.body["data"] is None, answer.body
    assert len(answer.body["errors"]) == 1, answer.body
    assert all(registry.served == [] for registry in mocks.all), "a refused purpose fetched data"
    return answer


@pytest.mark.parametrize(
    "drop", [("x-doelbinding",), ("x-verwerking",), ("x-doelbinding", "x-verwerking")]
)
async def test_missing_purpose_headers(
    gateway: Running, mock_registries: Registries, tmp_path: Path, drop: tuple[str, ...]
) -> None:
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
    headers = who.headers()
    for name in drop:
        del headers[name]
    payload = {"query": QUERY, "variables": {"v": mock_registries.population.vnummer(2)}}
    answer = await gateway.gateway.handle(headers, payload)
    assert answer.status == 400, answer.body
    assert answer.body["data"] is None
    assert [e["extensions"]["code"] for e in answer.body["errors"]] == ["PURPOSE_REQUIRED"]
    assert all(registry.served == [] for registry in mock_registries.all)


@pytest.mark.parametrize("header", ["x-doelbinding", "x-verwerking"])
async def test_blank_purpose_headers(
    gateway: Running, mock_registries: Registries, tmp_path: Path, header: str
) -> None:
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose="TOEZICHT_VW")
    answer = await refused_purpose(who, mock_registries, **{header: "   "})
    assert answer.status == 400
    assert answer.body["errors"][0]["extensions"]["code"] == "PURPOSE_REQUIRED"


NOT_GRANTED = {
    # The token does not carry the declared purpose.
    "not-in-token": dict(
        org="NVIK", roles=["analist"], purpose="TOEZICHT_VW", granted=["OVERLAST"]
    ),
    "token-without-purposes": dict(
        org="NVIK", roles=["analist"], purpose="TOEZICHT_VW", granted=[]
    ),
    # In the token, but the policy does not give it to this organisation / role.
    "other-orgs-purpose": dict(org="NVIK", roles=["analist"], purpose="OPVANG_UITVOERING"),
    "role-without-rule": dict(org="NVIK", roles=["fg"], purpose="TOEZICHT_VW"),
    "unknown-role": dict(org="NVIK", roles=["stagiair"], purpose="TOEZICHT_VW"),
    "no-roles": dict(org="NVIK", roles=[], purpose="TOEZICHT_VW"),
    "coa-asks-police-purpose": dict(org="COA", roles=["medewerker"], purpose="TOEZICHT_VW"),
    "kmar-asks-ind-purpose": dict(org="KMAR", roles=["grensbewaker"], purpose="ASIEL_BEHANDELING"),
    "unknown-purpose": dict(
        org="NVIK", roles=["analist"], purpose="ONBEKEND", activity="nvik-toezicht-vw"
    ),
}
# A granted purpose with an X-Verwerking that is not one of its processing activities has a code
# of its own: tests/test_integrator_errors.py.


@pytest.mark.parametrize("case", list(NOT_GRANTED))
async def test_purpose_not_granted(
    gateway: Running, mock_registries: Registries, tmp_path: Path, case: str
) -> None:
    who = caller(gateway, tmp_path / "state", **NOT_GRANTED[case])  # type: ignore[arg-type]
    answer = await refused_purpose(who, mock_registries)
    assert answer.status == 403, answer.body
    (error,) = answer.body["errors"]
    assert error["extensions"]["code"] == "PURPOSE_NOT_GRANTED"


@pytest.mark.parametrize(
    ("purpose", "code"),
    [("MENSENHANDEL", "PURPOSE_SUSPENDED"), ("BEZETTING", "PURPOSE_FORBIDDEN")],
)
async def test_suspended_and_forbidden_purposes_say_why(
    gateway: Running, mock_registries: Registries, tmp_path: Path, purpose: str, code: str
) -> None:
    reason = gateway.gateway.policy.purposes[purpose].status_reason
    assert reason
    who = caller(gateway, tmp_path / "state", org="NVIK", roles=["analist"], purpose=purpose)
    answer = await refused_purpose(who, mock_registries)
    assert answer.status == 403, answer.body
    (error,) = answer.body["errors"]
    assert error["extensions"]["code"] == code
    assert error["extensions"]["reden"] == reason
    assert error["extensions"]["doelbinding"] == purpose
    assert reason in error["message"]


# --- a policy with an unknown coordinate ------------------------------------------------------


def policy_with_unknown_coordinate(tmp_path: Path) -> Path:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    anchor = "      - Vreemdeling.geslacht\n"
    assert anchor in text
    path = tmp_path / "onbekend-coordinaat.yaml"
    path.write_text(
        text.replace(anchor, anchor + "      - Vreemdeling.schoenmaat\n", 1), encoding="utf-8"
    )
    return path


async def test_unknown_coordinate_refuses_the_start(
    start: Any, mock_registries: Registries, tmp_path: Path
) -> None:
    path = policy_with_unknown_coordinate(tmp_path)
    with pytest.raises(PolicyError) as refused:
        await start(policy=path)
    assert "Vreemdeling.schoenmaat" in str(refused.value)
    assert str(path) in str(refused.value)
    assert all(registry.served == [] for registry in mock_registries.all)


def cli_output(result: Any) -> str:
    stderr = ""
    try:
        stderr = result.stderr
    except ValueError:  # older click: stderr mixed into output
        stderr = ""
    return f"{result.output}{stderr}"


def test_policy_check_cli_fails_on_unknown_coordinate(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(cli_app, ["policy", "check", str(DEFAULT_POLICY)])
    assert good.exit_code == 0, cli_output(good)

    path = policy_with_unknown_coordinate(tmp_path)
    bad = runner.invoke(cli_app, ["policy", "check", str(path)])
    assert bad.exit_code != 0
    assert "Vreemdeling.schoenmaat" in cli_output(bad)
