"""Policy findings that do not stop the load but that a reviewer must see (``policy check``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.policy.model import (
    AGGREGATES_ONLY,
    ART9_NO_BASIS,
    ART10_NO_BASIS,
    Purpose,
    Rule,
    legal_refusal,
    owner_type,
)


def lint(
    warn: Callable[[str, str], None],
    purposes: Mapping[str, Purpose],
    rules: list[Rule],
    coordinates: Mapping[str, str],
) -> None:
    """Report through ``warn(where, message)`` what does not stop the load but must be seen."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if rule.effect != "toestaan":
            continue
        purpose = purposes[rule.purpose]
        where = f"autorisaties (id {rule.id!r})"
        granted.setdefault((rule.organisation, rule.purpose), set()).update(rule.coordinates)
        if purpose.status == "verboden" and rule.coordinates:
            warn(where, f"purpose {purpose.id!r} is verboden: its fields are never given")
        for coordinate in rule.coordinates:
            refusal = legal_refusal(coordinate, coordinates[coordinate], purpose)
            if refusal == ART9_NO_BASIS:
                warn(
                    where,
                    f"allows {coordinate} (special category, AVG art. 9) but purpose "
                    f"{purpose.id!r} has no 'bijzondere_persoonsgegevens' basis: "
                    f"refused ({refusal})",
                )
            elif refusal == ART10_NO_BASIS:
                warn(
                    where,
                    f"allows {coordinate} (criminal data, AVG art. 10) but purpose "
                    f"{purpose.id!r} has no 'strafrechtelijke_gegevens' basis: refused ({refusal})",
                )
            elif refusal == AGGREGATES_ONLY:
                warn(
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
            warn(where, "no root field (Query.*) is allowed: nothing is reachable")
        for coordinate in sorted(allowed):
            named = coordinates[coordinate]
            if named in object_types and not any(owner_type(c) == named for c in allowed):
                warn(where, f"allows {coordinate} but no field of {named}: it can only be empty")
    for purpose in purposes.values():
        if purpose.active and not any(key[1] == purpose.id for key in granted):
            warn(f"doelbindingen (id {purpose.id!r})", "active purpose without any rule")
