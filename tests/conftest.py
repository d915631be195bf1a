"""Fixtures: an in-process gateway over the embedded mock registries, and real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.assembly.runtime import Running, start_gateway
from mocks import Registries, create_registries
from tests.browser import browser, open_page  # noqa: F401 - fixtures for the browser tests
from tests.support import settings_for

StartGateway = Callable[..., Awaitable[Running]]


@pytest.fixture(scope="session")
def mock_registries() -> Registries:
    """One synthetic population (default seed, 10,000 persons) for the session."""
    return create_registries()


@pytest.fixture
async def start(tmp_path: Path, mock_registries: Registries) -> AsyncIterator[StartGateway]:
    """Start gateways (closed at teardown): ``await start(**settings_overrides)``.

    The mocks' records and faults are reset first, so each test sees only its own calls.
    """
    started: list[Running] = []

    async def _start(**overrides: Any) -> Running:
        mock_registries.reset()
        settings = settings_for(tmp_path / "state", **overrides)
        running = await start_gateway(settings, mocks=mock_registries)
        started.append(running)
        return running

    yield _start
    for running in started:
        await running.close()
    mock_registries.reset()


@pytest.fixture
async def gateway(start: StartGateway) -> Running:
    """A gateway with the embedded defaults (memory cache, SQLite audit store)."""
    return await start()
