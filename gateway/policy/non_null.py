"""A grant must never refuse a non-null field of a type it otherwise gives.

A refused field is an error at its place in the answer; when that field is non-null (``ID!``,
say ``Vreemdeling.vnummer``), GraphQL nulls its parent instead — the siblings the grant allows
never reach the caller, while the plan has recorded them as given and asked the registry for
them. The policy therefore refuses such a grant when it is loaded (fail closed, at start):
:func:`non_null_problems` compiles the grant of *every* combination the rules can produce —
each organisation × each purpose × each set of roles (roles that no rule tells apart are one
class) — with the same code that decides requests (:meth:`Policy.grant`), so wildcard forbidding
rules and the AVG art. 9/10 refusals are covered exactly as they apply.

A type is at risk when the grant gives any of its fields or any field that returns it. Non-null
*root* fields are not checked here: refusing one refuses the request as a whole before anything
is fetched (:mod:`gateway.pipeline.refusals`); the caller passes only the non-null fields of the
other object types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import combinations
from typing import Final

from gateway.policy.model import WILDCARD, Grant, Policy, owner_type

#: Role classes per organisation beyond which the combinations are not enumerated (2**16 grants
#: per purpose): such a policy is refused rather than loaded unchecked.
MAX_ROLE_CLASSES: Final = 16


def _role_sets(policy: Policy, organisation: str) -> Iterator[frozenset[str]]:
    """One role set per distinct way the rules can match a caller of ``organisation``: the
    roles are grouped by the rules that name them (a class behaves as one role)."""
    rules = [r for r in policy.rules if r.organisation in (organisation, WILDCARD)]
    classes: dict[tuple[int, ...], str] = {}
    for role in sorted({role for r in rules for role in r.roles if role != WILDCARD}):
        signature = tuple(i for i, r in enumerate(rules) if role in r.roles)
        classes.setdefault(signature, role)
    if len(classes) > MAX_ROLE_CLASSES:
        raise ValueError(
            f"organisation {organisation!r}: {len(classes)} role classes, more than the "
            f"{MAX_ROLE_CLASSES} whose combinations can be checked for refused non-null fields"
        )
    representatives = sorted(classes.values())
    for size in range(len(representatives) + 1):
        for chosen in combinations(representatives, size):
            yield frozenset(chosen)


def _problems_of(grant: Grant, policy: Policy, non_null: Collection[str]) -> Iterator[str]:
    given = grant.approved  # what the rules and safeguards give, whatever the purpose's status
    reached = {owner_type(c) for c in given} | {policy.coordinates[c] for c in given}
    for coordinate in non_null:
        type_name = owner_type(coordinate)
        if coordinate in given or type_name not in reached:
            continue
        siblings = sorted(c for c in given if owner_type(c) == type_name)
        via = siblings or sorted(c for c in given if policy.coordinates[c] == type_name)
        allowing = next(
            (
                rule.id
                for rule in policy.rules
                if rule.effect == "toestaan"
                and via[0] in rule.coordinates
                and rule.matches(grant.organisation, grant.roles, grant.purpose.id)
            ),
            grant.reasons.get(via[0], "?"),
        )
        yield (
            f"autorisaties (id {allowing!r}): {coordinate} is non-null but refused "
            f"({grant.reasons.get(coordinate, '?')}) for {grant.organisation} "
            f"{sorted(grant.roles)} / {grant.purpose.id}, while {via[0]} is given: a refused "
            f"non-null field nulls its parent, so the answer would not carry what the trail "
            f"records. Give {coordinate} as well, or refuse all of {type_name}."
        )


def non_null_problems(policy: Policy, non_null: Collection[str]) -> list[str]:
    """Every grant the rules can produce that gives a type (its fields or a field returning it)
    but refuses one of its non-null fields; ``non_null`` lists ``Type.field`` coordinates whose
    type is non-null, root fields left out. Empty when the policy is sound."""
    non_null = sorted(c for c in non_null if c in policy.coordinates)
    found: dict[str, None] = {}
    for organisation in policy.organisations:
        try:
            role_sets = list(_role_sets(policy, organisation))
        except ValueError as exc:
            found[str(exc)] = None
            continue
        for purpose in policy.purposes:
            for roles in role_sets:
                grant = policy.grant(organisation, roles, purpose)
                found.update(dict.fromkeys(_problems_of(grant, policy, non_null)))
    return list(found)
