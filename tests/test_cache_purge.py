"""``ketenpoort cache purge --vnummer V`` against the real Redis: one person's answers go."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.execution.cache import open_cache, purge_subject
from gateway.observability.pseudonym import Pseudonymizer, load_or_create_key
from tests.support import REDIS_URL, require_redis

runner = CliRunner()
VNUMMER, OTHER = "3141592653", "2718281828"


async def test_cache_purge_removes_exactly_one_persons_answers(tmp_path: Path) -> None:
    await require_redis()
    state = tmp_path / "state"
    pseudonym = Pseudonymizer(load_or_create_key(state))
    me, other = pseudonym(VNUMMER), pseudonym(OTHER)  # a fresh key: names no one else's keys
    cache = open_cache(REDIS_URL, 60)
    keys = [cache.key(r, "d1", p) for r in ("BVV", "COA") for p in (me, other)]
    try:
        await cache.set_many([(k, {"x": 1}) for k in keys])
        got = await asyncio.to_thread(
            runner.invoke,
            app,
            ["cache", "purge", "--vnummer", VNUMMER, "--cache", REDIS_URL, "--state", str(state)],
        )
        assert got.exit_code == 0, got.output
        assert "removed 2 cached answer(s)" in got.output
        assert await cache.get_many(keys) == [None, {"x": 1}, None, {"x": 1}]
        refused = await asyncio.to_thread(
            runner.invoke,
            app,
            ["cache", "purge", "--vnummer", VNUMMER, "--cache", "memory", "--state", str(state)],
        )
        assert refused.exit_code != 0 and "in-process cache" in refused.output
    finally:
        await purge_subject(REDIS_URL, other)  # leave nothing behind
        await purge_subject(REDIS_URL, me)
        await cache.close()
