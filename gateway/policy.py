"""The approved data set (DESIGN.md, Policy): loading, validation and the compiled decision table.

The policy file (``policy/ketenbeleid.yaml``) is the DPIA's data set in machine form. This module

* loads it strictly: unknown keys, duplicate keys or ids, unknown schema coordinates, purposes,
  organisations or roles, malformed OINs and statuses stop the load with a :class:`PolicyError`
  whose message names the file and the offending item — a policy that does not say exactly what
  the reviewers approved must never be half-applied;
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

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, cast

import yaml

from gateway.domain import (
    CRIMINAL_DATA,
    CRIMINAL_DATA_TYPES,
    SPECIAL_CATEGORY,
    SPECIAL_CATEGORY_TYPES,
    SignaleringSoort,
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

_ID_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_OIN_RE: Final = re.compile(r"^[0-9]{20}$")
# Processing-activity ids become the last segment of a URI and arrive in the X-Verwerking header.
_ACTIVITY_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    """A loaded, validated policy. Build it with :func:`load_policy`.

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


# --- loading ---------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML would silently keep the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` — explicit keys may override merged ones, as YAML intends
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Problems:
    """Collects findings so one run of ``policy check`` reports all of them, not only the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{self.path}: {where}: {message}")

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{self.path}: {where}: {message}")


class _Item:
    """Typed access to one YAML mapping; every problem is reported with ``where``."""

    def __init__(
        self,
        raw: object,
        where: str,
        problems: _Problems,
        required: Iterable[str],
        optional: Iterable[str] = (),
    ) -> None:
        self.where = where
        self.problems = problems
        self.ok = True
        self.raw: dict[str, Any] = {}
        if not isinstance(raw, dict):
            self.fail("must be a mapping")
            return
        self.raw = raw
        required = tuple(required)
        known = set(required) | set(optional)
        # Unknown keys are errors: a misspelt `efect: verbieden` must not fall back to the default.
        for key in raw:
            if key not in known:
                self.fail(f"unknown key {key!r} (known: {', '.join(sorted(known))})")
        for key in required:
            if key not in raw:
                self.fail(f"missing key {key!r}")

    def fail(self, message: str) -> None:
        """Record an error for this item and mark it invalid (it is then not added)."""
        self.ok = False
        self.problems.error(self.where, message)

    def text(self, key: str, *, nullable: bool = False) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if not nullable and key in self.raw:
                self.fail(f"{key!r} must not be empty")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{key!r} must be a non-empty text")
            return None
        return value.strip()

    def identifier(self, key: str, *, wildcard: bool = False) -> str:
        value = self.raw.get(key)
        if isinstance(value, str) and (_ID_RE.match(value) or (wildcard and value == WILDCARD)):
            return value
        if key in self.raw:
            self.fail(f"{key!r} must be an identifier (letters, digits, _ . -), got {value!r}")
        return ""

    def integer(self, key: str, *, minimum: int = 0, default: int | None = None) -> int:
        value = self.raw.get(key, default)
        # bool is an int in Python; `true` as a cap is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            if key in self.raw:
                self.fail(f"{key!r} must be an integer >= {minimum}, got {value!r}")
            return minimum
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{key!r} must be true or false, got {value!r}")
            return default
        return value

    def texts(self, key: str, *, allow_empty: bool = False) -> list[str]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            if key in self.raw:
                self.fail(f"{key!r} must be a list of texts")
            return []
        if not value and not allow_empty:
            self.fail(f"{key!r} must not be empty")
        return cast(list[str], value)


def load_policy(path: Path, coordinates: Mapping[str, str]) -> Policy:
    """Load and validate the policy at ``path`` against the schema's ``coordinates``.

    ``coordinates`` is :func:`gateway.schema.schema_coordinates` of the served schema
    (``Type.field`` → named type). Raises :class:`PolicyError` (naming the file and each offending
    item) when the file cannot be read, is not valid YAML, or does not validate; findings that do
    not stop the load are in :attr:`Policy.warnings`.
    """
    problems = _Problems(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        document = yaml.load(data, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}: invalid YAML: {exc}"]) from exc

    top = _Item(
        document,
        "(top level)",
        problems,
        required=("versie", "verwerkingsregister", "organisaties", "doelbindingen", "autorisaties"),
    )
    if not top.ok and not top.raw:
        raise PolicyError(problems.errors)
    label = top.text("versie") or ""
    register_base = top.text("verwerkingsregister") or ""
    if register_base and not (
        re.match(r"^https?://[^\s]+/$", register_base) or register_base.startswith("urn:")
    ):
        problems.error(
            "verwerkingsregister",
            f"must be an http(s) URI ending in '/' (ids are appended), got {register_base!r}",
        )

    organisations = _read_organisations(top.raw.get("organisaties"), problems)
    purposes = _read_purposes(top.raw.get("doelbindingen"), problems)
    rules = _read_rules(top.raw.get("autorisaties"), problems, organisations, purposes, coordinates)
    if problems.errors:
        raise PolicyError(problems.errors)

    _lint(problems, purposes, rules, coordinates)
    return Policy(
        path=path,
        version=hashlib.sha256(data).hexdigest(),
        label=label,
        register_base=register_base,
        organisations=MappingProxyType(organisations),
        purposes=MappingProxyType(purposes),
        rules=tuple(rules),
        coordinates=MappingProxyType(dict(coordinates)),
        warnings=tuple(problems.warnings),
        _by_oin=MappingProxyType({o.oin: o for o in organisations.values()}),
        _known_roles=frozenset(role for rule in rules for role in rule.roles if role != WILDCARD),
    )


def _items(raw: object, key: str, problems: _Problems) -> list[object]:
    if not isinstance(raw, list):
        if raw is not None:
            problems.error(key, "must be a list")
        return []
    return raw


def _label(section: str, index: int, raw: object) -> str:
    ident = raw.get("id") if isinstance(raw, dict) else None
    return f"{section}[{index}]" + (f" (id {ident!r})" if ident is not None else "")


def _read_organisations(raw: object, problems: _Problems) -> dict[str, Organisation]:
    result: dict[str, Organisation] = {}
    oins: dict[str, str] = {}
    for index, entry in enumerate(_items(raw, "organisaties", problems)):
        item = _Item(
            entry,
            _label("organisaties", index, entry),
            problems,
            required=("id", "oin", "naam"),
            optional=("rollen",),
        )
        ident = item.identifier("id")
        oin_raw = item.raw.get("oin")
        oin = ""
        if isinstance(oin_raw, int):
            item.fail(
                "'oin' must be a quoted text of 20 digits "
                "(unquoted, YAML may read it as a number — even octal — and drop leading zeros)"
            )
        elif not isinstance(oin_raw, str) or not _OIN_RE.match(oin_raw):
            if "oin" in item.raw:
                item.fail(f"'oin' must be 20 digits, got {oin_raw!r}")
        else:
            oin = oin_raw
        naam = item.text("naam") or ""
        roles = item.texts("rollen") if "rollen" in item.raw else []
        for role in roles:
            if not _ID_RE.match(role):
                item.fail(f"role {role!r} is not an identifier")
        if len(set(roles)) != len(roles):
            item.fail("'rollen' lists a role twice")
        if not item.ok:
            continue
        if ident in result:
            problems.error(item.where, f"duplicate organisation id {ident!r}")
            continue
        if oin in oins:
            problems.error(item.where, f"OIN {oin} is also used by organisation {oins[oin]!r}")
            continue
        oins[oin] = ident
        result[ident] = Organisation(id=ident, oin=oin, naam=naam, roles=tuple(roles))
    return result


def _read_scope(item: _Item) -> Scope | None:
    raw = item.raw.get("rijbereik")
    if raw is None:
        return None
    signals = [s.value for s in SignaleringSoort]
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, value),) = raw.items()
        if kind == "signaal" and value in signals:
            return Scope(kind="signaal", value=value)
        if kind == "meldplicht" and value == "actief":
            return Scope(kind="meldplicht", value="actief")
    item.fail(
        f"'rijbereik' must be null, {{signaal: {'|'.join(signals)}}} or {{meldplicht: actief}}, "
        f"got {raw!r}"
    )
    return None


def _read_purposes(raw: object, problems: _Problems) -> dict[str, Purpose]:
    result: dict[str, Purpose] = {}
    for index, entry in enumerate(_items(raw, "doelbindingen", problems)):
        item = _Item(
            entry,
            _label("doelbindingen", index, entry),
            problems,
            # rijbereik is required (null allowed): "no row scope" must be a visible decision.
            required=(
                "id",
                "omschrijving",
                "grondslag",
                "rijbereik",
                "max_personen_per_verzoek",
                "quotum_per_medewerker_per_dag",
                "status",
                "bewaartermijn_dagen",
                "verwerkingen",
            ),
            optional=(
                "bijzondere_persoonsgegevens",
                "strafrechtelijke_gegevens",
                "status_reden",
                "alleen_aggregaten",
                "min_celgrootte",
            ),
        )
        ident = item.identifier("id")
        status = item.raw.get("status")
        if status not in STATUSES and "status" in item.raw:
            item.fail(f"'status' must be one of {', '.join(STATUSES)}, got {status!r}")
        reason = item.text("status_reden", nullable=True)
        if status in ("opgeschort", "verboden") and reason is None:
            item.fail(f"'status_reden' is required when status is {status!r} (callers see it)")
        activities = item.texts("verwerkingen")
        for activity in activities:
            if not _ACTIVITY_RE.match(activity):
                item.fail(f"processing activity id {activity!r} is not URI-safe")
        if len(set(activities)) != len(activities):
            item.fail("'verwerkingen' lists an activity twice")
        aggregates_only = item.boolean("alleen_aggregaten", default=False)
        min_cell = item.integer("min_celgrootte", minimum=0, default=0)
        if aggregates_only and min_cell < 2:
            item.fail("'min_celgrootte' (>= 2) is required when 'alleen_aggregaten' is true")
        purpose = Purpose(
            id=ident,
            omschrijving=item.text("omschrijving") or "",
            grondslag=item.text("grondslag") or "",
            bijzondere_grondslag=item.text("bijzondere_persoonsgegevens", nullable=True),
            strafrechtelijke_grondslag=item.text("strafrechtelijke_gegevens", nullable=True),
            rijbereik=_read_scope(item),
            max_subjects=item.integer("max_personen_per_verzoek"),
            quota_per_day=item.integer("quotum_per_medewerker_per_dag"),
            status=cast(Status, status),
            status_reason=reason,
            retention_days=item.integer("bewaartermijn_dagen", minimum=1),
            processing_activities=tuple(activities),
            aggregates_only=aggregates_only,
            min_cell=min_cell,
        )
        if not item.ok:
            continue
        if ident in result:
            problems.error(item.where, f"duplicate purpose id {ident!r}")
            continue
        result[ident] = purpose
    # One X-Verwerking value must identify one purpose's activity, or the audit URI is ambiguous.
    owner: dict[str, str] = {}
    for purpose in result.values():
        for activity in purpose.processing_activities:
            if activity in owner:
                problems.error(
                    f"doelbindingen (id {purpose.id!r})",
                    f"processing activity {activity!r} is also listed by {owner[activity]!r}",
                )
            owner.setdefault(activity, purpose.id)
    return result


def _expand(
    pattern: str, coordinates: Mapping[str, str], by_type: Mapping[str, list[str]]
) -> list[str] | None:
    """``Type.field`` → ``[Type.field]``, ``Type.*`` → every field of Type; ``None`` if unknown."""
    type_name, dot, field_name = pattern.partition(".")
    if not dot or not type_name or not field_name:
        return None
    if field_name == WILDCARD:
        return by_type.get(type_name)
    return [pattern] if pattern in coordinates else None


def _read_rules(
    raw: object,
    problems: _Problems,
    organisations: Mapping[str, Organisation],
    purposes: Mapping[str, Purpose],
    coordinates: Mapping[str, str],
) -> list[Rule]:
    by_type: dict[str, list[str]] = {}
    for coordinate in coordinates:
        by_type.setdefault(owner_type(coordinate), []).append(coordinate)
    order = {c: i for i, c in enumerate(coordinates)}
    result: list[Rule] = []
    seen: set[str] = set()
    for index, entry in enumerate(_items(raw, "autorisaties", problems)):
        item = _Item(
            entry,
            _label("autorisaties", index, entry),
            problems,
            required=("id", "organisatie", "rollen", "doelbinding", "velden"),
            optional=("effect",),
        )
        ident = item.identifier("id")
        effect = item.raw.get("effect", "toestaan")
        if effect not in EFFECTS:
            item.fail(f"'effect' must be one of {', '.join(EFFECTS)}, got {effect!r}")
        # Wildcards only forbid: an allowing rule must name organisation, roles and purpose, so a
        # new purpose, role or organisation never inherits access by accident.
        wildcard = effect == "verbieden"
        organisation = item.identifier("organisatie", wildcard=wildcard)
        if organisation and organisation != WILDCARD and organisation not in organisations:
            item.fail(f"unknown organisation {organisation!r}")
        purpose = item.identifier("doelbinding", wildcard=wildcard)
        if purpose and purpose != WILDCARD and purpose not in purposes:
            item.fail(f"unknown purpose (doelbinding) {purpose!r}")
        roles = item.texts("rollen")
        declared = organisations[organisation].roles if organisation in organisations else ()
        for role in roles:
            if role == WILDCARD:
                if not wildcard:
                    item.fail("role '*' is only allowed in a 'verbieden' rule")
            elif not _ID_RE.match(role):
                item.fail(f"role {role!r} is not an identifier")
            elif declared and role not in declared:
                item.fail(f"unknown role {role!r} for organisation {organisation!r}")
        # An empty list is allowed: it records that a purpose is known to an organisation (so it
        # is told the purpose's status) without giving anything.
        expanded: set[str] = set()
        for pattern in item.texts("velden", allow_empty=True):
            fields = _expand(pattern, coordinates, by_type)
            if fields is None:
                item.fail(f"unknown schema coordinate {pattern!r}")
            else:
                expanded.update(fields)
        if not item.ok:
            continue
        if ident in seen:
            problems.error(item.where, f"duplicate rule id {ident!r}")
            continue
        seen.add(ident)
        result.append(
            Rule(
                id=ident,
                organisation=organisation,
                roles=tuple(roles),
                purpose=purpose,
                effect=cast(Effect, effect),
                coordinates=tuple(sorted(expanded, key=order.__getitem__)),
            )
        )
    return result


def _lint(
    problems: _Problems,
    purposes: Mapping[str, Purpose],
    rules: list[Rule],
    coordinates: Mapping[str, str],
) -> None:
    """Findings that do not stop the load but that a reviewer must see."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if rule.effect != "toestaan":
            continue
        purpose = purposes[rule.purpose]
        where = f"autorisaties (id {rule.id!r})"
        granted.setdefault((rule.organisation, rule.purpose), set()).update(rule.coordinates)
        if purpose.status == "verboden" and rule.coordinates:
            problems.warn(where, f"purpose {purpose.id!r} is verboden: its fields are never given")
        for coordinate in rule.coordinates:
            refusal = legal_refusal(coordinate, coordinates[coordinate], purpose)
            if refusal == ART9_NO_BASIS:
                problems.warn(
                    where,
                    f"allows {coordinate} (special category, AVG art. 9) but purpose "
                    f"{purpose.id!r} has no 'bijzondere_persoonsgegevens' basis: "
                    f"refused ({refusal})",
                )
            elif refusal == ART10_NO_BASIS:
                problems.warn(
                    where,
                    f"allows {coordinate} (criminal data, AVG art. 10) but purpose "
                    f"{purpose.id!r} has no 'strafrechtelijke_gegevens' basis: refused ({refusal})",
                )
            elif refusal == AGGREGATES_ONLY:
                problems.warn(
                    where,
                    f"allows {coordinate} but purpose {purpose.id!r} is alleen_aggregaten: "
                    f"refused ({refusal})",
                )
    object_types = {owner_type(c) for c in coordinates}
    for (organisation, purpose_id), allowed in sorted(granted.items()):
        if purposes[purpose_id].status == "verboden":
            continue
        where = f"autorisaties (organisation {organisation!r}, purpose {purpose_id!r})"
        if allowed and not any(owner_type(c) == "Query" for c in allowed):
            problems.warn(where, "no root field (Query.*) is allowed: nothing is reachable")
        for coordinate in sorted(allowed):
            named = coordinates[coordinate]
            if named in object_types and not any(owner_type(c) == named for c in allowed):
                problems.warn(
                    where, f"allows {coordinate} but no field of {named}: it can only be empty"
                )
    for purpose in purposes.values():
        if purpose.active and not any(key[1] == purpose.id for key in granted):
            problems.warn(f"doelbindingen (id {purpose.id!r})", "active purpose without any rule")
