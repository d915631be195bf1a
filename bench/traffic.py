"""Mixed gateway traffic for the soak and chaos runs: who asks what, and what came back.

The mix follows the default policy: 70 % one-person look-ups spread over every (organisation,
role, purpose) that may look a person up, 20 % multi-person look-ups, 5 % requests for purposes
the caller may not use (suspended, not in the token, no rule), 5 % trail searches by the NVIK's
security roles. Every request carries its own W3C ``traceparent``, so each answer can be found
in the trail afterwards by trace id. Officers rotate within each principal so that no officer
reaches its daily quota (a fresh run id keeps Redis quotas of earlier runs out of the way).

Each look-up also asks for ``religie``, which the policy refuses to everyone: a value there is a
leak. Nothing here asserts: outcomes are counted and the report judges them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import selection
from bench.reliability_api import (
    DEFAULT_POLICY,
    Policy,
    Population,
    Settings,
    coordinates,
    load_or_create_dev_key,
    load_policy,
    mint_dev_token,
)

#: The field no purpose may see (a forbidding rule for every caller).
REFUSED_FIELD = "religie"
SHARES = {"lookup": 0.70, "multi": 0.20, "refused": 0.05, "search": 0.05}


@dataclass(frozen=True, slots=True)
class Principal:
    """One kind of caller: organisation, role, purpose, and what it sends."""

    kind: str  # lookup | multi | refused | search
    org: str
    role: str
    purpose: str
    token_purposes: tuple[str, ...]
    activity: str
    oin: str
    cap: int
    quota: int
    query: str

    @property
    def label(self) -> str:
        return f"{self.org}/{self.role}/{self.purpose}"


@dataclass(slots=True)
class Outcome:
    """One request as the client saw it."""

    t: float  # seconds since the run started (send time)
    latency: float
    kind: str
    principal: str
    trace_id: str
    status: int  # 0: no HTTP answer (transport error)
    codes: tuple[str, ...] = ()
    has_data: bool = False
    leaks: int = 0
    error: str = ""
    subjects: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "latency": round(self.latency, 5),
            "kind": self.kind,
            "principal": self.principal,
            "trace_id": self.trace_id,
            "status": self.status,
            "codes": list(self.codes),
            "has_data": self.has_data,
            "leaks": self.leaks,
            "error": self.error,
        }


def _lookup_query(policy: Policy, org: str, role: str, purpose: str, many: bool) -> str | None:
    grant = policy.grant(org, [role], purpose)
    root = "Query.vreemdelingen" if many else "Query.vreemdeling"
    if root not in grant.allowed:
        return None
    inner = selection(grant.allowed, coordinates(), "Vreemdeling")
    if not inner:
        return None
    inner = inner[:-1] + f"{REFUSED_FIELD} }}"  # ask for the refused field too
    if many:
        return f"query($v: [ID!]!) {{ vreemdelingen(vnummers: $v) {inner} }}"
    return f"query($v: ID!) {{ vreemdeling(vnummer: $v) {inner} }}"


SEARCH_QUERY = (
    "query($v: ID, $o: String, $d: String, $s: String) { auditZoeken(vnummer: $v, "
    "organisatie: $o, doelbinding: $d, sinds: $s) { volgnummer traceId doelbinding coordinaat "
    "besluit } }"
)
#: What security roles search by: a person (most), an organisation or a purpose since a moment.
SEARCH_ORGS = ("NVIK", "COA", "IND", "DTV", "KMAR")
SEARCH_PURPOSES = ("TOEZICHT_VW", "OVERLAST", "TERUGKEER", "ASIEL_BEHANDELING")
REFUSED_QUERY = "query($v: ID!) { vreemdeling(vnummer: $v) { vnummer naam { geslachtsnaam } } }"


def principals(policy: Policy) -> dict[str, list[Principal]]:
    """Every caller of the default policy by kind (see the module docstring)."""
    out: dict[str, list[Principal]] = {k: [] for k in SHARES}
    for org in policy.organisations.values():
        for role in org.roles:
            for purpose in policy.purposes.values():
                if not purpose.active or purpose.max_subjects <= 0:
                    continue
                activity = purpose.processing_activities[0]
                for kind, many in (("lookup", False), ("multi", True)):
                    query = _lookup_query(policy, org.id, role, purpose.id, many)
                    if query is None or (many and purpose.max_subjects < 2):
                        continue
                    out[kind].append(
                        Principal(
                            kind,
                            org.id,
                            role,
                            purpose.id,
                            (purpose.id,),
                            activity,
                            org.oin,
                            purpose.max_subjects,
                            purpose.quota_per_day,
                            query,
                        )
                    )
                grant = policy.grant(org.id, [role], purpose.id)
                if "Query.auditZoeken" in grant.allowed:
                    out["search"].append(
                        Principal(
                            "search",
                            org.id,
                            role,
                            purpose.id,
                            (purpose.id,),
                            activity,
                            org.oin,
                            1,
                            purpose.quota_per_day,
                            SEARCH_QUERY,
                        )
                    )
    # Refusals: a suspended purpose, a purpose missing from the token, a purpose with no rule.
    suspended = [p for p in policy.purposes.values() if not p.active]
    nvik = policy.organisations["NVIK"]
    for p in suspended:
        out["refused"].append(
            Principal(
                "refused",
                "NVIK",
                "analist",
                p.id,
                (p.id,),
                p.processing_activities[0],
                nvik.oin,
                1,
                1,
                REFUSED_QUERY,
            )
        )
    coa = policy.organisations["COA"]
    tv = policy.purposes["TOEZICHT_VW"]
    out["refused"].append(
        Principal(
            "refused",
            "COA",
            "medewerker",
            tv.id,
            ("OPVANG_UITVOERING",),
            tv.processing_activities[0],
            coa.oin,
            1,
            1,
            REFUSED_QUERY,
        )
    )
    kmar = policy.organisations["KMAR"]
    out["refused"].append(
        Principal(
            "refused",
            "KMAR",
            "grensbewaker",
            "TERUGKEER",
            ("TERUGKEER",),
            policy.purposes["TERUGKEER"].processing_activities[0],
            kmar.oin,
            1,
            1,
            REFUSED_QUERY,
        )
    )
    return out


@dataclass
class Mix:
    """Deterministic request plan: the i-th request's principal, officer, persons."""

    policy: Policy
    population: Population
    key: bytes
    run_id: str
    expected_requests: int
    seed: int = 1
    by_kind: dict[str, list[Principal]] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _officers: dict[str, int] = field(default_factory=dict)
    _turn: dict[str, int] = field(default_factory=dict)
    _recent: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_kind = principals(self.policy)
        self._rng = random.Random(self.seed)
        settings = Settings()
        self._issuer, self._audience = settings.issuer, settings.audience
        for kind, group in self.by_kind.items():
            if not group:
                continue
            per = self.expected_requests * SHARES[kind] / len(group) * 1.2 + 10
            for p in group:
                persons = per * (min(p.cap, 5) if kind == "multi" else 1)
                # Half the daily quota per officer at most: the run never meets a 429.
                self._officers[p.label + kind] = max(1, math.ceil(persons / max(1, p.quota // 2)))

    def _token(self, p: Principal) -> str:
        n = self._officers[p.label + p.kind]
        turn = self._turn.get(p.label + p.kind, 0)
        self._turn[p.label + p.kind] = turn + 1
        sub = f"{self.run_id}-{p.org}-{p.role}-{p.purpose}-{turn % n}".lower()
        token = self._tokens.get(sub)
        if token is None:
            token = mint_dev_token(
                self.key,
                issuer=self._issuer,
                audience=self._audience,
                subject=sub,
                oin=p.oin,
                organisation=p.org,
                roles=[p.role],
                purposes=list(p.token_purposes),
                ttl=6 * 3600,
            )
            self._tokens[sub] = token
        return token

    def _person(self) -> str:
        v = self.population.vnummer(self._rng.randrange(self.population.size))
        self._recent.append(v)
        if len(self._recent) > 256:
            del self._recent[:128]
        return v

    def next(self) -> tuple[Principal, dict[str, str], dict[str, Any], int]:
        """The next request: principal, headers (with a fresh traceparent), body, subjects."""
        r = self._rng.random()
        acc = 0.0
        kind = "lookup"
        for k, share in SHARES.items():
            acc += share
            if r < acc:
                kind = k
                break
        group = self.by_kind[kind]
        p = group[self._rng.randrange(len(group))]
        if kind == "multi":
            n = self._rng.randint(2, min(p.cap, 5))
            variables: dict[str, Any] = {"v": [self._person() for _ in range(n)]}
        elif kind == "search":
            n = 1
            v = self._rng.choice(self._recent) if self._recent else self._person()
            pick = self._rng.random()
            since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).isoformat()
            if pick < 0.6:
                variables = {"v": v}
            elif pick < 0.8:
                variables = {"o": self._rng.choice(SEARCH_ORGS), "s": since}
            else:
                variables = {"d": self._rng.choice(SEARCH_PURPOSES), "s": since}
        else:
            n = 1
            variables = {"v": self._person()}
        trace_id = secrets.token_hex(16)
        headers = {
            "authorization": f"Bearer {self._token(p)}",
            "x-doelbinding": p.purpose,
            "x-verwerking": p.activity,
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            "content-type": "application/json",
        }
        return p, headers, {"query": p.query, "variables": variables}, n


def build_mix(
    state: Path, expected_requests: int, *, seed: int = 1, policy: Path | None = None
) -> Mix:
    """A mix for the gateway whose development key lives in ``state``."""
    loaded = load_policy(policy or DEFAULT_POLICY, coordinates())
    settings = Settings()
    return Mix(
        policy=loaded,
        population=Population(settings.mock_seed, settings.mock_size),
        key=load_or_create_dev_key(state),
        run_id="s" + secrets.token_hex(4),
        expected_requests=expected_requests,
        seed=seed,
    )


def _leaks(data: Any, refused_paths_ok: bool) -> int:
    """Values at the refused field anywhere in ``data``."""
    if isinstance(data, dict):
        n = 1 if data.get(REFUSED_FIELD) is not None else 0
        return n + sum(_leaks(v, refused_paths_ok) for v in data.values())
    if isinstance(data, list):
        return sum(_leaks(v, refused_paths_ok) for v in data)
    return 0


def judge(p: Principal, status: int, body: Any) -> tuple[tuple[str, ...], bool, int]:
    """Codes, whether the answer carries data, and leaked values."""
    if not isinstance(body, dict):
        return ("NOT_JSON",), False, 0
    codes = tuple(
        sorted(
            {
                str((e.get("extensions") or {}).get("code", "?"))
                for e in body.get("errors") or []
                if isinstance(e, dict)
            }
        )
    )
    data = body.get("data")
    has = isinstance(data, dict) and any(v not in (None, []) for v in data.values())
    leaks = _leaks(data, False)
    if (p.kind == "refused" or status >= 400) and has:
        leaks += 1  # data with a refusal or an error status: a leak by definition
    return codes, has, leaks


@dataclass
class Load:
    """Bounded, paced load: ``rate`` req/s for ``duration`` s, at most ``max_requests``."""

    urls: Sequence[str]
    mix: Mix
    rate: float
    duration: float
    max_requests: int
    concurrency: int = 64
    timeout: float = 30.0
    on_outcome: Callable[[Outcome], None] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> list[Outcome]:
        limits = httpx.Limits(
            max_connections=self.concurrency,
            max_keepalive_connections=self.concurrency,
            keepalive_expiry=1.0,
        )
        start = time.monotonic()
        self.started = start
        counter = iter(range(self.max_requests))
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout) as client:

            async def worker() -> None:
                for i in counter:
                    due = start + i / self.rate
                    now = time.monotonic()
                    if now - start >= self.duration or self.stop.is_set():
                        return
                    if due > now:
                        await asyncio.sleep(due - now)
                    if time.monotonic() - start >= self.duration or self.stop.is_set():
                        return
                    await self._one(client, self.urls[i % len(self.urls)], start)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return self.outcomes

    async def _one(self, client: httpx.AsyncClient, url: str, start: float) -> None:
        p, headers, body, n = self.mix.next()
        trace_id = headers["traceparent"][3:35]
        t0 = time.monotonic()
        try:
            r = await client.post(url, json=body, headers=headers)
            latency = time.monotonic() - t0
            try:
                payload: Any = r.json()
            except ValueError:
                payload = None
            codes, has, leaks = judge(p, r.status_code, payload)
            out = Outcome(
                t0 - start,
                latency,
                p.kind,
                p.label,
                trace_id,
                r.status_code,
                codes,
                has,
                leaks,
                subjects=n,
            )
        except httpx.HTTPError as exc:
            out = Outcome(
                t0 - start,
                time.monotonic() - t0,
                p.kind,
                p.label,
                trace_id,
                0,
                error=type(exc).__name__,
                subjects=n,
            )
        self.outcomes.append(out)
        if self.on_outcome is not None:
            self.on_outcome(out)
