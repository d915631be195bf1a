"""Typed configuration: one :class:`Settings`, read from ``KETENPOORT_*`` or built in code.

Every setting of ``ketenpoort serve`` has an environment variable (docs/design.md); the
CLI's flags override the environment, and tests build ``Settings`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Mode = Literal["development", "production"]

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policy" / "ketenbeleid.yaml"


class ConfigError(ValueError):
    """A setting has a value the gateway cannot start with; the message names the setting."""


@dataclass(frozen=True, slots=True)
class RegistryEndpoints:
    """Where the chain registries live: ``embedded`` (in-process mocks) or base URLs."""

    embedded: bool = True
    bvv: str = "http://bvv.ketenpoort.internal"
    coa: str = "http://coa.ketenpoort.internal"
    ind: str = "http://ind.ketenpoort.internal"

    @classmethod
    def parse(cls, value: str) -> RegistryEndpoints:
        """``embedded`` or ``bvv=URL,coa=URL,ind=URL`` (all three required)."""
        value = value.strip()
        if value in ("", "embedded"):
            return cls()
        urls: dict[str, str] = {}
        for part in value.split(","):
            name, sep, url = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in ("bvv", "coa", "ind") or not url.strip():
                raise ConfigError(
                    f"KETENPOORT_REGISTRIES: expected 'embedded' or 'bvv=URL,coa=URL,ind=URL', "
                    f"got {part!r}"
                )
            urls[name] = url.strip().rstrip("/")
        missing = {"bvv", "coa", "ind"} - urls.keys()
        if missing:
            raise ConfigError(f"KETENPOORT_REGISTRIES: missing {', '.join(sorted(missing))}")
        return cls(embedded=False, **urls)


@dataclass(frozen=True, slots=True)
class Limits:
    """Query limits (QUERY_TOO_COMPLEX beyond them)."""

    max_depth: int = 8
    max_aliases: int = 200
    max_tokens: int = 4000
    max_fields: int = 400
    max_cost: int = 5000


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway needs to start. Defaults are the embedded development setup."""

    mode: Mode = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    policy: Path = DEFAULT_POLICY
    state_dir: Path = Path("var")
    audit_store: str = ""  # "" = sqlite:///<state_dir>/audit.db
    cache: str = "memory"
    cache_ttl: float = 60.0
    quota_store: str = "memory"
    traces: str = ""  # "" = file:<state_dir>/traces.jsonl
    registries: RegistryEndpoints = field(default_factory=RegistryEndpoints)
    registry_timeout: float = 2.0
    shutdown_grace: float = 10.0  # seconds in-flight requests get after SIGTERM
    mock_seed: int = 20210716
    mock_size: int = 10_000
    trusted_documents: Path | None = None
    limits: Limits = field(default_factory=Limits)
    issuer: str = "https://ketenpoort.example/dev"
    audience: str = "ketenpoort"
    jwks: str | None = None  # path or URL of a JWKS (production)
    jwks_timeout: float = 2.0  # seconds one fetch of a JWKS URL may take (then UNAUTHENTICATED)
    # The audit log's signed checkpoints (docs/audit-log.md).
    log_origin: str = "ketenpoort.local/audit"  # the checkpoint origin = the key's name
    checkpoints: str = ""  # "" = file:<state_dir>/checkpoints.txt; "none" = no file
    checkpoint_interval: float = 60.0  # seconds at most between checkpoints of a growing log
    checkpoint_entries: int = 1000  # ... and a checkpoint as soon as this many entries came

    @property
    def audit_store_url(self) -> str:
        return self.audit_store or f"sqlite:///{self.state_dir / 'audit.db'}"

    @property
    def traces_spec(self) -> str:
        return self.traces or f"file:{self.state_dir / 'traces.jsonl'}"

    @property
    def development(self) -> bool:
        return self.mode == "development"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``KETENPOORT_*`` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        base = cls()
        mode = env.get("KETENPOORT_MODE", base.mode)
        if mode not in ("development", "production"):
            raise ConfigError(f"KETENPOORT_MODE must be development or production, got {mode!r}")
        trusted = env.get("KETENPOORT_TRUSTED_DOCUMENTS")
        try:
            return cls(
                mode=mode,  # type: ignore[arg-type]
                host=env.get("KETENPOORT_HOST", base.host),
                port=int(env.get("KETENPOORT_PORT", base.port)),
                policy=Path(env.get("KETENPOORT_POLICY", str(base.policy))),
                state_dir=Path(env.get("KETENPOORT_STATE", str(base.state_dir))),
                audit_store=env.get("KETENPOORT_AUDIT_STORE", base.audit_store),
                cache=env.get("KETENPOORT_CACHE", base.cache),
                cache_ttl=float(env.get("KETENPOORT_CACHE_TTL", base.cache_ttl)),
                quota_store=env.get("KETENPOORT_QUOTA_STORE", base.quota_store),
                traces=env.get("KETENPOORT_TRACES", base.traces),
                registries=RegistryEndpoints.parse(env.get("KETENPOORT_REGISTRIES", "embedded")),
                registry_timeout=float(
                    env.get("KETENPOORT_REGISTRY_TIMEOUT", base.registry_timeout)
                ),
                shutdown_grace=float(env.get("KETENPOORT_SHUTDOWN_GRACE", base.shutdown_grace)),
                trusted_documents=Path(trusted) if trusted else None,
                issuer=env.get("KETENPOORT_ISSUER", base.issuer),
                audience=env.get("KETENPOORT_AUDIENCE", base.audience),
                jwks=env.get("KETENPOORT_JWKS") or None,
                jwks_timeout=_positive(
                    "KETENPOORT_JWKS_TIMEOUT",
                    float(env.get("KETENPOORT_JWKS_TIMEOUT", base.jwks_timeout)),
                ),
                log_origin=env.get("KETENPOORT_LOG_ORIGIN", base.log_origin),
                checkpoints=env.get("KETENPOORT_CHECKPOINTS", base.checkpoints),
                checkpoint_interval=_positive(
                    "KETENPOORT_CHECKPOINT_INTERVAL",
                    float(env.get("KETENPOORT_CHECKPOINT_INTERVAL", base.checkpoint_interval)),
                ),
                checkpoint_entries=int(
                    _positive(
                        "KETENPOORT_CHECKPOINT_ENTRIES",
                        int(env.get("KETENPOORT_CHECKPOINT_ENTRIES", base.checkpoint_entries)),
                    )
                ),
            )
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid KETENPOORT_* setting: {exc}") from exc
