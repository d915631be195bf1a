"""The per-request state that resolvers see as ``info.context``.

It holds the principal, the purpose and its grant, the plan (set before execution, once the
document is validated), the fetcher, and the accesses to record. Resolvers only append to
``accesses``; the service turns them into one audit batch after execution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.audit.model import FieldDecision
from gateway.proportionality.counting import Tally

if TYPE_CHECKING:
    from graphql import DocumentNode

    from gateway.admission.tokens import Principal
    from gateway.audit.store import AuditStore
    from gateway.execution.cache import RecordCache
    from gateway.execution.fetch import PersonFetcher, PersonOutcome, Registries
    from gateway.planning.plan import RequestPlan, RootPlan
    from gateway.policy.model import Grant, Purpose


@dataclass(slots=True)
class Access:
    """One person returned (or refused) by one root field."""

    root: RootPlan
    vnummer: str
    decisions: tuple[FieldDecision, ...]


@dataclass(slots=True)
class RequestState:
    principal: Principal
    officer: str
    purpose: Purpose
    grant: Grant
    processing_activity: str
    started: datetime
    registries: Registries
    cache: RecordCache
    audit_store: AuditStore
    pseudonym: Callable[[str], str]
    document: DocumentNode | None = None  # parsed and validated (gateway.planning.document)
    plan: RequestPlan | None = None
    fetcher: PersonFetcher | None = None
    #: Every person the operation names, fetched before execution, by V-nummer.
    persons: dict[str, PersonOutcome] = field(default_factory=dict)
    accesses: list[Access] = field(default_factory=list)
    request_decisions: list[FieldDecision] = field(default_factory=list)
    #: What the request names and may return (gateway.proportionality.counting), set before
    #: execution, also when the request is refused (its count of identifiers is recorded).
    tally: Tally = field(default_factory=Tally)
