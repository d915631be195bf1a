"""Statistical disclosure control for ``opvangstatistiek`` (aggregates for the ANALYSE purpose).

The analysis purpose gets counts, never persons; a count of a handful of people at one reception
location can identify them, so cells under the threshold (policy: 10) are suppressed. Suppressing
the small cells alone is not enough: with the table's totals known, a lone suppressed cell is
simply ``total - published``. Complementary suppression hides further cells until no suppressed
cell can be derived exactly.

Model of what a reader knows
----------------------------
* every published cell of this table;
* the grand total of the table (another grouping of the same population publishes it);
* when cells have parents (a reception location's municipality), each parent's total (the
  municipality table is published too).

Cells sharing a parent form a *parent group*. When any cell has a parent, the cells without one
form a *residual group*: its total is derivable too (grand total minus all parent totals), so it
must be protected like a parent group. The *grand-total group* holds every cell.

Rule per group: its suppressed cells are either none, or at least two whose sum is at least the
threshold and exceeds their number. "At least two" stops exact derivation from the group total;
"sum >= threshold" stops a tiny pair (1 + 2) being narrowed to near-certainty; "sum > number of
cells" stops the corner where every suppressed cell must be 1 (a reader may assume a listed
location is not empty). A group breaking the rule gets its smallest published cell suppressed
(ties by key) until it holds; because a cell belongs to a parent group *and* the grand-total
group, suppressing it for one group can break the other, so groups are re-checked until nothing
changes (a fixpoint; each step hides one more cell, so at most ``len(cells)`` steps).

A group that cannot satisfy the rule even with all its cells suppressed (a municipality with a
single location, or a group whose whole total is tiny) ends fully suppressed. Its cells are then
no more exposed here than by the parent table itself, which suppresses that small total in turn.
For the grand-total group, complements are taken preferably from cells that are not alone in
their parent group: such a cell's value is its parent's published total, so hiding it protects
nothing.

When every cell has a parent the grand total is the sum of the parent totals and adds no
information; its rule is still applied, because it keeps the table safe also when a small parent
total is itself suppressed in the municipality table (then the reader does not know it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Cell", "RawCell", "suppress"]


@dataclass(frozen=True, slots=True)
class RawCell:
    """One cell before disclosure control. ``parent`` is the key of the enclosing group whose
    total is published elsewhere (e.g. the municipality of a reception location), or None."""

    key: str
    count: int
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Cell:
    """One published cell: ``count`` is None exactly when ``suppressed`` is True."""

    key: str
    count: int | None
    suppressed: bool


def _group_ok(hidden_count: int, hidden_sum: int, threshold: int) -> bool:
    """The per-group rule (see the module docstring)."""
    return hidden_count == 0 or (
        hidden_count >= 2 and hidden_sum >= threshold and hidden_sum > hidden_count
    )


def suppress(cells: Sequence[RawCell], threshold: int) -> list[Cell]:
    """Apply primary and complementary suppression; return the cells in input order.

    Contract:
      * every cell with ``count < threshold`` is suppressed (primary);
      * for the grand-total group, each parent group and (when parents exist) the group of cells
        without a parent: the suppressed cells are none, or >= 2 with sum >= ``threshold`` and
        sum > their number — unless the whole group is suppressed and still cannot meet that;
      * published counts equal the input counts; a table without small cells is published whole;
      * deterministic: depends only on the input (ties broken by key, not by input order);
      * pure: no I/O, input not modified.
    Raises :class:`ValueError` for ``threshold < 1``, a negative count or a duplicate key.
    """
    if threshold < 1:
        raise ValueError("threshold must be >= 1")
    seen: set[str] = set()
    for c in cells:
        if c.count < 0:
            raise ValueError("cell counts must be >= 0")
        if c.key in seen:
            # Ties are broken by key; two cells with one key would make the result order-dependent
            # and the table ambiguous to its reader.
            raise ValueError("duplicate cell key")
        seen.add(c.key)

    n = len(cells)
    groups: list[list[int]] = []
    by_parent: dict[str | None, list[int]] = {}
    if any(c.parent is not None for c in cells):
        for i, c in enumerate(cells):
            by_parent.setdefault(c.parent, []).append(i)
        # Parent groups (and the residual group, parent None) first: they carry the primary
        # suppressions; the grand-total group last, so it only adds what they did not.
        for parent in sorted(by_parent, key=lambda p: (p is None, p or "")):
            groups.append(by_parent[parent])
    groups.append(list(range(n)))

    # A cell alone in its parent group is pinned: its value is a published total.
    pinned = [bool(by_parent) and len(by_parent[c.parent]) == 1 for c in cells]
    member_of: list[list[int]] = [[] for _ in range(n)]
    for g, members in enumerate(groups):
        for i in members:
            member_of[i].append(g)

    # Candidates per group in the order complements are taken; a pointer skips hidden cells.
    # Hidden only ever grows, so each pointer only moves forward: O(n log n) overall.
    order = [
        sorted(members, key=lambda i: (pinned[i], cells[i].count, cells[i].key))
        for members in groups
    ]
    cursor = [0] * len(groups)
    hidden = [False] * n
    hidden_count = [0] * len(groups)
    hidden_sum = [0] * len(groups)

    def hide(i: int) -> None:
        hidden[i] = True
        for g in member_of[i]:
            hidden_count[g] += 1
            hidden_sum[g] += cells[i].count

    for i, c in enumerate(cells):
        if c.count < threshold:
            hide(i)

    queue = deque(range(len(groups)))
    queued = [True] * len(groups)
    while queue:
        g = queue.popleft()
        queued[g] = False
        while not _group_ok(hidden_count[g], hidden_sum[g], threshold):
            while cursor[g] < len(order[g]) and hidden[order[g][cursor[g]]]:
                cursor[g] += 1
            if cursor[g] == len(order[g]):
                break  # everything already hidden: the group cannot do better
            i = order[g][cursor[g]]
            hide(i)
            # The cell's other group may now break the rule: check it (again).
            for other in member_of[i]:
                if other != g and not queued[other]:
                    queue.append(other)
                    queued[other] = True

    return [
        Cell(c.key, None, True) if hidden[i] else Cell(c.key, c.count, False)
        for i, c in enumerate(cells)
    ]
