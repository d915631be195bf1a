"""How every root field is counted against the per-request cap and the daily quota.

:data:`ROOT_COUNTING` is the one table: per root field of the schema, how it names or returns
persons. ``tests/test_counting.py`` walks every root field of the schema and fails when one is
missing here, so a new root field cannot slip past the caps.

The rules (:func:`tally`):

* The cap (``max_personen_per_verzoek``) counts the persons a request names, every alias and
  fragment again, plus the persons a search may return (:data:`SEARCH_LIMIT`; a trail search
  without a V-nummer may return records on as many persons as it returns rows). A request over
  the cap is refused before anything runs. Refused roots count too: they pass the same
  validation and cap as allowed ones, they are only not looked up.
* The daily quota is charged per person for every purpose that has one: each distinct person
  looked up, each person a search may return (a search is charged for what it may return,
  since a quota is never handed back), each person a trail search names; a statistic is one
  unit for an aggregates-only purpose.
* Every identifier is validated first (:mod:`gateway.identifiers`): a malformed one refuses the
  request with ``BAD_USER_INPUT`` before anything is fetched — and before anything is charged,
  as are a surname that is not printable text and a trail search's bounds (:func:`moment`, the
  one parser of ``sinds``/``tot``, also used by the resolver).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from gateway.errors import Code, GatewayError
from gateway.identifiers import is_identifier, is_vnummer
from gateway.policy.model import Purpose


class Counting(StrEnum):
    """How a root field names or returns persons."""

    NAMED = "named"  # one argument names one person
    NAMED_LIST = "named_list"  # one argument names a list of persons
    SEARCH = "search"  # names nobody; may return up to SEARCH_LIMIT persons
    TRAIL_SEARCH = "trail_search"  # names one person (vnummer), or may return many records
    AGGREGATE = "aggregate"  # names and returns nobody: suppressed counts


@dataclass(frozen=True, slots=True)
class RootCounting:
    """One row of the table: the kind of counting and the argument that names persons."""

    counting: Counting
    argument: str | None = None


#: Per root field of the schema: how it is counted (see the module's docstring).
ROOT_COUNTING: Final[Mapping[str, RootCounting]] = {
    "vreemdeling": RootCounting(Counting.NAMED, "vnummer"),
    "vreemdelingen": RootCounting(Counting.NAMED_LIST, "vnummers"),
    "zoekVreemdelingen": RootCounting(Counting.SEARCH),
    "opvangstatistiek": RootCounting(Counting.AGGREGATE),
    "auditZoeken": RootCounting(Counting.TRAIL_SEARCH, "vnummer"),
}
#: Root fields that are counted nowhere because they name and return nobody.
NOT_COUNTED: Final = frozenset({"__typename", "__schema", "__type"})

#: Persons one search (exact surname and birth date) may return: it is asked for no more.
SEARCH_LIMIT: Final = 5
#: Rows one trail search returns; without a V-nummer they may be about as many persons.
TRAIL_SEARCH_LIMIT: Final = 500
#: The longest surname a search accepts.
MAX_SURNAME: Final = 200
#: The longest ``sinds``/``tot`` text, and the range a trail search may name: the trail has no
#: records before or after it, and bounds outside it overflow date arithmetic (year 1 at +01:00).
MAX_MOMENT: Final = 40
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RootRequest:
    """One root field of one request: its field name, argument values, and whether refused."""

    field_name: str
    arguments: Mapping[str, Any]
    refused: bool


@dataclass(slots=True)
class Tally:
    """What a request names and may return, and what it is charged."""

    #: Persons to look up (allowed roots), in order, once each.
    named: dict[str, None] = field(default_factory=dict)
    #: Persons counted against the cap: every naming (aliases again) plus what may be returned.
    persons: int = 0
    #: Identifiers the request named (recorded with a refusal, never as data subjects).
    identifiers: int = 0
    #: Quota units besides :attr:`named` (searches, trail searches, statistics).
    other_units: int = 0

    @property
    def units(self) -> int:
        """The quota units to charge."""
        return len(self.named) + self.other_units


def check_vnummer(value: Any, argument: str = "vnummer") -> str:
    """``value`` if it is a V-nummer, else ``BAD_USER_INPUT`` (never a look-up)."""
    if not is_vnummer(value):
        raise GatewayError(
            Code.BAD_USER_INPUT, "A V-nummer is exactly 10 ASCII digits.", argument=argument
        )
    return str(value)


def check_identifier(value: Any, kind: str, argument: str) -> str:
    """``value`` if it is a well-formed ``kind``, else ``BAD_USER_INPUT`` naming the argument."""
    if not is_identifier(value, kind):
        raise GatewayError(
            Code.BAD_USER_INPUT, f"{argument} is not a well-formed {kind}.", argument=argument
        )
    return str(value)


def search_limit(purpose: Purpose) -> int:
    """Persons one search may return for ``purpose`` (never more than its cap)."""
    return max(0, min(SEARCH_LIMIT, purpose.max_subjects))


def too_many(purpose: Purpose) -> GatewayError:
    return GatewayError(
        Code.TOO_MANY_SUBJECTS,
        f"At most {purpose.max_subjects} persons per request for {purpose.id}.",
        maximum=purpose.max_subjects,
    )


def tally(roots: Iterable[RootRequest], purpose: Purpose, into: Tally | None = None) -> Tally:
    """Validate and count every root into ``into`` (or a new tally) and return it; raise
    ``BAD_USER_INPUT`` or ``TOO_MANY_SUBJECTS``.

    ``into`` keeps what was counted up to a refusal (the identifiers named), so the caller can
    record the refusal with that count.
    """
    result = Tally() if into is None else into
    roots = list(roots)
    result.identifiers = sum(_identifiers(root) for root in roots)
    for root in roots:
        _count(root, purpose, result)
        if result.persons > purpose.max_subjects:
            raise too_many(purpose)
    return result


def _identifiers(root: RootRequest) -> int:
    """How many identifiers a root names, valid or not (counted before anything is checked)."""
    rule = ROOT_COUNTING.get(root.field_name)
    if rule is None or rule.argument is None:
        return 0
    value = root.arguments.get(rule.argument)
    if rule.counting is Counting.NAMED_LIST:
        return len(value) if isinstance(value, list) else 0
    return 0 if value is None else 1


def _count(root: RootRequest, purpose: Purpose, result: Tally) -> None:
    rule = ROOT_COUNTING.get(root.field_name)
    if rule is None:
        if root.field_name in NOT_COUNTED:
            return
        # Fail closed: a root field nobody said how to count is refused, never waved through.
        raise GatewayError(Code.BAD_USER_INPUT, f"{root.field_name} cannot be counted.")
    arguments = root.arguments
    if rule.counting is Counting.NAMED:
        vnummer = check_vnummer(arguments.get(rule.argument or ""), rule.argument or "")
        result.persons += 1
        if not root.refused:
            result.named[vnummer] = None
    elif rule.counting is Counting.NAMED_LIST:
        values = arguments.get(rule.argument or "")
        if not isinstance(values, list):
            raise GatewayError(Code.BAD_USER_INPUT, f"{rule.argument} must be a list.")
        result.persons += len(values)
        if result.persons > purpose.max_subjects:  # before looking at 15,000 strings
            raise too_many(purpose)
        for value in values:
            vnummer = check_vnummer(value, rule.argument or "")
            if not root.refused:
                result.named[vnummer] = None
    elif rule.counting is Counting.SEARCH:
        _check_search(arguments)
        limit = search_limit(purpose)
        result.persons += max(limit, 1)  # a search names somebody, even for a cap of 0
        if not root.refused:
            result.other_units += limit
    elif rule.counting is Counting.TRAIL_SEARCH:
        _check_trail_search(arguments)
        if arguments.get("vnummer") is not None:
            result.persons += 1
            if not root.refused:
                result.other_units += 1
        else:
            result.persons += TRAIL_SEARCH_LIMIT
    elif rule.counting is Counting.AGGREGATE and not root.refused and purpose.aggregates_only:
        result.other_units += 1


def _check_search(arguments: Mapping[str, Any]) -> None:
    surname = arguments.get("geslachtsnaam")
    # Printable text only: no control or format characters (bidi overrides, zero-width), no
    # lone surrogates (they cannot be sent to the registry as UTF-8), no separators but space.
    if (
        not isinstance(surname, str)
        or len(surname) > MAX_SURNAME
        or not surname.strip()
        or not surname.isprintable()
    ):
        raise GatewayError(
            Code.BAD_USER_INPUT,
            f"geslachtsnaam must be 1-{MAX_SURNAME} printable characters.",
            argument="geslachtsnaam",
        )


def moment(value: Any, name: str) -> datetime | None:
    """A trail search's ``sinds``/``tot`` as an aware UTC date-time (naive text is UTC), or
    None when absent; ``BAD_USER_INPUT`` naming ``name`` when it is not an ISO 8601 date-time
    between :data:`EARLIEST` and :data:`LATEST`. The one parser: counting checks with it before
    anything is charged, and the resolver reads the same value with it."""
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > MAX_MOMENT or not value.isascii():
            raise ValueError(name)
        parsed = datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        if not EARLIEST <= parsed < LATEST:
            raise ValueError(name)
    except (ValueError, OverflowError):  # 0001-01-01T00:00+01:00 overflows going to UTC
        raise GatewayError(
            Code.BAD_USER_INPUT,
            f"{name} must be an ISO 8601 date-time between {EARLIEST.year} and {LATEST.year}.",
            argument=name,
        ) from None
    return parsed


def _check_trail_search(arguments: Mapping[str, Any]) -> None:
    if arguments.get("vnummer") is not None:
        check_vnummer(arguments["vnummer"])
    for name, kind in (("medewerker", "officer"), ("doelbinding", "policy_id")):
        if arguments.get(name) is not None:
            check_identifier(arguments[name], kind, name)
    organisation = arguments.get("organisatie")
    if organisation is not None and not (isinstance(organisation, str) and organisation.isdigit()):
        check_identifier(organisation, "policy_id", "organisatie")
    elif organisation is not None:
        check_identifier(organisation, "oin", "organisatie")
    for name in ("sinds", "tot"):
        moment(arguments.get(name), name)
