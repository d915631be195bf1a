"""Reading the policy file's text strictly into a :class:`~gateway.policy.model.Policy`.

Unknown keys, duplicate keys or ids, unknown schema coordinates, purposes, organisations or
roles, malformed OINs and statuses stop the load with a :class:`PolicyError` whose message names
the file and the offending item — a policy that does not say exactly what the reviewers approved
must never be half-applied. Findings that do not stop the load (``policy check`` shows them)
are warnings (:mod:`gateway.policy.lint`). No I/O here: the composition root reads the file.
One cohesive reader, section by section in file order, so it stays one module (~450 lines).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import yaml

from gateway.domain import SignaleringSoort
from gateway.identifiers import is_identifier
from gateway.policy.lint import lint
from gateway.policy.model import (
    EFFECTS,
    STATUSES,
    WILDCARD,
    Effect,
    Organisation,
    Policy,
    PolicyError,
    Purpose,
    Rule,
    Scope,
    Status,
    owner_type,
)
from gateway.policy.non_null import non_null_problems

# Ids, OINs and processing-activity ids (the last segment of a URI, sent in the X-Verwerking
# header) are checked by gateway.identifiers: ASCII only, length first, whole-string match.


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
        if is_identifier(value, "policy_id"):
            return value
        if wildcard and value == WILDCARD:
            return WILDCARD
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


def parse_policy(
    data: bytes, path: Path, coordinates: Mapping[str, str], *, non_null: Collection[str]
) -> Policy:
    """Parse and validate the policy text ``data`` (read from ``path``) against ``coordinates``.

    ``coordinates`` is :func:`gateway.execution.schema.schema_coordinates` of the served schema
    (``Type.field`` → named type); ``non_null`` its non-null fields below the root
    (:func:`gateway.execution.schema.non_null_coordinates`): a grant that gives a type but
    refuses one of them is an error (:mod:`gateway.policy.non_null`). Raises
    :class:`PolicyError` (naming the file and each offending item) when the text is not valid
    YAML or does not validate; findings that do not stop the load are in
    :attr:`Policy.warnings`. Reads nothing: the caller reads the file
    (:func:`gateway.assembly.policy_file.load_policy`).
    """
    problems = _Problems(path)
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
        re.fullmatch(r"https?://[!-~]+/", register_base, re.ASCII)
        or register_base.startswith("urn:")
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

    lint(problems.warn, purposes, rules, coordinates)
    policy = Policy(
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
    refused = non_null_problems(policy, non_null)
    if refused:
        raise PolicyError(f"{path}: {problem}" for problem in refused)
    return policy


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
        elif not isinstance(oin_raw, str) or not is_identifier(oin_raw, "oin"):
            if "oin" in item.raw:
                item.fail(f"'oin' must be 20 digits, got {oin_raw!r}")
        else:
            oin = oin_raw
        naam = item.text("naam") or ""
        roles = item.texts("rollen") if "rollen" in item.raw else []
        for role in roles:
            if not is_identifier(role, "policy_id"):
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
            if not is_identifier(activity, "activity"):
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
            elif not is_identifier(role, "policy_id"):
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
