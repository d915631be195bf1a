"""The approved data set (the policy model) and its compiled decision table.

The policy file (``policy/ketenbeleid.yaml``) is the DPIA's data set in machine form;
:mod:`gateway.policy.parsing` reads it strictly into a :class:`Policy`. This module

* compiles it, per (organisation, roles, purpose), into a :class:`Grant`: the set of allowed
  schema coordinates plus, for *every* coordinate of the schema, the id of the rule (or the
  refusal code) that decided it, so the audit trail can always say why;
* keeps the legal safeguards out of the reviewers' hands where they must not depend on care:
  a coordinate that is special-category (AVG art. 9) or criminal (AVG art. 10) data according to
  :mod:`gateway.domain` is refused at decision time when the purpose has no explicit basis for
  it, whatever the rules say (``policy check`` warns about such rules).

Decision order for one coordinate (first match wins):

1. a matching ``verbieden`` rule → refused, reason = that rule's id (forbid beats allow);
2. no matching ``toestaan`` rule → refused, ``DEFAULT_DENY``;
3. special category without ``bijzondere_persoonsgegevens`` basis → ``AVG_ART9_GEEN_GRONDSLAG``;
   criminal data without ``strafrechtelijke_gegevens`` basis → ``AVG_ART10_GEEN_GRONDSLAG``;
4. an ``alleen_aggregaten`` purpose and a coordinate that is not aggregate → ``ALLEEN_AGGREGATEN``;
5. purpose ``opgeschort`` / ``verboden`` → ``DOELBINDING_OPGESCHORT`` / ``DOELBINDING_VERBODEN``
   (the request layer refuses such purposes as a whole; this is defence in depth);
6. otherwise given, reason = the id of the first allowing rule in file order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from gateway.domain import (
    CRIMINAL_DATA,
    CRIMINAL_DATA_TYPES,
    SPECIAL_CATEGORY,
    SPECIAL_CATEGORY_TYPES,
)

# --- refusal codes (stable: they are written into audit records) ---------------------------------
DEFAULT_DENY: Final = "DEFAULT_DENY"
ART9_NO_BASIS: Final = "AVG_ART9_GEEN_GRONDSLAG"
ART10_NO_BASIS: Final = "AVG_ART10_GEEN_GRONDSLAG"
AGGREGATES_ONLY: Final = "ALLEEN_AGGREGATEN"
PURPOSE_SUSPENDED: Final = "DOELBINDING_OPGESCHORT"
PURPOSE_FORBIDDEN: Final = "DOELBINDING_VERBODEN"

#: Wildcard for organisation, roles and purpose — only in ``verbieden`` rules (see _read_rule).
WILDCARD: Final = "*"

Status = Literal["actief", "opgeschort", "verboden"]
Effect = Literal["toestaan", "verbieden"]
ScopeKind = Literal["signaal", "meldplicht"]

STATUSES: Final[tuple[Status, ...]] = ("actief", "opgeschort", "verboden")
EFFECTS: Final[tuple[Effect, ...]] = ("toestaan", "verbieden")

#: Types whose values are counts over groups, never a person: the only data an
#: ``alleen_aggregaten`` purpose may reach (plus the root fields that return them).
AGGREGATE_TYPES: Final[frozenset[str]] = frozenset({"StatistiekCel"})


class PolicyError(ValueError):
    """The policy file is not valid. ``str()`` names the file and every offending item.

    ``problems`` holds the individual findings (each already prefixed with the file name).
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Organisation:
    """A chain organisation. ``oin`` is its 20-digit Organisatie-identificatienummer.

    ``roles`` lists the roles the policy knows for this organisation; when non-empty, rules may
    only name these roles (so a typo in a forbidding rule cannot silently forbid nothing).
    """

    id: str
    oin: str
    naam: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scope:
    """Row scope of a purpose: which data subjects it may touch at all.

    ``kind == "signaal"``: only subjects with a signal whose ``soort`` equals ``value``;
    ``kind == "meldplicht"``: only subjects whose reporting obligation is active (``value`` is
    ``"actief"``).
    """

    kind: ScopeKind
    value: str

    def describe(self) -> str:
        """A one-line Dutch description for the register and CLI."""
        if self.kind == "signaal":
            return f"alleen betrokkenen met signalering {self.value}"
        return "alleen betrokkenen met een actieve meldplicht"

    def as_condition(self) -> dict[str, Any]:
        """The BVV's ``voorwaarde``: ``{"signaal": SOORT}`` or ``{"meldplicht": True}``.

        The scope is checked at the source, so persons outside it never leave the registry.
        """
        if self.kind == "signaal":
            return {"signaal": self.value}
        return {"meldplicht": True}


@dataclass(frozen=True, slots=True)
class Purpose:
    """A purpose (doelbinding) with its legal bases, scope, caps and status.

    ``bijzondere_grondslag`` / ``strafrechtelijke_grondslag`` are ``None`` when the purpose has no
    AVG art. 9 / art. 10 basis; then no special-category / criminal coordinate is ever given.
    ``status_reason`` is set whenever ``status`` is not ``actief`` (it is shown to callers).
    ``min_cell`` is the smallest count an aggregate cell may show (0 when not an aggregate purpose).
    """

    id: str
    omschrijving: str
    grondslag: str
    bijzondere_grondslag: str | None
    strafrechtelijke_grondslag: str | None
    rijbereik: Scope | None
    max_subjects: int
    quota_per_day: int
    status: Status
    status_reason: str | None
    retention_days: int
    processing_activities: tuple[str, ...]
    aggregates_only: bool
    min_cell: int

    @property
    def active(self) -> bool:
        """Whether the purpose may be used at all."""
        return self.status == "actief"


@dataclass(frozen=True, slots=True)
class Rule:
    """An authorisation rule: organisation × roles × purpose → coordinates.

    ``coordinates`` is the expanded set (``Type.*`` replaced by every field of ``Type``), in
    schema order. ``organisation``, ``purpose`` and ``roles`` may be ``"*"`` only when
    ``effect == "verbieden"``.
    """

    id: str
    organisation: str
    roles: tuple[str, ...]
    purpose: str
    effect: Effect
    coordinates: tuple[str, ...]

    def matches(self, organisation: str, roles: frozenset[str], purpose: str) -> bool:
        """Whether this rule applies to a caller of ``organisation`` with ``roles`` for ``purpose``.

        A role wildcard matches every caller, including one without roles.
        """
        return (
            self.organisation in (organisation, WILDCARD)
            and self.purpose in (purpose, WILDCARD)
            and (WILDCARD in self.roles or not roles.isdisjoint(self.roles))
        )


@dataclass(frozen=True, slots=True, eq=False)
class Grant:
    """The compiled decision table for one (organisation, roles, purpose).

    ``allowed``: the coordinates that are given. ``approved``: what the rules and the legal
    safeguards allow regardless of the purpose's status (equal to ``allowed`` for an active
    purpose; for a suspended one it is what will be given once restored — for the register and
    ``explain``). ``reasons``: every schema coordinate → the rule id or refusal code that decided
    it. ``roles`` is the caller's roles restricted to those the policy names (others change
    nothing).
    """

    organisation: str
    roles: frozenset[str]
    purpose: Purpose
    allowed: frozenset[str]
    approved: frozenset[str]
    reasons: Mapping[str, str]

    @property
    def purpose_id(self) -> str:
        """The purpose's id (what the planner names in refusals)."""
        return self.purpose.id

    def decide(self, coordinate: str) -> tuple[bool, str]:
        """``(given, reason)`` for ``coordinate``: two look-ups, nothing more.

        A coordinate the schema does not have is refused with ``DEFAULT_DENY``.
        """
        return coordinate in self.allowed, self.reasons.get(coordinate, DEFAULT_DENY)


_GrantKey = tuple[str, frozenset[str], str]


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A loaded, validated policy. Build it with :func:`gateway.policy.parsing.parse_policy`.

    ``version`` is the SHA-256 (hex) of the file's bytes: it goes into every audit record, so a
    record can always be traced back to the exact text the reviewers approved. ``label`` is the
    free-text ``versie`` of the file. ``warnings`` are findings that do not stop the load (printed
    by ``ketenpoort policy check``).
    """

    path: Path
    version: str
    label: str
    register_base: str
    organisations: Mapping[str, Organisation]
    purposes: Mapping[str, Purpose]
    rules: tuple[Rule, ...]
    coordinates: Mapping[str, str]
    warnings: tuple[str, ...]
    _by_oin: Mapping[str, Organisation] = field(repr=False)
    _known_roles: frozenset[str] = field(repr=False)
    _grants: dict[_GrantKey, Grant] = field(default_factory=dict, repr=False)

    @property
    def short_version(self) -> str:
        """The first 16 hex characters of :attr:`version` (for logs and headers)."""
        return self.version[:16]

    def organisation_by_oin(self, oin: str) -> Organisation | None:
        """The organisation with this OIN, or ``None``."""
        return self._by_oin.get(oin)

    def processing_activity_uri(self, activity_id: str) -> str:
        """The URI of a processing activity: the register base + ``activity_id``.

        Raises ``KeyError`` when no purpose lists ``activity_id``: an audit record must never
        point at an activity that is not in the register.
        """
        if not any(activity_id in p.processing_activities for p in self.purposes.values()):
            raise KeyError(f"unknown processing activity {activity_id!r}")
        return self.register_base + activity_id

    def purposes_for(self, organisation: str, roles: Iterable[str]) -> set[str]:
        """Purposes that some ``toestaan`` rule grants to this organisation and any of ``roles``.

        Includes suspended and forbidden purposes (so the caller is told *why* it is refused,
        ``PURPOSE_SUSPENDED`` / ``PURPOSE_FORBIDDEN``, rather than ``PURPOSE_NOT_GRANTED``).
        """
        role_set = frozenset(roles)
        return {
            rule.purpose
            for rule in self.rules
            if rule.effect == "toestaan"
            and rule.organisation == organisation
            and not role_set.isdisjoint(rule.roles)
        }

    def grant(self, organisation: str, roles: Iterable[str], purpose: str) -> Grant:
        """The compiled decision table for a caller; computed once per key, then cached.

        An unknown organisation gets a grant that refuses everything. Raises ``KeyError`` for a
        purpose the policy does not define (the request layer answers that before asking).
        """
        if purpose not in self.purposes:
            raise KeyError(f"unknown purpose {purpose!r}")
        # Roles the policy never names cannot change a decision (only "*" rules match them, and
        # those match every caller anyway): dropping them bounds the cache to the policy's size.
        role_set = frozenset(roles) & self._known_roles
        key = (organisation, role_set, purpose)
        grant = self._grants.get(key)
        if grant is None:
            # setdefault: under concurrent first use both compile the same value; one wins.
            grant = self._grants.setdefault(key, self._compile(organisation, role_set, purpose))
        return grant

    def _compile(self, organisation: str, roles: frozenset[str], purpose_id: str) -> Grant:
        purpose = self.purposes[purpose_id]
        allowing: dict[str, str] = {}
        forbidding: dict[str, str] = {}
        for rule in self.rules:
            if not rule.matches(organisation, roles, purpose_id):
                continue
            target = forbidding if rule.effect == "verbieden" else allowing
            for coordinate in rule.coordinates:
                target.setdefault(coordinate, rule.id)  # first rule in file order names it

        status_code = {"opgeschort": PURPOSE_SUSPENDED, "verboden": PURPOSE_FORBIDDEN}
        reasons: dict[str, str] = {}
        approved: set[str] = set()
        for coordinate, named_type in self.coordinates.items():
            if coordinate in forbidding:
                reasons[coordinate] = forbidding[coordinate]
            elif coordinate not in allowing:
                reasons[coordinate] = DEFAULT_DENY
            elif (refusal := legal_refusal(coordinate, named_type, purpose)) is not None:
                reasons[coordinate] = refusal
            elif not purpose.active:
                approved.add(coordinate)
                reasons[coordinate] = status_code[purpose.status]
            else:
                approved.add(coordinate)
                reasons[coordinate] = allowing[coordinate]
        return Grant(
            organisation=organisation,
            roles=roles,
            purpose=purpose,
            allowed=frozenset(approved) if purpose.active else frozenset(),
            approved=frozenset(approved),
            reasons=MappingProxyType(reasons),
        )


# --- classification of coordinates ---------------------------------------------------------


def owner_type(coordinate: str) -> str:
    """``"Naam"`` for ``"Naam.voornamen"``."""
    return coordinate.partition(".")[0]


def is_special_category(coordinate: str, named_type: str) -> bool:
    """Whether the coordinate is (or lies below) special-category data, AVG art. 9."""
    return (
        coordinate in SPECIAL_CATEGORY
        or owner_type(coordinate) in SPECIAL_CATEGORY_TYPES
        or named_type in SPECIAL_CATEGORY_TYPES
    )


def is_criminal_data(coordinate: str, named_type: str) -> bool:
    """Whether the coordinate is (or lies below) criminal data, AVG art. 10."""
    return (
        coordinate in CRIMINAL_DATA
        or owner_type(coordinate) in CRIMINAL_DATA_TYPES
        or named_type in CRIMINAL_DATA_TYPES
    )


def is_aggregate(coordinate: str, named_type: str) -> bool:
    """Whether the coordinate yields (or lies inside) an aggregate, never a person."""
    return owner_type(coordinate) in AGGREGATE_TYPES or named_type in AGGREGATE_TYPES


def legal_refusal(coordinate: str, named_type: str, purpose: Purpose) -> str | None:
    """The refusal code the legal safeguards impose on ``coordinate`` under ``purpose``, if any.

    Independent of the rules: a rule can never make these coordinates available.
    """
    if is_special_category(coordinate, named_type) and purpose.bijzondere_grondslag is None:
        return ART9_NO_BASIS
    if is_criminal_data(coordinate, named_type) and purpose.strafrechtelijke_grondslag is None:
        return ART10_NO_BASIS
    if purpose.aggregates_only and not is_aggregate(coordinate, named_type):
        return AGGREGATES_ONLY
    return None


# --- explain ---------------------------------------------------------------------------------


def explain(
    policy: Policy, organisation: str, roles: Iterable[str], purpose: str
) -> list[tuple[str, bool, str]]:
    """Every schema coordinate (schema order) → (coordinate, given, rule id or refusal code).

    Raises ``KeyError`` for an unknown purpose (as :meth:`Policy.grant`).
    """
    grant = policy.grant(organisation, roles, purpose)
    return [(c, *grant.decide(c)) for c in policy.coordinates]
