"""Shared test support: real servers (PostgreSQL, Redis) and an in-process gateway.

PostgreSQL and Redis are prerequisites of the test suite (README): where one is unreachable the
tests that need it fail with a message naming it — never a silent skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import redis.asyncio as aioredis

from gateway.admission.tokens import load_or_create_dev_key, mint_dev_token
from gateway.assembly.runtime import Running
from gateway.config import Settings
from gateway.pipeline.answer import Answer

POSTGRES_URL = os.environ.get(
    "KETENPOORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("KETENPOORT_TEST_REDIS", "redis://127.0.0.1:6379/0")


async def require_postgres(
    server: str = POSTGRES_URL, setting: str = "KETENPOORT_TEST_POSTGRES"
) -> None:
    """Fail with a message naming the server (and the setting that moves it) if it is down."""
    try:
        connection = await asyncio.wait_for(asyncpg.connect(server), 5)
    except Exception as exc:
        raise AssertionError(
            f"PostgreSQL is not reachable at {server} ({type(exc).__name__}: {exc}). "
            f"It is a prerequisite (see README); set {setting}."
        ) from exc
    await connection.close()


async def require_redis() -> None:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        raise AssertionError(
            f"Redis is not reachable at {REDIS_URL} ({type(exc).__name__}: {exc}). "
            "It is a test prerequisite (see README); set KETENPOORT_TEST_REDIS."
        ) from exc
    finally:
        await client.aclose()


async def fresh_database(
    server: str = POSTGRES_URL, prefix: str = "ketenpoort_test"
) -> tuple[str, str]:
    """Create a uniquely named database; return (its URL, its name). Drop it with drop_database."""
    await require_postgres(server)
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunparse(urlparse(server)._replace(path=f"/{name}")), name


async def drop_database(name: str, server: str = POSTGRES_URL) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def rational_rank(rows: list[list[Fraction]]) -> int:
    """Rank over the rationals (Gaussian elimination): the tests' independent check that no
    suppressed statistics cell follows from what is published (the systems are small)."""
    matrix = [row[:] for row in rows if any(row)]
    rank, columns = 0, len(matrix[0]) if matrix else 0
    for col in range(columns):
        pivot = next((r for r in range(rank, len(matrix)) if matrix[r][col] != 0), None)
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        for r in range(len(matrix)):
            if r != rank and matrix[r][col] != 0:
                factor = matrix[r][col] / matrix[rank][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[rank], strict=True)]
        rank += 1
    return rank


def settings_for(state: Path, **overrides: Any) -> Settings:
    """Embedded settings in a temporary state directory, traces off unless asked."""
    base = Settings(state_dir=state, traces="none")
    return base.with_(**overrides) if overrides else base


@dataclass
class Caller:
    """A caller of an in-process gateway: a token plus the purpose headers."""

    running: Running
    token: str
    purpose: str
    activity: str
    gebruiker: str | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {
            "authorization": f"Bearer {self.token}",
            "x-doelbinding": self.purpose,
            "x-verwerking": self.activity,
        }
        if self.gebruiker:
            headers["x-gebruiker"] = self.gebruiker
        headers.update({k.lower(): v for k, v in extra.items()})
        return headers

    async def query(
        self, query: str, variables: Mapping[str, Any] | None = None, **headers: str
    ) -> Answer:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = dict(variables)
        return await asyncio.wait_for(
            self.running.gateway.handle(self.headers(**headers), payload), 30
        )


def caller(
    running: Running,
    state: Path,
    *,
    org: str,
    roles: Iterable[str],
    purpose: str,
    granted: Iterable[str] | None = None,
    sub: str = "medewerker-001",
    activity: str | None = None,
    act_for_officers: bool = False,
) -> Caller:
    """A caller with a development token granting ``granted`` (default: ``purpose``);
    ``act_for_officers``: an application token that may name officers in X-Gebruiker."""
    policy = running.gateway.policy
    settings = Settings()
    token = mint_dev_token(
        load_or_create_dev_key(state),
        issuer=settings.issuer,
        audience=settings.audience,
        subject=sub,
        oin=policy.organisations[org].oin,
        organisation=org,
        roles=list(roles),
        purposes=list(granted if granted is not None else [purpose]),
        act_for_officers=act_for_officers,
    )
    if activity is None:
        known = policy.purposes.get(purpose)
        activity = (
            known.processing_activities[0] if known and known.processing_activities else "onbekend"
        )
    return Caller(running, token, purpose, activity)
