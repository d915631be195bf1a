"""Disclosure control of opvangstatistiek: properties over random tables, and the tricky cases.

The safety check is independent of the implementation's rule. A reader knows the published cells,
the grand total and every parent's total, and may assume each cell is at least 1 (a listed
location is not empty). Every cell belongs to the grand total and to at most one parent group,
so the sets of cells sharing a parent (cells without a parent sharing "None") partition the
table, and the grand total is determined by the partition's totals plus published cells. An
alternative table consistent with all known totals is therefore obtained by moving one unit
between two suppressed cells with the same parent; a suppressed cell is not derivable exactly when
such a move changes it. The test builds that alternative and re-checks every known total.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.suppression import Cell, RawCell, suppress

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
