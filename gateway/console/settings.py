"""The console's own settings, next to the gateway's :class:`~gateway.config.Settings`.

``KETENPOORT_CONSOLE_HOST`` / ``KETENPOORT_CONSOLE_PORT`` (default 127.0.0.1:8100),
``KETENPOORT_CONSOLE_SESSION`` (session lifetime in seconds, default 1800) and
``KETENPOORT_TRACE_URL`` (a link template with ``{trace_id}``, e.g. a Jaeger or Tempo URL).

Outside development the session cookie is ``Secure``: the console is then served behind TLS
(a reverse proxy in front of 127.0.0.1), like the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.config import ConfigError

#: The longest session the console grants, whatever is configured (8 hours: one working day).
MAX_SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """Where the console listens, how long a session lives, where traces can be looked at."""

    host: str = "127.0.0.1"
    port: int = 8100
    session_seconds: float = 1800.0
    trace_url: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.session_seconds <= MAX_SESSION_SECONDS:
            raise ConfigError(
                f"KETENPOORT_CONSOLE_SESSION must be between 1 and {MAX_SESSION_SECONDS} seconds"
            )
        if self.trace_url is not None and "{trace_id}" not in self.trace_url:
            raise ConfigError("KETENPOORT_TRACE_URL must contain {trace_id}")
        if self.trace_url is not None and not self.trace_url.startswith(("https://", "http://")):
            raise ConfigError("KETENPOORT_TRACE_URL must be an http(s) URL")

    def with_(self, **changes: Any) -> ConsoleSettings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleSettings:
        """Read the ``KETENPOORT_CONSOLE_*`` and ``KETENPOORT_TRACE_URL`` variables."""
        env = os.environ if env is None else env
        base = cls()
        try:
            return cls(
                host=env.get("KETENPOORT_CONSOLE_HOST", base.host),
                port=int(env.get("KETENPOORT_CONSOLE_PORT", base.port)),
                session_seconds=float(env.get("KETENPOORT_CONSOLE_SESSION", base.session_seconds)),
                trace_url=env.get("KETENPOORT_TRACE_URL") or None,
            )
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid KETENPOORT_CONSOLE_* setting: {exc}") from exc
