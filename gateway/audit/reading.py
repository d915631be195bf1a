"""Reading the trail is processing too: one way to record a use of the trail.

Every search, report, console page view and export of the trail is itself committed as an entry
(purpose ``VERANTWOORDING``) *before* its result is shown; when that commit fails, nothing is
shown. Both the audit CLI and the accountability console record through :func:`record_reading`,
and so do the admin actions of the same officers: a purge of one person's cached registry
answers (:data:`CACHE_PURGE`) is recorded before anything is removed.

The entry carries one given decision: ``coordinate`` names the kind of use (``Audit.search``,
``Console.zoeken``), ``path`` the filters that were applied (never a raw V-nummer), ``reason``
why it was allowed (the CLI's code, or the policy rule that grants VERANTWOORDING). Every data
subject the use showed gets a subject row with that decision, so the person's own access report
lists who looked at their trail; a use that showed no subject is one request-level record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from gateway.audit.model import AccessContext, AuditBatch, Decision, FieldDecision, SubjectAccess
from gateway.audit.store import AuditStore

#: The purpose every use of the trail is recorded under.
READING_PURPOSE = "VERANTWOORDING"
#: The coordinate of a purge of one person's cached registry answers (an admin action, recorded
#: the same way: the gateway's ``POST /admin/cache/purge`` and ``ketenpoort cache purge``).
CACHE_PURGE = "Cache.purge"
#: Coordinates of uses of the trail and of admin actions start with one of these (they name no
#: schema field).
READING_PREFIXES = ("Audit.", "Console.", "Cache.")


def is_reading(coordinate: str) -> bool:
    """Whether a record's coordinate names a use of the trail rather than a schema field."""
    return coordinate.startswith(READING_PREFIXES)


def reading_batch(
    context: AccessContext,
    *,
    coordinate: str,
    reason: str,
    path: str = "",
    subjects: Iterable[str] = (),
    decision: Decision = Decision.GIVEN,
) -> AuditBatch:
    """The batch recording one use of the trail (subjects deduplicated, first-seen order).

    ``decision`` is ``REFUSED`` for an attempt the policy turned away (``reason`` then is the
    refusal code), so attempts to read the trail are accounted like the gateway's refusals.
    """
    decisions = (FieldDecision(coordinate, path, decision, reason, None),)
    batch = AuditBatch(context=context, end_time=dt.datetime.now(dt.UTC))
    seen: dict[str, None] = dict.fromkeys(subjects)
    batch.subjects.extend(SubjectAccess(subject, decisions) for subject in seen)
    if not seen:
        batch.request_decisions.extend(decisions)
    return batch


async def record_reading(
    store: AuditStore,
    context: AccessContext,
    *,
    coordinate: str,
    reason: str,
    path: str = "",
    subjects: Iterable[str] = (),
    decision: Decision = Decision.GIVEN,
) -> None:
    """Commit the record of one use of the trail; raises ``AuditUnavailable`` when it cannot."""
    await store.commit(
        reading_batch(
            context,
            coordinate=coordinate,
            reason=reason,
            path=path,
            subjects=subjects,
            decision=decision,
        )
    )
