"""Which audit store a URL names: the factory, apart from the protocol both stores implement."""

from __future__ import annotations

from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.audit.store import AuditStore


def open_store(url: str) -> AuditStore:
    """Create (not yet open) the store a URL names.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
    (one process, tests) or ``postgresql://user@host:port/db`` (also ``postgres://``).
    Raises ``ValueError`` for any other URL.
    """
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise ValueError("sqlite audit store URL has no path: use sqlite:///path/to/audit.db")
        return SQLiteAuditStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresAuditStore(url)
    raise ValueError(
        f"unsupported audit store URL {url.split('://')[0]!r}://...: "
        "use sqlite:///path.db or postgresql://..."
    )
