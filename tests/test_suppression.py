"""Disclosure control of opvangstatistiek: properties over random tables, and the tricky cases.

The safety check is independent of the implementation's rule. A reader knows the published cells,
the grand total and every parent's total, and may assume each cell is at least 1 (a listed
location is not empty). Every cell belongs to the grand total and to at most one parent group,
so the sets of cells sharing a parent (cells without a parent sharing "None") partition the
table, and the grand total is determined by the partition's totals plus published cells. An
alternative table consistent with all known totals is therefore obtained by moving one unit
between two suppressed cells with the same parent; a suppressed cell is not derivable exactly when
such a move changes it. The test builds that alternative and re-checks every known total.

Two-level tables (LOCATIE within GEMEENTE, one joint pattern: ``suppress_hierarchy``) are checked
with exact linear algebra: ``determined_cells`` (Gaussian elimination to reduced row echelon form)
is itself cross-checked here against a plain rank test (a cell is determined iff adding its unit
vector does not raise the rank of the reader's equations), on the algorithm's patterns and on
random ones.
"""

from __future__ import annotations

import random
from collections import defaultdict
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.proportionality.suppression import (
    Cell,
    HierarchyPattern,
    RawCell,
    _Hierarchy,
    determined_cells,
    suppress,
    suppress_hierarchy,
)
from tests.support import rational_rank

# ---------------------------------------------------------------------------------------------
# Strategies


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[RawCell], int]:
    """A table of 1..10 cells with counts >= 1, in one of three shapes: no parents, every cell
    with a parent, or a mix. Counts lean small so that suppression actually happens."""
    threshold = draw(st.sampled_from([2, 3, 5, 10, 10, 10, 15]))
    n = draw(st.integers(min_value=1, max_value=10))
    shape = draw(st.sampled_from(["flat", "parents", "mixed"]))
    cells = []
    for i in range(n):
        count = draw(
            st.one_of(
                st.integers(min_value=1, max_value=threshold + 2),
                st.integers(min_value=1, max_value=60),
            )
        )
        parent: str | None
        if shape == "flat":
            parent = None
        elif shape == "parents":
            parent = draw(st.sampled_from(["G0", "G1", "G2", "G3"]))
        else:
            parent = draw(st.sampled_from(["G0", "G1", "G2", None]))
        cells.append(RawCell(f"k{i:02d}", count, parent))
    return cells, threshold


# ---------------------------------------------------------------------------------------------
# The independent checker


def _known_totals(values: list[int], cells: list[RawCell]) -> dict[str | None, int]:
    """Grand total (key "__total__") and each parent's total, as a reader knows them."""
    totals: dict[str | None, int] = defaultdict(int)
    for v, c in zip(values, cells, strict=True):
        totals["__total__"] += v
        if c.parent is not None:
            totals[c.parent] += v
    return dict(totals)


def _alternative(cells: list[RawCell], out: list[Cell], i: int) -> list[int] | None:
    """Another table (all cells >= 1) with the same published cells and known totals in which
    cell ``i`` has a different value; None when no single-unit move finds one."""
    truth = [c.count for c in cells]
    for j, c in enumerate(cells):
        if j == i or not out[j].suppressed or c.parent != cells[i].parent:
            continue
        for give, take in ((i, j), (j, i)):
            if truth[give] >= 2:
                alt = list(truth)
                alt[give] -= 1
                alt[take] += 1
                return alt
    return None


def _assert_safe(cells: list[RawCell], threshold: int, out: list[Cell]) -> None:
    assert [c.key for c in out] == [c.key for c in cells]
    for raw, cell in zip(cells, out, strict=True):
        assert cell.suppressed == (cell.count is None)
        if raw.count < threshold:
            assert cell.suppressed, f"small cell {raw} published"
        if not cell.suppressed:
            assert cell.count == raw.count

    truth = [c.count for c in cells]
    known = _known_totals(truth, cells)
    for i, cell in enumerate(out):
        if not cell.suppressed:
            continue
        alt = _alternative(cells, out, i)
        if alt is None:
            # Allowed only when the cell's group is wholly suppressed and could not be protected
            # at all: a single cell, or every cell at the minimum of 1.
            group = [j for j, c in enumerate(cells) if c.parent == cells[i].parent]
            assert all(out[j].suppressed for j in group), f"{cells[i]} derivable: {out}"
            assert len(group) == 1 or sum(truth[j] for j in group) == len(group), (
                f"{cells[i]} derivable though its group was protectable: {out}"
            )
            continue
        assert alt[i] != truth[i]
        assert min(alt) >= 1
        assert _known_totals(alt, cells) == known
        assert all(alt[j] == truth[j] for j, c in enumerate(out) if not c.suppressed)


def _assert_no_tiny_groups(cells: list[RawCell], threshold: int, out: list[Cell]) -> None:
    """Per known-total group: hidden cells are none, or >= 2 summing to >= threshold, unless the
    whole group is hidden (it could do no better)."""
    groups: dict[str, list[int]] = {"__total__": list(range(len(cells)))}
    for i, c in enumerate(cells):
        if c.parent is not None:
            groups.setdefault(f"parent:{c.parent}", []).append(i)
    for name, members in groups.items():
        hidden = [j for j in members if out[j].suppressed]
        if not hidden or len(hidden) == len(members):
            continue
        assert len(hidden) >= 2, f"group {name} has one hidden cell: {out}"
        assert sum(cells[j].count for j in hidden) >= threshold, f"tiny group {name}: {out}"


# ---------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=400, deadline=None)
@given(tables())
def test_random_tables_are_safe(table: tuple[list[RawCell], int]) -> None:
    cells, threshold = table
    out = suppress(cells, threshold)
    _assert_safe(cells, threshold, out)
    _assert_no_tiny_groups(cells, threshold, out)


@settings(max_examples=200, deadline=None)
@given(tables(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(
    table: tuple[list[RawCell], int], rnd: random.Random
) -> None:
    cells, threshold = table
    shuffled = list(cells)
    rnd.shuffle(shuffled)
    first = {c.key: c for c in suppress(cells, threshold)}
    second = {c.key: c for c in suppress(shuffled, threshold)}
    assert first == second


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(10, 500), st.sampled_from(["A", "B", None])),
        min_size=0,
        max_size=12,
    )
)
def test_table_without_small_cells_is_published_whole(
    rows: list[tuple[int, str | None]],
) -> None:
    cells = [RawCell(f"k{i}", count, parent) for i, (count, parent) in enumerate(rows)]
    out = suppress(cells, 10)
    assert out == [Cell(c.key, c.count, False) for c in cells]


# ---------------------------------------------------------------------------------------------
# Examples


def _hidden(out: list[Cell]) -> set[str]:
    return {c.key for c in out if c.suppressed}


def test_one_small_cell_gets_the_smallest_complement() -> None:
    cells = [RawCell("a", 50), RawCell("b", 3), RawCell("c", 20), RawCell("d", 12)]
    out = suppress(cells, 10)
    assert _hidden(out) == {"b", "d"}
    assert out[0] == Cell("a", 50, False)
    assert out[1] == Cell("b", None, True)


def test_tiny_pair_gets_a_third_cell() -> None:
    # 1 and 2 hidden together sum to 3 < 10: a reader would know both are tiny.
    cells = [RawCell("a", 1), RawCell("b", 2), RawCell("c", 30), RawCell("d", 40)]
    assert _hidden(suppress(cells, 10)) == {"a", "b", "c"}


def test_ties_are_broken_by_key() -> None:
    cells = [RawCell("z", 12), RawCell("small", 4), RawCell("m", 12), RawCell("a", 30)]
    assert _hidden(suppress(cells, 10)) == {"small", "m"}


def test_parent_with_a_single_location() -> None:
    # Gemeente A has one location: its value is A's published total anyway. The grand total
    # still gets a complement, taken from a group that can hide it (C), which then needs a
    # second cell of its own.
    cells = [
        RawCell("loc1", 4, "A"),
        RawCell("loc2", 15, "B"),
        RawCell("loc3", 20, "B"),
        RawCell("loc4", 30, "C"),
        RawCell("loc5", 12, "C"),
    ]
    out = suppress(cells, 10)
    assert _hidden(out) == {"loc1", "loc4", "loc5"}
    _assert_safe(cells, 10, out)


def test_complement_cascades_across_groups() -> None:
    # A small cell in A forces A's smallest other cell; the grand total is then fine.
    cells = [
        RawCell("a1", 5, "A"),
        RawCell("a2", 11, "A"),
        RawCell("a3", 40, "A"),
        RawCell("b1", 10, "B"),
        RawCell("b2", 13, "B"),
    ]
    out = suppress(cells, 10)
    assert _hidden(out) == {"a1", "a2"}
    _assert_safe(cells, 10, out)


def test_cells_without_parent_are_protected_among_themselves() -> None:
    # The residual group's total is grand total minus A's total: known, so x needs y.
    cells = [RawCell("x", 3), RawCell("y", 40), RawCell("l1", 20, "A"), RawCell("l2", 25, "A")]
    out = suppress(cells, 10)
    assert _hidden(out) == {"x", "y"}
    _assert_safe(cells, 10, out)


def test_all_small() -> None:
    cells = [RawCell("a", 1), RawCell("b", 2), RawCell("c", 3)]
    assert suppress(cells, 10) == [Cell(c.key, None, True) for c in cells]


def test_single_cells_and_empty_table() -> None:
    assert suppress([], 10) == []
    assert suppress([RawCell("a", 5)], 10) == [Cell("a", None, True)]
    assert suppress([RawCell("a", 50)], 10) == [Cell("a", 50, False)]


def test_all_ones_are_not_pinned_by_a_large_threshold() -> None:
    # Three cells of 1 with threshold 3 sum to 3 >= threshold but every one would be exactly 1.
    cells = [RawCell("a", 1), RawCell("b", 1), RawCell("c", 1), RawCell("d", 9)]
    out = suppress(cells, 3)
    assert _hidden(out) == {"a", "b", "c", "d"}


def test_zero_counts_are_suppressed() -> None:
    out = suppress([RawCell("a", 0), RawCell("b", 30), RawCell("c", 40)], 10)
    assert _hidden(out) == {"a", "b"}


def test_input_is_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        suppress([RawCell("a", 5)], 0)
    with pytest.raises(ValueError, match="counts"):
        suppress([RawCell("a", -1)], 10)
    with pytest.raises(ValueError, match="duplicate"):
        suppress([RawCell("a", 5), RawCell("a", 50)], 10)


# ---------------------------------------------------------------------------------------------
# Two-level tables: locations (leaves) within municipalities (parents), one joint pattern


@st.composite
def hierarchies(draw: st.DrawFn) -> tuple[list[RawCell], int]:
    """1..6 parents with 1..5 leaves each (counts >= 1, leaning small); leaf keys are shuffled so
    that key order says nothing about the parent."""
    threshold = draw(st.sampled_from([2, 3, 5, 10, 10, 10, 15]))
    sizes = draw(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6))
    n = sum(sizes)
    keys = draw(st.permutations([f"L{i:02d}" for i in range(n)]))
    cells: list[RawCell] = []
    for p, size in enumerate(sizes):
        for _ in range(size):
            count = draw(
                st.one_of(
                    st.integers(min_value=1, max_value=threshold + 2),
                    st.integers(min_value=1, max_value=60),
                )
            )
            cells.append(RawCell(keys[len(cells)], count, f"G{p}"))
    return cells, threshold


def _parents(cells: list[RawCell]) -> dict[str, list[RawCell]]:
    children: dict[str, list[RawCell]] = defaultdict(list)
    for c in cells:
        children[str(c.parent)].append(c)
    return dict(sorted(children.items()))


def _derivable_by_rank(
    cells: list[RawCell], hidden_leaves: set[str], hidden_parents: set[str]
) -> list[tuple[str, str]]:
    """Independent reference: the reader knows T, the published cells and the equations
    T = sum(leaves), T = sum(parents), G_p = sum(leaves of p); an unknown is determined iff its
    unit vector lies in the row space (adding it leaves the rank unchanged)."""
    unknowns = [("leaf", k) for k in sorted(hidden_leaves)]
    unknowns += [("parent", k) for k in sorted(hidden_parents)]
    index = {u: i for i, u in enumerate(unknowns)}

    def row(plus: list[tuple[str, str]], minus: list[tuple[str, str]]) -> list[Fraction]:
        r = [Fraction(0)] * len(unknowns)
        for u in plus:
            if u in index:
                r[index[u]] += 1
        for u in minus:
            if u in index:
                r[index[u]] -= 1
        return r

    children = _parents(cells)
    rows = [
        row([("leaf", c.key) for c in cells], []),
        row([("parent", p) for p in children], []),
        *(row([("leaf", c.key) for c in kids], [("parent", p)]) for p, kids in children.items()),
    ]
    base = rational_rank(rows)
    found = []
    for u, i in index.items():
        unit = [Fraction(0)] * len(unknowns)
        unit[i] = Fraction(1)
        if rational_rank([*rows, unit]) == base:
            found.append(u)
    return sorted(found)


def _rule(hidden: list[int], threshold: int) -> bool:
    return not hidden or (
        len(hidden) >= 2 and sum(hidden) >= threshold and sum(hidden) > len(hidden)
    )


def _assert_hierarchy_safe(cells: list[RawCell], threshold: int, out: HierarchyPattern) -> None:
    children = _parents(cells)
    totals = {p: sum(c.count for c in kids) for p, kids in children.items()}

    # Shape and exactness: leaves in input order, parents sorted; published values are the truth.
    assert [c.key for c in out.leaves] == [c.key for c in cells]
    assert [c.key for c in out.parents] == list(children)
    for raw, cell in zip(cells, out.leaves, strict=True):
        assert cell.suppressed == (cell.count is None)
        assert cell.suppressed or cell.count == raw.count, (raw, cell)
        assert not raw.count < threshold or cell.suppressed, f"small leaf {raw} published: {out}"
    for cell in out.parents:
        assert cell.suppressed == (cell.count is None)
        assert cell.suppressed or cell.count == totals[cell.key], cell
        assert not totals[cell.key] < threshold or cell.suppressed, f"small parent {cell}: {out}"

    # Nothing hidden is determined, but what the structure itself gives away: with one parent its
    # value is the grand total, and a single leaf is the grand total too.
    hidden_leaves, hidden_parents = set(out.hidden_leaves), set(out.hidden_parents)
    leaked = determined_cells(cells, hidden_leaves, hidden_parents)
    structural = [("parent", p) for p in children] if len(children) == 1 else []
    if len(cells) == 1:
        structural.append(("leaf", cells[0].key))
    assert set(leaked) <= set(structural), f"determined: {leaked} in {out}"
    every = determined_cells(cells, {c.key for c in cells}, set(children))
    assert sorted(every) == sorted(structural)
    assert leaked == _derivable_by_rank(cells, hidden_leaves, hidden_parents)

    # The group rule per equation.
    count = {c.key: c.count for c in cells}
    all_hidden = len(hidden_leaves) == len(cells)
    assert all_hidden or _rule([count[k] for k in hidden_leaves], threshold), out
    all_hidden = len(hidden_parents) == len(children)
    assert all_hidden or _rule([totals[p] for p in hidden_parents], threshold), out
    for p, kids in children.items():
        hidden = [c.count for c in kids if c.key in hidden_leaves]
        if p in hidden_parents:
            assert hidden, f"{p} hidden, but it is the sum of its published leaves: {out}"
            assert len(hidden) == len(kids) or _rule(hidden, threshold), (p, out)
        else:
            assert _rule(hidden, threshold), (p, out)


@settings(max_examples=400, deadline=None)
@given(hierarchies())
def test_random_hierarchies_are_safe(table: tuple[list[RawCell], int]) -> None:
    cells, threshold = table
    _assert_hierarchy_safe(cells, threshold, suppress_hierarchy(cells, threshold))


@settings(max_examples=300, deadline=None)
@given(hierarchies(), st.randoms(use_true_random=False))
def test_determined_cells_agrees_with_the_rank_test(
    table: tuple[list[RawCell], int], rnd: random.Random
) -> None:
    """On arbitrary patterns (most of them leaky), not only on safe ones."""
    cells, _ = table
    hidden_leaves = {c.key for c in cells if rnd.random() < 0.4}
    hidden_parents = {str(c.parent) for c in cells if rnd.random() < 0.3}
    assert determined_cells(cells, hidden_leaves, hidden_parents) == _derivable_by_rank(
        cells, hidden_leaves, hidden_parents
    )


@settings(max_examples=200, deadline=None)
@given(hierarchies())
def test_exact_check_alone_repairs_any_pattern(table: tuple[list[RawCell], int]) -> None:
    """The elimination step is a real safety net: with the fixpoint rules switched off, primary
    suppression plus "hide one more cell while one is determined" still leaves nothing
    determined but what the structure gives away."""
    cells, threshold = table
    solver = _Hierarchy(cells, threshold)
    for c in range(solver.n + solver.m):
        if solver.count[c] < threshold:
            solver.hide(c)
    solver.repair(rules=False)
    structural = set(solver.determined([True] * (solver.n + solver.m)))
    assert set(solver.determined(solver.hidden)) <= structural
    assert all(solver.hidden[c] for c in range(solver.n + solver.m) if solver.count[c] < threshold)


@settings(max_examples=200, deadline=None)
@given(hierarchies(), st.randoms(use_true_random=False))
def test_hierarchy_does_not_depend_on_input_order(
    table: tuple[list[RawCell], int], rnd: random.Random
) -> None:
    cells, threshold = table
    shuffled = list(cells)
    rnd.shuffle(shuffled)
    first, second = suppress_hierarchy(cells, threshold), suppress_hierarchy(shuffled, threshold)
    assert first.parents == second.parents
    assert {c.key: c for c in first.leaves} == {c.key: c for c in second.leaves}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(10, 500), st.sampled_from(["A", "B", "C"])), min_size=0, max_size=12
    )
)
def test_hierarchy_without_small_cells_is_published_whole(rows: list[tuple[int, str]]) -> None:
    cells = [RawCell(f"k{i:02d}", count, parent) for i, (count, parent) in enumerate(rows)]
    out = suppress_hierarchy(cells, 10)
    assert out.leaves == [Cell(c.key, c.count, False) for c in cells]
    assert out.parents == [
        Cell(p, sum(c.count for c in kids), False) for p, kids in _parents(cells).items()
    ]


def test_single_location_complement_is_hidden_in_both_tables() -> None:
    # The 800-person leak: GEMEENTE on its own hides Kempendaal (6) with Beekzande (13) as its
    # complement, LOCATIE on its own publishes Beekzande's only location (13) — so Beekzande's
    # total, hence Kempendaal's (from the grand total), hence its location are known.
    cells = [
        RawCell("L01", 6, "Kempendaal"),
        RawCell("L02", 13, "Beekzande"),
        RawCell("L03", 40, "Zuidmeer"),
        RawCell("L04", 50, "Zuidmeer"),
        RawCell("L05", 25, "Oosthaven"),
    ]
    separate_gemeente = suppress(
        [
            RawCell("Beekzande", 13),
            RawCell("Kempendaal", 6),
            RawCell("Oosthaven", 25),
            RawCell("Zuidmeer", 90),
        ],
        10,
    )
    separate_locatie = suppress(cells, 10)
    hidden_parents = {c.key for c in separate_gemeente if c.suppressed}
    hidden_leaves = {c.key for c in separate_locatie if c.suppressed}
    assert hidden_parents == {"Beekzande", "Kempendaal"}
    assert hidden_leaves == {"L01", "L03", "L04"}  # L02 (Beekzande's only location) published
    assert determined_cells(cells, hidden_leaves, hidden_parents) == [
        ("leaf", "L01"),
        ("parent", "Beekzande"),
        ("parent", "Kempendaal"),
    ]

    out = suppress_hierarchy(cells, 10)
    assert out.hidden_parents == {"Beekzande", "Kempendaal"}
    assert out.hidden_leaves == {"L01", "L02"}
    assert out.parents == [
        Cell("Beekzande", None, True),
        Cell("Kempendaal", None, True),
        Cell("Oosthaven", 25, False),
        Cell("Zuidmeer", 90, False),
    ]
    _assert_hierarchy_safe(cells, 10, out)


def test_hidden_parent_with_one_hidden_location_gets_a_second() -> None:
    # A (8) is small; its small location a1 (3) is hidden. With A hidden, a1 alone would be
    # pinned to A: a1 = A - 5. So A's hidden locations must protect each other: a2 (5) joins,
    # and 3 + 5 < 10 so a3 too. B is A's complement in the GEMEENTE table and needs locations.
    cells = [
        RawCell("a1", 3, "A"),
        RawCell("a2", 5, "A"),
        RawCell("b1", 20, "B"),
        RawCell("b2", 30, "B"),
        RawCell("c1", 50, "C"),
        RawCell("c2", 60, "C"),
    ]
    out = suppress_hierarchy(cells, 10)
    assert out.hidden_parents == {"A", "B"}
    assert out.hidden_leaves == {"a1", "a2", "b1", "b2"}
    _assert_hierarchy_safe(cells, 10, out)


def test_one_parent_equals_the_grand_total() -> None:
    cells = [RawCell("x", 4, "A"), RawCell("y", 12, "A"), RawCell("z", 30, "A")]
    out = suppress_hierarchy(cells, 10)
    assert out.parents == [Cell("A", 46, False)]
    assert out.hidden_leaves == {"x", "y"}
    # Only the structure determines anything, and only the parent (= the grand total).
    assert determined_cells(cells, {"x", "y", "z"}, {"A"}) == [("parent", "A")]


def test_hierarchy_input_is_validated() -> None:
    assert suppress_hierarchy([], 10) == HierarchyPattern([], [])
    with pytest.raises(ValueError, match="threshold"):
        suppress_hierarchy([RawCell("a", 5, "A")], 0)
    with pytest.raises(ValueError, match="counts"):
        suppress_hierarchy([RawCell("a", -1, "A")], 10)
    with pytest.raises(ValueError, match="duplicate"):
        suppress_hierarchy([RawCell("a", 5, "A"), RawCell("a", 50, "B")], 10)
    with pytest.raises(ValueError, match="parent"):
        suppress_hierarchy([RawCell("a", 5, "A"), RawCell("b", 50)], 10)
    with pytest.raises(ValueError, match="not in the table"):
        determined_cells([RawCell("a", 5, "A")], {"b"}, set())
