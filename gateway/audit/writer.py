"""Group commit: one writer task per store turns concurrent commits into one transaction.

Every request awaits a durable commit before its response leaves (docs/design.md, step 10).
A transaction per request would make the database's fsync the gateway's throughput limit, so
``commit()`` only encodes its batch (in the caller's task) and queues it; a single writer task
takes everything queued so far, writes it in one transaction and resolves each caller's future.
While that transaction runs, new batches queue up and form the next group, so coalescing adds
no waiting when the store is idle. A failed transaction fails every batch in it; the next group
tries again from scratch.

One class, :class:`GroupCommitStore`, read top to bottom: the queue, the writer task and the
store operations both stores share through it (search, verify, the log, purges); kept as one
module on purpose (~450 lines). The SQL lives with each store and in :mod:`gateway.audit.querying`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from gateway.audit.chain import (
    DecisionSets,
    PreparedBatch,
    VerifyResult,
    prepare,
)
from gateway.audit.logcheck import LogCheck, purge_path, purge_set_path
from gateway.audit.merkle import Node
from gateway.audit.model import (
    AccessContext,
    AuditBatch,
    AuditQuery,
    AuditRecord,
    Decision,
    FieldDecision,
)
from gateway.audit.note import Checkpoint
from gateway.audit.querying import EntryRows
from gateway.audit.store import AuditUnavailable
from gateway.audit.tree import TreeReader

log = logging.getLogger("ketenpoort.audit")

#: A search (SQLite or PostgreSQL) is stopped after this many seconds: AUDIT_UNAVAILABLE.
SEARCH_TIMEOUT_S = 5.0
#: After a failed transaction (disk full, lock, lost server) the store reports itself not
#: ready for this long, or until a transaction succeeds.
FAILED_WRITE_UNREADY_S = 10.0

#: Coordinate, reason and decision of the record a purge leaves behind.
PURGE_DECISION = FieldDecision(
    coordinate="Audit.purge",
    path="",
    decision=Decision.GIVEN,
    reason="RETENTION_PURGE",
    registry=None,
)


def purge_decision(anchor_seq: int) -> FieldDecision:
    """The decision a purge records: which entries it removed (path ``seq<=N``)."""
    return dataclasses.replace(PURGE_DECISION, path=purge_path(anchor_seq))


@dataclass(slots=True)
class _Job:
    prepared: PreparedBatch
    future: asyncio.Future[int]
    #: Set: this job is a purge, run alone in the writer (its own transaction).
    purge: Callable[[], Awaitable[int]] | None = None


class PurgeRefused(ValueError):
    """A purge would remove records younger than their purpose's retention; nothing removed."""


def refusal(purpose: str, keep: dt.timedelta) -> str:
    """Why a purge is refused: it would cut into ``purpose``'s retention."""
    return (
        f"refused: the purge would remove records of purpose {purpose} younger than its "
        f"retention ({keep.days} days, bewaartermijn_dagen); nothing was removed"
    )


class GroupCommitStore(ABC):
    """Base of the stores: the queue, the writer task and the error mapping of the contract.

    Subclasses implement the backend hooks; each write hook runs one transaction and raises on
    failure (any exception), after rolling back.
    """

    #: Whether the backend stores timestamps as canonical text (SQLite) or ``datetime``.
    text_timestamps: ClassVar[bool]
    #: Upper bound of rows (entries + subject rows) per transaction (a group always takes at
    #: least one batch).
    max_rows_per_transaction: ClassVar[int] = 20_000

    def __init__(self) -> None:
        #: Decision sets this process has encoded or read (see :class:`DecisionSets`).
        self.decision_sets = DecisionSets()
        self._jobs: list[_Job] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        #: When the last transaction failed (monotonic), None after a success: readiness.
        self._last_failure: float | None = None
        #: Called with the number of entries each committed group added (the checkpointer).
        self.on_append: Callable[[int], None] | None = None

    # ---- backend hooks -------------------------------------------------------------------

    @abstractmethod
    async def _open_backend(self) -> None:
        """Connect, create or migrate the schema (idempotent)."""

    @abstractmethod
    async def _close_backend(self) -> None:
        """Release connections."""

    @abstractmethod
    async def _write(self, batches: list[PreparedBatch]) -> None:
        """Link and insert ``batches`` in one transaction, after the current chain head.

        The transaction also writes the decision sets the batches use that the database does
        not hold yet (checked under the head lock, so a set deleted behind the store's back
        is written again rather than referred to in vain)."""

    @abstractmethod
    async def _purge(
        self,
        older_than: dt.timedelta,
        make_record: Callable[[int], PreparedBatch],
        protect: Mapping[str, dt.timedelta],
    ) -> int:
        """Delete the old prefix of entries (and their subject rows), move the anchor, append
        ``make_record(new anchor seq)``: one transaction. Returns the number of logical
        records deleted. Tree nodes are never deleted (proofs and old checkpoints stay valid).
        Raises :class:`PurgeRefused` (nothing deleted) when the prefix holds an entry of a
        purpose in ``protect`` recorded less than that purpose's retention ago.
        """

    @abstractmethod
    async def _purge_expired(
        self,
        cutoffs: Mapping[str, dt.datetime],
        make_record: Callable[[list[int]], PreparedBatch],
    ) -> int:
        """Delete every entry (and its subject rows) of a purpose in ``cutoffs`` recorded
        before that purpose's cutoff, list them in ``audit_purged`` (seq, hash, the purge's
        seq) and append ``make_record(their seqs)``: one transaction. Returns the number of
        logical records deleted. Tree nodes stay."""

    @abstractmethod
    async def _tree_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        """The stored tree nodes among ``nodes`` (absent ones left out)."""

    @abstractmethod
    async def _tree_size(self) -> int:
        """The number of leaves of the tree: the chain head's seq."""

    @abstractmethod
    async def _check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        """:func:`~gateway.audit.logcheck.check_log` over one snapshot of the store."""

    @abstractmethod
    async def _entries(self, seqs: list[int]) -> EntryRows:
        """The entry rows, subject rows and decision sets of the entries ``seqs``."""

    @abstractmethod
    async def _search(self, q: AuditQuery) -> list[AuditRecord]: ...

    @abstractmethod
    async def _verify(self) -> VerifyResult: ...

    @abstractmethod
    async def _ping(self) -> None:
        """Raise unless the store's tables can be read now."""

    # ---- the AuditStore interface --------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate; start the writer task. Idempotent."""
        if self._writer is not None and not self._writer.done():
            return
        try:
            await self._open_backend()
        except AuditUnavailable:
            raise
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            raise AuditUnavailable(f"audit store cannot be opened: {detail}") from exc
        self._closing = False
        self._writer = asyncio.get_running_loop().create_task(
            self._run_writer(), name="ketenpoort-audit-writer"
        )

    async def close(self) -> None:
        """Write what was already accepted, stop the writer, release connections."""
        writer = self._writer
        if writer is not None:
            self._closing = True
            self._wakeup.set()
            await writer
            self._writer = None
        await self._close_backend()

    async def commit(self, batch: AuditBatch) -> None:
        """Durably commit ``batch``; :class:`AuditUnavailable` and nothing stored otherwise."""
        try:
            prepared = prepare(batch, self.decision_sets, text_timestamps=self.text_timestamps)
        except ValueError as exc:
            raise AuditUnavailable(f"audit batch rejected: {exc}") from exc
        if not prepared.subjects:
            return  # nothing was resolved, nothing to record
        await self._submit(_Job(prepared, self._new_future()))

    async def purge(
        self,
        older_than: dt.timedelta,
        context: AccessContext,
        protect: Mapping[str, dt.timedelta] | None = None,
    ) -> int:
        """Retention purge (see :class:`~gateway.audit.store.AuditStore`); returns the count.

        ``protect`` (purpose → retention): refuse (:class:`PurgeRefused`, nothing removed) if
        the purge would remove an entry of such a purpose younger than its retention.
        """
        if older_than <= dt.timedelta(0):
            raise ValueError("purge needs a positive age")
        ended = dt.datetime.now(dt.UTC)
        text = self.text_timestamps
        guard = dict(protect or {})

        def make_record(anchor_seq: int) -> PreparedBatch:
            # Runs inside the purge's transaction (maybe on the store's thread): its own memo.
            batch = AuditBatch(
                context=context, end_time=ended, request_decisions=[purge_decision(anchor_seq)]
            )
            return prepare(batch, DecisionSets(), text_timestamps=text)

        try:
            prepared = make_record(0)  # checks the context before the job is queued
        except ValueError as exc:
            raise AuditUnavailable(f"purge record rejected: {exc}") from exc

        async def run() -> int:
            return await self._purge(older_than, make_record, guard)

        return await self._submit(_Job(prepared, self._new_future(), run))

    async def purge_expired(
        self,
        retention: Mapping[str, dt.timedelta],
        context: AccessContext,
        now: dt.datetime | None = None,
    ) -> int:
        """Remove the content of every entry past its own purpose's retention (purpose →
        retention; entries of other purposes stay). The leaves stay in the tree, so roots,
        proofs and earlier checkpoints still verify; the purge is itself an entry, committing
        to the list of removed seqs. ``now`` is the clock (tests move it). Returns the number
        of logical records removed."""
        moment = now or dt.datetime.now(dt.UTC)
        cutoffs: dict[str, dt.datetime] = {}
        for purpose, keep in retention.items():
            if keep <= dt.timedelta(0):
                raise ValueError(f"retention of {purpose} must be positive")
            with contextlib.suppress(OverflowError):  # before the calendar: nothing expired
                cutoffs[purpose] = moment - keep
        ended = dt.datetime.now(dt.UTC)
        text = self.text_timestamps

        def make_record(seqs: list[int]) -> PreparedBatch:
            decision = dataclasses.replace(PURGE_DECISION, path=purge_set_path(seqs))
            batch = AuditBatch(context=context, end_time=ended, request_decisions=[decision])
            return prepare(batch, DecisionSets(), text_timestamps=text)

        try:
            prepared = make_record([])
        except ValueError as exc:
            raise AuditUnavailable(f"purge record rejected: {exc}") from exc

        async def run() -> int:
            return await self._purge_expired(cutoffs, make_record)

        return await self._submit(_Job(prepared, self._new_future(), run))

    # ---- the Merkle log ------------------------------------------------------------------

    def tree(self) -> TreeReader:
        """Roots and proofs of the log (:class:`~gateway.audit.tree.TreeReader`)."""
        return TreeReader(self._read_nodes, self._read_size)

    async def _read_nodes(self, nodes: list[Node]) -> dict[Node, bytes]:
        try:
            return await self._tree_nodes(nodes)
        except Exception as exc:
            raise AuditUnavailable(f"audit tree read failed ({type(exc).__name__})") from exc

    async def _read_size(self) -> int:
        try:
            return await self._tree_size()
        except Exception as exc:
            raise AuditUnavailable(f"audit tree read failed ({type(exc).__name__})") from exc

    async def check_log(self, checkpoints: Sequence[Checkpoint]) -> LogCheck:
        """Check every leaf and entry against signed checkpoints (see :mod:`.logcheck`)."""
        try:
            return await self._check_log(checkpoints)
        except Exception as exc:
            raise AuditUnavailable(f"audit log check failed ({type(exc).__name__}: {exc})") from exc

    async def entries(self, seqs: list[int]) -> EntryRows:
        """Entries by seq with their subject rows and decision sets (for report proofs)."""
        try:
            return await self._entries(sorted(set(seqs)))
        except Exception as exc:
            raise AuditUnavailable(f"audit entry read failed ({type(exc).__name__})") from exc

    async def search(self, q: AuditQuery) -> list[AuditRecord]:
        """Records matching every set attribute of ``q``, by seq, at most ``q.limit``."""
        if q.limit <= 0:
            raise ValueError("search limit must be positive")
        try:
            async with asyncio.timeout(SEARCH_TIMEOUT_S):
                return await self._search(q)
        except (AuditUnavailable, ValueError):
            raise
        except TimeoutError as exc:
            log.warning("audit search stopped after %.0f s", SEARCH_TIMEOUT_S)
            raise AuditUnavailable(
                f"the audit trail search took longer than {SEARCH_TIMEOUT_S:.0f} s"
            ) from exc
        except Exception as exc:
            # The class and message stay in the server log; the caller gets a stable text.
            log.warning("audit search failed: %s: %s", type(exc).__name__, exc)
            raise AuditUnavailable("the audit trail could not be searched") from exc

    async def verify(self) -> VerifyResult:
        """Walk the whole chain; the result names the first broken entry."""
        try:
            return await self._verify()
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable(f"audit verify failed ({type(exc).__name__}: {exc})") from exc

    async def ready(self) -> bool:
        """True when the writer runs, the tables answer and the last transaction (if it was
        less than :data:`FAILED_WRITE_UNREADY_S` ago) did not fail."""
        if self._writer is None or self._writer.done():
            return False
        failed = self._last_failure
        if failed is not None and time.monotonic() - failed < FAILED_WRITE_UNREADY_S:
            return False
        try:
            await self._ping()
        except Exception:
            return False
        return True

    # ---- the writer ----------------------------------------------------------------------

    def _new_future(self) -> asyncio.Future[int]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> int:
        writer = self._writer
        if writer is None or writer.done() or self._closing:
            raise AuditUnavailable("audit store is not open")
        self._jobs.append(job)
        self._wakeup.set()
        # If the caller is cancelled its batch may still be written: recording an access whose
        # response was never sent is harmless; the opposite is what the trail must prevent.
        return await job.future

    def _take_group(self) -> list[_Job]:
        """The next transaction: one purge alone, or consecutive commits up to the bound."""
        jobs = self._jobs
        if jobs[0].purge is not None:
            group = [jobs.pop(0)]
            return group
        count, n = 0, 0
        while n < len(jobs) and jobs[n].purge is None:
            size = len(jobs[n].prepared)
            if n and count + size > self.max_rows_per_transaction:
                break
            count += size
            n += 1
        group = jobs[:n]
        del jobs[:n]
        return group

    async def _run_writer(self) -> None:
        try:
            while True:
                if not self._jobs:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                group = self._take_group()
                await self._run_group(group)
        finally:
            # Never leave a caller waiting forever (cancelled writer, loop shutdown).
            for job in self._jobs:
                if not job.future.done():
                    job.future.set_exception(AuditUnavailable("audit store closed"))
            self._jobs.clear()

    async def _run_group(self, group: list[_Job]) -> None:
        try:
            first = group[0]
            if first.purge is not None:
                result = await first.purge()
            else:
                await self._write([job.prepared for job in group])
                result = 0
        except PurgeRefused as exc:
            for job in group:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        except Exception as exc:
            self._last_failure = time.monotonic()
            # Logged without batch content: the trail's data stays in the trail.
            log.error(
                "audit transaction of %d batch(es) failed: %s: %s",
                len(group),
                type(exc).__name__,
                exc,
            )
            for job in group:
                if not job.future.done():
                    error = AuditUnavailable("the audit trail could not record this")
                    error.__cause__ = exc
                    job.future.set_exception(error)
            return
        self._last_failure = None
        for job in group:
            if not job.future.done():
                job.future.set_result(result)
        hook = self.on_append
        if hook is not None:
            try:
                hook(len(group))
            except Exception as exc:  # the checkpointer's trouble is never the writer's
                log.error("audit append hook failed: %s", type(exc).__name__)
