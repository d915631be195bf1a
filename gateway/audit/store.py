"""The audit store interface: the accountability trail's only way in and out.

Implementations: :mod:`gateway.audit.sqlite` (embedded default) and :mod:`gateway.audit.postgres`
(scale-out). :func:`gateway.audit.stores.open_store` picks one by URL scheme.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.audit.model import AccessContext, AuditBatch, AuditQuery, AuditRecord
from gateway.audit.verify import VerifyResult
from gateway.errors import Code, GatewayError

if TYPE_CHECKING:  # the implementations import this module
    from gateway.audit.logcheck import LogCheck
    from gateway.audit.note import Checkpoint
    from gateway.audit.querying import EntryRows
    from gateway.audit.tree import TreeReader

__all__ = ["AuditStore", "AuditUnavailable", "VerifyResult"]


class AuditUnavailable(GatewayError):
    """The trail could not record (or read) what it must; the request gets no data (HTTP 503)."""

    def __init__(self, message: str = "the audit trail is unavailable") -> None:
        super().__init__(Code.AUDIT_UNAVAILABLE, message)


@runtime_checkable
class AuditStore(Protocol):
    """An append-only, hash-chained accountability trail.

    Contract:

    * ``open()`` connects and creates the schema; idempotent, safe to run from several
      processes at once. It is the only place that creates tables: a table missing at commit
      time is an error (it may be tampering), never silently recreated. It refuses a database
      holding the earlier one-row-per-record layout (table ``audit_record``).
    * ``close()`` waits for commits already accepted, then releases connections.
    * ``commit(batch)`` returns only when the batch is durably committed (as one entry of the
      chain), in one transaction together with (possibly) other concurrent batches of this
      process (group commit). On any failure it raises :class:`AuditUnavailable` and nothing
      of the batch is committed; the next call simply tries again (reconnecting if needed).
    * Each batch becomes one entry with ``seq`` (gap-free, monotonic), ``recorded_at`` (UTC,
      monotonic), ``prev_hash`` and ``hash``, which every record of the batch carries; the
      chain is linear even with several processes writing to one PostgreSQL database.
    * ``search(q)`` returns matching logical records (one per data subject × decision) ordered
      by ``seq``, then batch order (at most ``q.limit``); a search by subject returns only that
      subject's records.
    * ``verify()`` walks the whole chain and reports the first broken entry (by seq) and what
      is wrong with it (entry row, subject rows or decision sets); ``checked`` counts entries.
    * ``purge(older_than, context)`` deletes the longest prefix of the chain whose entries were
      recorded more than ``older_than`` ago (with their subject rows), keeps the last deleted
      hash as the chain's anchor (so ``verify`` still passes), and appends an entry recording
      the purge itself (coordinate ``Audit.purge``, decision given, reason
      ``RETENTION_PURGE``, no data subject, path ``seq<=N`` naming the new anchor) in the same
      transaction. Returns the number of logical records deleted. ``protect`` (purpose →
      retention) refuses, removing nothing, a purge that would cut into a retention.
    * ``purge_expired(retention, context, now)`` removes every entry (content and subject rows)
      older than its own purpose's retention, wherever it lies in the log; their leaves stay,
      ``audit_purged`` lists them, and the purge's own entry commits to that list (path
      ``removed=<n>;sha256=<digest>``).
    * ``ready()`` is true when the store can be reached and its writer is running.

    * The trail is also an RFC 6962 Merkle log (docs/audit-log.md): entry ``seq`` is leaf
      ``seq - 1``; ``commit`` appends the leaves and the subtrees they complete in the same
      transaction. ``tree()`` gives roots and proofs of any size from stored nodes;
      ``check_log(checkpoints)`` checks every leaf and entry against signed checkpoints;
      ``entries(seqs)`` reads entries with their subject rows and decision sets (report
      proofs); ``on_append`` (if set) is called with the number of entries each committed
      transaction added.

    There is no other way to update or delete records.
    """

    on_append: Callable[[int], None] | None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, batch: AuditBatch) -> None: ...

    async def search(self, q: AuditQuery) -> list[AuditRecord]: ...

    async def verify(self) -> VerifyResult: ...

    async def purge(
        self,
        older_than: dt.timedelta,
        context: AccessContext,
        protect: Mapping[str, dt.timedelta] | None = None,
    ) -> int: ...

    async def purge_expired(
        self,
        retention: Mapping[str, dt.timedelta],
        context: AccessContext,
        now: dt.datetime | None = None,
    ) -> int: ...

    async def ready(self) -> bool: ...

    def tree(self) -> TreeReader: ...

    async def check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck: ...

    async def entries(self, seqs: list[int]) -> EntryRows: ...
