"""The counting table: every root field of the schema says how it is counted.

:data:`gateway.proportionality.counting.ROOT_COUNTING` is the one place that says how a root
field names or returns persons. A root field missing from it would pass the caps and quotas
uncounted; this test walks the schema so a new root field cannot be added without a row.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from graphql import GraphQLList, GraphQLNonNull

from gateway.errors import GatewayError
from gateway.execution.schema import graphql_schema
from gateway.planning.plan import PERSON_TYPE
from gateway.policy.model import Purpose
from gateway.proportionality.counting import (
    ROOT_COUNTING,
    SEARCH_LIMIT,
    Counting,
    RootRequest,
    tally,
)
from tests.test_authorization import POLICY


def _named(type_: object) -> str:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return str(type_.name)  # type: ignore[attr-defined]


def test_every_root_field_of_the_schema_is_in_the_counting_table() -> None:
    query = graphql_schema().query_type
    assert query is not None
    roots = set(query.fields)
    assert roots - set(ROOT_COUNTING) == set(), "root fields nobody says how to count"
    assert set(ROOT_COUNTING) - roots == set(), "rows for root fields the schema lacks"
    for name, field in query.fields.items():
        rule = ROOT_COUNTING[name]
        if rule.argument is not None:
            assert rule.argument in field.args, f"{name}: no argument {rule.argument}"
        # A root returns persons (the planner records them per data subject, reading the
        # schema) exactly when it is counted as naming or searching for them.
        naming = rule.counting in (Counting.NAMED, Counting.NAMED_LIST, Counting.SEARCH)
        assert naming == (_named(field.type) == PERSON_TYPE), name


def purpose(cap: int, aggregates_only: bool = False) -> Purpose:
    base = POLICY.purposes["TOEZICHT_VW"]
    return replace(base, max_subjects=cap, aggregates_only=aggregates_only)


def test_aliases_refused_roots_and_searches_are_counted() -> None:
    v = "0123456789"
    roots = [
        RootRequest("vreemdeling", {"vnummer": v}, refused=False),
        RootRequest("vreemdeling", {"vnummer": v}, refused=False),  # an alias: counted again
        RootRequest("vreemdelingen", {"vnummers": [v, "1234567890"]}, refused=True),
        RootRequest("zoekVreemdelingen", {"geslachtsnaam": "Jansen"}, refused=False),
        RootRequest("auditZoeken", {"vnummer": v}, refused=False),
        RootRequest("opvangstatistiek", {}, refused=False),
    ]
    counted = tally(roots, purpose(25))
    assert counted.persons == 1 + 1 + 2 + SEARCH_LIMIT + 1
    assert counted.identifiers == 1 + 1 + 2 + 1
    # Quota: each distinct person looked up once, what the search may return, the trail search.
    assert list(counted.named) == [v] and counted.units == 1 + SEARCH_LIMIT + 1
    assert tally(roots[-1:], purpose(0, aggregates_only=True)).units == 1
    with pytest.raises(GatewayError) as refused:
        tally(roots, purpose(5))
    assert refused.value.code == "TOO_MANY_SUBJECTS"
    with pytest.raises(GatewayError) as refused:
        tally([RootRequest("auditZoeken", {"medewerker": "x"}, refused=False)], purpose(25))
    assert refused.value.code == "TOO_MANY_SUBJECTS"
    with pytest.raises(GatewayError) as refused:
        tally([RootRequest("bestaatNiet", {}, refused=False)], purpose(25))
    assert refused.value.code == "BAD_USER_INPUT", "an uncounted root fails closed"
