# ruff: noqa: E501  (the corpus is a table: one hostile request per line reads best)
"""A corpus of hostile requests: each gets a documented code with its documented status.

Tokens, headers, documents, transport, identifier formats in every argument, Unicode and control
characters, oversized inputs. For every request: no 500, no stack trace, a code of
:class:`gateway.errors.Code` (never ``INTERNAL_ERROR``) with the status ``HTTP_STATUS`` gives it
(200 for field-level codes), and, once the caller is authenticated, the request is in the trail.
The README's error table must say the same (``test_readme_error_table_lists_every_code``).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from starlette.testclient import TestClient

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import Running
from gateway.audit.model import AuditQuery
from gateway.config import Settings
from gateway.errors import HTTP_STATUS, Code
from gateway.http.app import create_app
from mocks import Registries
from tests.support import settings_for

ROOT = Path(__file__).resolve().parent.parent
DEV = Settings()
NVIK_OIN = "00000099000000000101"
LOOKUP = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"
HOSTILE_TEXT = {
    "newline": "{}\n",
    "fullwidth": "\uff10\uff11\uff12",
    "arabic-indic": "{}\u0663",
    "nul": "{}\x00",
    "rtl-override": "\u202e{}",
    "zero-width": "{}\u200b",
    "bom": "\ufeff{}",
    "huge": "{}" + "9" * 100_000,
    "empty": "",
    "spaces": "   ",
}


@dataclass
class Case:
    name: str
    purpose: str = "TOEZICHT_VW"
    role: str = "analist"
    query: Any = LOOKUP
    variables: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    token: Callable[[bytes], str] | None = None  # None: a valid token for purpose and role
    payload: dict[str, Any] | None = None  # replaces query/variables entirely
    expect: frozenset[str] = frozenset({"BAD_USER_INPUT"})


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": DEV.issuer,
        "aud": DEV.audience,
        "sub": "corpus",
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


def signed(**changes: Any) -> Callable[[bytes], str]:
    return lambda key: jwt.encode(claims(**changes), key, algorithm="HS256")


def raw(text: str) -> Callable[[bytes], str]:
    return lambda _key: text


UNAUTH = frozenset({"UNAUTHENTICATED"})


def token_cases() -> list[Case]:
    cases = [
        Case("token-missing", token=raw("")),
        Case("token-basic-scheme", token=raw("\x00basic")),
        Case("token-garbage", token=raw("not.a.jwt")),
        Case("token-alg-none", token=lambda _: jwt.encode(claims(), None, algorithm="none")),
        Case("token-expired", token=signed(exp=int(time.time()) - 3600)),
        Case("token-wrong-audience", token=signed(aud="elders")),
        Case("token-wrong-issuer", token=signed(iss="https://elders.example")),
        Case("token-wrong-key", token=lambda _: jwt.encode(claims(), b"k" * 32, "HS256")),
        Case("token-sub-with-space", token=signed(sub="twee woorden")),
        Case("token-sub-unicode", token=signed(sub="medewerker-\u0661")),
        Case("token-sub-missing", token=signed(sub=None)),
        Case("token-oin-newline", token=signed(oin=NVIK_OIN + "\n")),
        Case("token-oin-unicode-digits", token=signed(oin="\uff10" * 20)),
        Case("token-org-control", token=signed(org="NVIK\r\n")),
        Case("token-act-claim-not-bool", token=signed(**{"ketenpoort:act_for_officers": "ja"})),
        Case("token-roles-not-strings", token=signed(roles=[1, 2])),
        Case("token-huge", token=raw("a" * 200_000)),
        Case("token-control-chars", token=raw("eyJ\x00\x01\x02")),
    ]
    for case in cases:
        case.expect = UNAUTH
    return cases


def header_cases() -> list[Case]:
    def purpose(value: str, code: str = "BAD_USER_INPUT") -> Case:
        return Case(
            f"purpose-{value[:12]!r}", headers={"x-doelbinding": value}, expect=frozenset({code})
        )

    return [
        Case("purpose-missing", headers={"x-doelbinding": ""}, expect=frozenset({"PURPOSE_REQUIRED"})),
        Case("activity-missing", headers={"x-verwerking": ""}, expect=frozenset({"PURPOSE_REQUIRED"})),
        purpose("TOEZICHT_VW\x00"),
        purpose("TOEZICHT_V\u0130"),
        purpose("T" * 10_000),
        purpose("GEEN_DOEL", "PURPOSE_NOT_GRANTED"),
        purpose("BEZETTING", "PURPOSE_FORBIDDEN"),
        Case("activity-unicode", headers={"x-verwerking": "nvik-toezicht-v\u0175"}),
        Case("activity-unknown", headers={"x-verwerking": "nvik-elders"}, expect=frozenset({"PROCESSING_ACTIVITY_NOT_REGISTERED"})),
        Case("gebruiker-other", headers={"x-gebruiker": "iemand-anders"}),
        Case("gebruiker-space", headers={"x-gebruiker": "twee woorden"}),
        Case("gebruiker-unicode", headers={"x-gebruiker": "j\u00e9r\u00f4me"}),
        Case("gebruiker-huge", headers={"x-gebruiker": "x" * 5_000}),
        Case("gebruiker-rtl", headers={"x-gebruiker": "\u202enamreg"}),
        Case("traceparent-garbage", headers={"traceparent": "zz-\x00-garbage"}, variables={"v": "0000000000"}, expect=frozenset({"OK"})),
    ]  # fmt: skip


def document_cases() -> list[Case]:
    v = {"v": "0000000000"}
    deep = '{ vreemdeling(vnummer: "0000000000") ' + "{ naam " * 60 + "}" * 61
    many = " ".join(f'a{i}: vreemdeling(vnummer: "0000000000") {{ vnummer }}' for i in range(300))
    return [
        Case("query-empty", query=""),
        Case("query-int", payload={"query": 42}),
        Case("query-list", payload={"query": ["{ __typename }"]}),
        Case("query-missing", payload={"variables": {}}),
        Case("variables-list", variables=["0000000000"]),
        Case("variables-string", variables="v=1"),
        Case("operation-name-int", payload={"query": LOOKUP, "variables": v, "operationName": 7}),
        Case("operation-name-unknown", payload={"query": LOOKUP, "variables": v, "operationName": "Nee"}),
        Case("syntax-error", query="{ vreemdeling(vnummer: ) {"),
        Case("unknown-field", query='{ vreemdeling(vnummer: "0000000000") { geheim } }'),
        Case("hidden-field-typo", query='{ vreemdeling(vnummer: "0000000000") { religi } }'),
        Case("mutation", query="mutation { doe }"),
        Case("subscription", query="subscription { volg }"),
        Case("fragment-cycle", query="{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"),
        Case("unknown-directive", query='{ __typename @geheim }'),
        Case("too-deep", query=deep, expect=frozenset({"BAD_USER_INPUT", "QUERY_TOO_COMPLEX"})),
        Case("too-many-aliases", query="{ " + many + " }", expect=frozenset({"QUERY_TOO_COMPLEX", "TOO_MANY_SUBJECTS"})),
        Case("token-limit", query="{ " + "__typename " * 5000 + "}", expect=frozenset({"QUERY_TOO_COMPLEX"})),
        Case("introspection-with-roots", query='{ __schema { queryType { name } } vreemdeling(vnummer: "0000000000") { vnummer } }'),
        Case("variable-wrong-type", variables={"v": {"nested": True}}),
        Case("variable-missing", variables={}),
        Case("query-control-chars", query="{ __typename \x00 }"),
        Case("query-unicode-name", query="{ vr\u0435emdeling(vnummer: \"0000000000\") { vnummer } }"),
    ]  # fmt: skip


def argument_cases() -> list[Case]:
    """Every argument of every root field, with every hostile text (as a variable)."""
    cases: list[Case] = []
    good = "0123456789"
    for label, template in HOSTILE_TEXT.items():
        text = template.format(good)
        cases += [
            Case(f"vnummer-{label}", variables={"v": text}),
            Case(
                f"vnummers-{label}",
                query="query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer } }",
                variables={"v": [good, text]},
                expect=frozenset({"BAD_USER_INPUT", "TOO_MANY_SUBJECTS"}),
            ),
            Case(
                f"trail-vnummer-{label}",
                purpose="VERANTWOORDING",
                role="beveiliging",
                query="query($v: ID) { auditZoeken(vnummer: $v) { volgnummer } }",
                variables={"v": text},
            ),
        ]
        for argument in ("medewerker", "organisatie", "doelbinding", "sinds", "tot"):
            if label in ("empty",) and argument in ("medewerker",):
                continue
            cases.append(
                Case(
                    f"trail-{argument}-{label}",
                    purpose="VERANTWOORDING",
                    role="beveiliging",
                    query=f"query($v: ID, $x: String) {{ auditZoeken(vnummer: $v, {argument}: $x) "
                    "{ volgnummer } }",
                    variables={"v": good, "x": text.replace("0123456789", "regie-3")},
                )
            )
        if label not in ("fullwidth", "arabic-indic"):  # legitimate letters in a surname
            cases.append(
                Case(
                    f"surname-{label}",
                    query="query($n: String!) { zoekVreemdelingen(geslachtsnaam: $n, "
                    'geboortedatum: "1990-01-01") { vnummer } }',
                    variables={"n": text.replace("0123456789", "Jansen")},
                )
            )
        cases += [
            Case(
                f"birthdate-{label}",
                query='query($d: Date!) { zoekVreemdelingen(geslachtsnaam: "Jansen", '
                "geboortedatum: $d) { vnummer } }",
                variables={"d": text.replace("0123456789", "1990-01-01")},
            ),
            Case(
                f"peildatum-{label}",
                purpose="ANALYSE",
                query="query($d: Date!) { opvangstatistiek(peildatum: $d, groepering: LOCATIE) "
                "{ aantal } }",
                variables={"d": text.replace("0123456789", "2024-01-01")},
            ),
        ]
    cases += [
        Case("vnummer-int-literal", query="{ vreemdeling(vnummer: 123456789) { vnummer } }"),
        Case("vnummer-null", variables={"v": None}),
        Case("vnummers-not-list-item", query="query($v: [ID!]!) { vreemdelingen(vnummers: $v) { vnummer } }", variables={"v": [None]}),
        Case("groepering-unknown", purpose="ANALYSE", query='{ opvangstatistiek(peildatum: "2024-01-01", groepering: STRAAT) { aantal } }'),
    ]  # fmt: skip
    return cases


def corpus() -> list[Case]:
    return [*token_cases(), *header_cases(), *document_cases(), *argument_cases()]


def test_the_corpus_is_large_enough() -> None:
    assert len(corpus()) + len(TRANSPORT) >= 100, len(corpus()) + len(TRANSPORT)


async def test_every_hostile_request_gets_a_documented_code(
    gateway: Running, mock_registries: Registries, tmp_path: Path
) -> None:
    key = load_or_create_dev_key(tmp_path / "state")
    policy = gateway.gateway.policy
    failures: list[str] = []
    for number, case in enumerate(corpus()):
        sub = f"corpus-{number}"
        if case.token is None:
            token = mint_dev_token(
                key,
                issuer=DEV.issuer,
                audience=DEV.audience,
                subject=sub,
                oin=policy.organisations["NVIK"].oin,
                organisation="NVIK",
                roles=[case.role],
                purposes=[case.purpose],
            )
        else:
            token = case.token(key)
        trace_id = secrets.token_hex(16)
        headers = {
            "authorization": f"Bearer {token}" if token else "",
            "x-doelbinding": case.purpose,
            "x-verwerking": policy.purposes[case.purpose].processing_activities[0],
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        }
        headers.update(case.headers)
        payload = case.payload
        if payload is None:
            payload = {"query": case.query}
            if case.variables is not None:
                payload["variables"] = case.variables
        answer = await gateway.gateway.handle(headers, payload)
        problem = judge(case, answer.status, answer.body)
        if problem is None and case.token is None and "traceparent" not in case.headers:
            found = await gateway.gateway.audit_store.search(AuditQuery(trace_id=trace_id))
            if not found:
                problem = "admitted but not recorded"
        if problem is not None:
            failures.append(f"{case.name}: {problem}")
    assert failures == [], failures


def judge(case: Case, status: int, body: dict[str, Any]) -> str | None:
    """None if the answer is a documented refusal with its documented status, else why not."""
    text = json.dumps(body)
    if status >= 500 or "Traceback" in text or "INTERNAL_ERROR" in text:
        return f"status {status}: {text[:200]}"
    errors = body.get("errors") or []
    if not errors:
        return None if "OK" in case.expect else f"no error: {text[:200]}"
    code = errors[0].get("extensions", {}).get("code")
    if code not in Code.__members__:
        return f"undocumented code {code!r}"
    if code not in case.expect and "OK" not in case.expect:
        return f"code {code}, expected one of {sorted(case.expect)}"
    documented = HTTP_STATUS.get(Code(code), 200) if body.get("data") is None else 200
    if status != documented:
        return f"{code} with status {status}, documented {documented}"
    return None


# ---- transport -------------------------------------------------------------------------------

TRANSPORT: list[tuple[str, bytes, dict[str, str]]] = [
    ("not-json", b"query { __typename }", {"content-type": "application/json"}),
    ("json-array", b"[]", {"content-type": "application/json"}),
    ("json-string", b'"{ __typename }"', {"content-type": "application/json"}),
    ("nested-brackets", b"[" * 5000, {"content-type": "application/json"}),
    ("invalid-utf8", b'{"query": "\xff\xfe"}', {"content-type": "application/json"}),
    ("empty-body", b"", {"content-type": "application/json"}),
    ("too-large", b'{"query": "' + b"a" * 300_000 + b'"}', {"content-type": "application/json"}),
    ("nul-bytes", b'{"query": "{ __typename }\\u0000"}', {"content-type": "application/json"}),
    ("lone-surrogate", b'{"query": "\\ud800"}', {"content-type": "application/json"}),
]


def test_hostile_transport_gets_a_documented_code(
    tmp_path: Path, mock_registries: Registries
) -> None:
    mock_registries.reset()
    app = create_app(settings_for(tmp_path / "state"), mocks=mock_registries)
    failures: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as http:
        for name, body, headers in TRANSPORT:
            answer = http.post("/graphql", content=body, headers=headers)
            try:
                parsed = answer.json()
            except ValueError:
                failures.append(f"{name}: not JSON ({answer.status_code})")
                continue
            case = Case(name, expect=frozenset(Code.__members__))
            problem = judge(case, answer.status_code, parsed)
            if problem is not None:
                failures.append(f"{name}: {problem}")
    assert failures == [], failures


def test_readme_error_table_lists_every_code() -> None:
    """The README's error table: one row per code, with the status the gateway answers."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (\d{3})", text, flags=re.MULTILINE))
    assert set(rows) == set(Code.__members__), set(Code.__members__) ^ set(rows)
    for code, status in rows.items():
        assert int(status) == HTTP_STATUS.get(Code(code), 200), code
