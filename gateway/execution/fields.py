"""Root-field resolution: persons, searches, statistics and trail searches.

Each function reads the request's plan (computed once per document and grant), takes the
persons fetched before execution (or fetches a search's results), lays the plan's refusals over
the registry objects and notes every person it returns or refuses, for the audit batch.
Nothing here runs per field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strawberry.types import Info

from gateway.audit.model import AuditQuery, Decision, FieldDecision
from gateway.errors import Code, GatewayError
from gateway.execution.context import Access, RequestState
from gateway.execution.fetch import PersonFetcher, PersonOutcome
from gateway.identifiers import is_vnummer
from gateway.planning.plan import RootPlan
from gateway.proportionality.counting import moment, search_limit
from gateway.proportionality.suppression import Cell, RawCell, suppress, suppress_hierarchy


def _root(info: Info) -> tuple[RequestState, RootPlan]:
    state: RequestState = info.context
    assert state.plan is not None, "the gateway plans every request before executing it"
    return state, state.plan.roots[str(info.path.key)]


def fetcher_for(state: RequestState) -> PersonFetcher:
    """The request's fetcher (one per request: its DataLoaders batch every look-up)."""
    if state.fetcher is None:
        assert state.plan is not None
        scope = state.purpose.rijbereik
        state.fetcher = PersonFetcher(
            state.registries,
            state.cache,
            state.plan,
            None if scope is None else scope.as_condition(),
            state.pseudonym,
        )
    return state.fetcher


def out_of_scope_error(purpose_id: str) -> GatewayError:
    """The error in place of a person outside the purpose's row scope."""
    return GatewayError(
        Code.SUBJECT_OUT_OF_SCOPE,
        f"This person is outside the scope of purpose {purpose_id}.",
        doelbinding=purpose_id,
    )


def scope_unchecked_error() -> GatewayError:
    """The error in place of a person whose scope the BVV could not check."""
    return GatewayError(Code.REGISTRY_UNAVAILABLE, "Registry BVV is unavailable.", registry="BVV")


def nothing_given(decisions: tuple[FieldDecision, ...]) -> tuple[FieldDecision, ...]:
    """The decisions of a person whose scope could not be checked: every 'given' an error."""
    return tuple(
        FieldDecision(d.coordinate, d.path, Decision.ERROR, Code.REGISTRY_UNAVAILABLE, d.registry)
        if d.decision is Decision.GIVEN
        else d
        for d in decisions
    )


def _deliver(state: RequestState, root: RootPlan, outcomes: Sequence[PersonOutcome]) -> list[Any]:
    """Person objects (refusals laid over) or errors, in order; every outcome is noted for the
    audit batch, the persons given as well as those refused or unknown."""
    plan = state.plan
    assert plan is not None
    overlay = plan.overlay
    accesses = state.accesses
    results: list[Any] = []
    for outcome in outcomes:
        if outcome.value is not None:
            accesses.append(
                Access(root, outcome.vnummer, plan.decisions_with_failures(root, outcome.failed))
            )
            results.append(overlay.apply_to_own(outcome.value))
        elif outcome.out_of_scope:
            accesses.append(Access(root, outcome.vnummer, root.out_of_scope))
            results.append(out_of_scope_error(state.purpose.id))
        elif outcome.failed:
            # The scope could not be checked: nothing of this person is released (no other
            # registry was even asked), so no decision may stay "given".
            accesses.append(Access(root, outcome.vnummer, nothing_given(root.decisions)))
            results.append(scope_unchecked_error())
        else:  # unknown: that it is unknown was disclosed, so it is recorded
            accesses.append(Access(root, outcome.vnummer, root.not_found))
            results.append(None)
    return results


def _named(info: Info, vnummers: Sequence[str]) -> list[Any]:
    """The persons a root field names; fetched before execution (:meth:`Gateway.prepare`)."""
    state, root = _root(info)
    if root.refusal is not None:  # recorded for the request: it names nobody in the trail
        state.request_decisions.extend(root.request_decisions)
        raise root.refusal.fresh()  # never the plan's own object: see GatewayError.fresh
    persons = state.persons
    outcomes = []
    for vnummer in vnummers:
        outcome = persons.get(vnummer)
        if outcome is None:  # every V-nummer was checked and fetched before execution
            raise GatewayError(Code.INTERNAL_ERROR, "A person was not fetched before execution.")
        outcomes.append(outcome)
    return _deliver(state, root, outcomes)


def one(info: Info, vnummer: str) -> Any:
    result = _named(info, [vnummer])[0]
    if isinstance(result, GatewayError):
        raise result
    return result


def many(info: Info, vnummers: Sequence[str]) -> list[Any]:
    return _named(info, vnummers)


async def search(info: Info, surname: str, birth_date: str) -> list[Any]:
    state, root = _root(info)
    if root.refusal is not None:
        state.request_decisions.extend(root.request_decisions)
        raise root.refusal.fresh()  # never the plan's own object: see GatewayError.fresh
    # Checked before execution (gateway.proportionality.counting); the strip is the search's.
    surname = surname.strip()
    scope = state.purpose.rijbereik
    # The row scope goes to the BVV like a look-up's: persons outside it are not projected, and
    # the search asks for no more persons than it was charged for.
    found = await state.registries.bvv.search(
        surname,
        birth_date,
        ("vnummer",),
        search_limit(state.purpose),
        None if scope is None else scope.as_condition(),
    )
    if not all(is_vnummer(v) for v in found.records):
        raise GatewayError(
            Code.REGISTRY_UNAVAILABLE, "Registry BVV is unavailable.", registry="BVV"
        )
    # Matches outside the scope stay at the registry (it does not name them to us): they are not
    # looked up, not in the answer, and not recorded as data subjects.
    vnummers = list(found.records)
    if not vnummers:  # that nobody matches was disclosed: recorded, without a data subject
        state.request_decisions.extend(root.not_found)
        return []
    outcomes = await fetcher_for(state).persons(vnummers)
    # A person who left the scope between the search and the look-up is left out of the list
    # (it has no room for an error per item) and recorded as refused.
    return [
        p
        for p in _deliver(state, root, outcomes)
        if not isinstance(p, GatewayError) and p is not None
    ]


async def statistics(info: Info, peildatum: str, grouping: Any) -> list[Any]:
    """Suppressed reception counts. LOCATIE and GEMEENTE are two views of one hierarchy that a
    reader combines, so both are published from one joint pattern computed over the COA's
    location cells (with their municipalities); the other groupings are one-level tables."""
    state, root = _root(info)
    if root.refusal is not None:
        state.request_decisions.extend(root.request_decisions)
        raise root.refusal.fresh()  # never the plan's own object: see GatewayError.fresh
    try:
        cells = await _suppressed_cells(state, peildatum, grouping.value)
    except GatewayError as error:  # recorded as what it was: nothing given
        state.request_decisions.extend(
            FieldDecision(d.coordinate, d.path, Decision.ERROR, error.code.value, "COA")
            if d.decision is Decision.GIVEN
            else d
            for d in root.request_decisions
        )
        raise
    state.request_decisions.extend(root.request_decisions)
    overlay = root.overlay
    return [
        overlay.apply(item) if overlay is not None else item
        for item in (
            {"sleutel": c.key, "aantal": c.count, "onderdrukt": c.suppressed} for c in cells
        )
    ]


async def _suppressed_cells(state: RequestState, peildatum: str, grouping: str) -> list[Cell]:
    threshold = state.purpose.min_cell or 10
    cells: list[Cell]
    if grouping in ("LOCATIE", "GEMEENTE"):
        raw = await state.registries.coa.statistics(peildatum, "LOCATIE")
        if not all(isinstance(c.get("bovenliggend"), str) for c in raw):
            raise GatewayError(
                Code.REGISTRY_UNAVAILABLE, "Registry COA is unavailable.", registry="COA"
            )
        pattern = suppress_hierarchy(
            [RawCell(str(c["sleutel"]), int(c["aantal"]), str(c["bovenliggend"])) for c in raw],
            threshold,
        )
        cells = pattern.leaves if grouping == "LOCATIE" else pattern.parents
    else:
        raw = await state.registries.coa.statistics(peildatum, grouping)
        cells = suppress(
            [RawCell(str(c["sleutel"]), int(c["aantal"]), c.get("bovenliggend")) for c in raw],
            threshold,
        )
    return cells


async def audit_search(
    info: Info,
    vnummer: str | None,
    officer: str | None,
    organisation: str | None,
    purpose: str | None,
    since: str | None,
    until: str | None,
) -> list[Any]:
    state, root = _root(info)
    if root.refusal is not None:
        state.request_decisions.extend(root.request_decisions)
        raise root.refusal.fresh()  # never the plan's own object: see GatewayError.fresh
    # Every argument was checked before anything was charged (gateway.proportionality.counting);
    # the bounds are read with the same parser.
    query = AuditQuery(
        subject=state.pseudonym(vnummer) if vnummer is not None else None,
        officer=officer,
        organisation=organisation,
        purpose=purpose,
        since=moment(since, "sinds"),
        until=moment(until, "tot"),
        limit=500,
    )
    if vnummer is not None:  # a search about a person is recorded about that person
        state.accesses.append(Access(root, vnummer, root.request_decisions))
    else:
        state.request_decisions.extend(root.request_decisions)
    records = await state.audit_store.search(query)
    overlay = root.overlay
    rows = [
        {
            "volgnummer": r.seq,
            "tijdstip": r.start_time.isoformat(),
            "traceId": r.trace_id,
            "organisatie": r.organisation,
            "oin": r.organisation_oin,
            "medewerker": r.officer,
            "aangemeldAls": r.authenticated_as,
            "rollen": list(r.roles),
            "doelbinding": r.purpose,
            "grondslag": r.legal_basis,
            "verwerking": r.processing_activity_id,
            "betrokkene": r.data_subject_id,
            "coordinaat": r.coordinate,
            "pad": r.path,
            "besluit": r.decision.value,
            "reden": r.reason,
            "register": r.registry,
            "beleidsversie": r.policy_version,
        }
        for r in records
    ]
    return [overlay.apply(row) for row in rows] if overlay is not None else rows
