"""Statistical disclosure control for ``opvangstatistiek`` (aggregates for the ANALYSE purpose).

One algorithm read top to bottom (flat tables, then two-level tables sharing the same rule),
with the model of what a reader knows stated first: kept as one module on purpose.

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

:func:`suppress` is for one-level tables (NATIONALITEIT, VERBLIJFSSTATUS): it assumes the parent
totals are published whole, which is not so when the parent table is suppressed on its own.

Two-level tables: locations within municipalities (:func:`suppress_hierarchy`)
-------------------------------------------------------------------------------
The LOCATIE and GEMEENTE tables describe one hierarchy and a reader combines them. Suppressing
each on its own leaks: GEMEENTE hides a small municipality and takes a single-location
municipality as its complement, LOCATIE publishes that location (= the complement's value), and
the small municipality follows from the grand total. So both tables are published from ONE
pattern over the leaves (locations), their parents (municipalities, each the sum of its
locations) and the grand total. The reader is assumed to know every published cell of both
tables and the grand total ``T`` (the NATIONALITEIT and VERBLIJFSSTATUS tables are independent
dimensions that share only ``T``), i.e. the linear system::

    T = sum(leaves)        T = sum(parents)        G_p = sum(leaves of p)   for every parent p

Rules (a fixpoint, as above; each step hides the smallest published member, ties by key):

* primary: every leaf and every parent with ``count < threshold`` is hidden;
* ``T = sum(leaves)`` and ``T = sum(parents)``: the hidden members follow the group rule;
* ``G_p = sum(leaves of p)``: the hidden *leaves* of ``p`` follow the group rule, except that
  all of them may be hidden when ``G_p`` is hidden too; a hidden ``G_p`` needs at least one hidden
  leaf (else ``G_p`` = the sum of its published leaves). A published ``G_p`` whose leaves cannot
  meet the rule even all hidden (a single location) gets hidden itself. The equation's hidden
  members (``G_p`` and leaves) are then none or at least two, and when ``G_p`` is hidden with
  only some leaves, those leaves are protected among themselves, not merely pinned to ``G_p``.

With these rules no hidden cell is a linear function of the published ones: a hidden leaf with a
hidden sibling can trade a unit with it; a lone hidden leaf has a hidden parent, which has a
hidden peer in ``T = sum(parents)``, which has a hidden leaf; moving a unit along that path keeps
every equation. The only exception is structural (one parent: ``G = T``; one leaf overall).

That argument is then checked, not trusted: :func:`determined_cells` does exact Gaussian
elimination over the rationals (tables are tens of cells) on the hidden cells, and while a hidden
cell is determined that would not be so with *every* cell hidden (the structural exceptions), one
more cell is hidden — the smallest published member of an equation holding the first determined
cell — and the rules are re-applied. Each round hides a cell, so it ends. Everything is ordered by
key, so the pattern depends only on the input: the LOCATIE and the GEMEENTE answer always come
from the same pattern.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "Cell",
    "HierarchyPattern",
    "Level",
    "RawCell",
    "determined_cells",
    "suppress",
    "suppress_hierarchy",
]


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


# ---- two-level tables ---------------------------------------------------------------------------

Level = Literal["leaf", "parent"]


@dataclass(frozen=True, slots=True)
class HierarchyPattern:
    """One joint pattern over a two-level table: ``leaves`` in input order, ``parents`` (each the
    sum of its leaves) sorted by key."""

    leaves: list[Cell]
    parents: list[Cell]

    @property
    def hidden_leaves(self) -> frozenset[str]:
        return frozenset(c.key for c in self.leaves if c.suppressed)

    @property
    def hidden_parents(self) -> frozenset[str]:
        return frozenset(c.key for c in self.parents if c.suppressed)


class _Hierarchy:
    """Cell ids: leaves ``0..n-1`` sorted by key, then parents ``n..n+m-1`` sorted by key.
    Equation ids: ``p`` (``G_p = sum(leaves of p)``) for ``0 <= p < m``, then ``m``
    (``T = sum(parents)``) and ``m + 1`` (``T = sum(leaves)``)."""

    def __init__(self, leaves: Sequence[RawCell], threshold: int) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        seen: set[str] = set()
        for c in leaves:
            if c.count < 0:
                raise ValueError("cell counts must be >= 0")
            if c.key in seen:
                raise ValueError("duplicate cell key")
            if c.parent is None:
                raise ValueError(f"leaf {c.key!r} has no parent: a hierarchy needs one per leaf")
            seen.add(c.key)
        self.threshold = threshold
        ordered = sorted(leaves, key=lambda c: c.key)
        parent_keys = sorted({str(c.parent) for c in ordered})
        parent_index = {k: p for p, k in enumerate(parent_keys)}
        n, m = len(ordered), len(parent_keys)
        self.n, self.m = n, m
        self.leaf_keys = [c.key for c in ordered]
        self.parent_keys = parent_keys
        self.parent_of = [parent_index[str(c.parent)] for c in ordered]
        sums = [0] * m
        for c, p in zip(ordered, self.parent_of, strict=True):
            sums[p] += c.count
        self.count = [c.count for c in ordered] + sums
        self.children: list[list[int]] = [[] for _ in range(m)]
        for i, p in enumerate(self.parent_of):
            self.children[p].append(i)
        self.root_parents, self.root_leaves = m, m + 1
        # Complement candidates per equation, in the order they are taken (ids break ties, and
        # ids follow the keys). For T = sum(leaves), leaves alone under their parent come last:
        # hiding one forces its parent too.
        alone = [len(self.children[p]) == 1 for p in self.parent_of]
        self.order: list[list[int]] = [
            sorted(kids, key=lambda i: (self.count[i], i)) for kids in self.children
        ]
        self.order.append(sorted(range(n, n + m), key=lambda c: (self.count[c], c)))
        self.order.append(sorted(range(n), key=lambda i: (alone[i], self.count[i], i)))
        self.cursor = [0] * (m + 2)
        self.hidden = [False] * (n + m)
        # Hidden leaves per parent equation and in T = sum(leaves); hidden parents in
        # T = sum(parents).
        self.hidden_count = [0] * (m + 2)
        self.hidden_sum = [0] * (m + 2)
        # Equations waiting for a check; the lowest id goes first, so the parents' equations and
        # T = sum(parents) settle before T = sum(leaves) adds what they did not.
        self.pending: list[int] = []
        self.queued = [False] * (m + 2)

    # -- the rules ------------------------------------------------------------------------------

    def equations_of(self, c: int) -> tuple[int, int]:
        if c < self.n:
            return self.parent_of[c], self.root_leaves
        return c - self.n, self.root_parents

    def hide(self, c: int) -> None:
        if self.hidden[c]:
            return
        self.hidden[c] = True
        own, root = self.equations_of(c)
        counted = (own, root) if c < self.n else (root,)
        for e in counted:
            self.hidden_count[e] += 1
            self.hidden_sum[e] += self.count[c]
        for e in (own, root):
            self.check(e)

    def check(self, e: int) -> None:
        if not self.queued[e]:
            heapq.heappush(self.pending, e)
            self.queued[e] = True

    def next_published(self, e: int) -> int | None:
        order = self.order[e]
        while self.cursor[e] < len(order) and self.hidden[order[self.cursor[e]]]:
            self.cursor[e] += 1
        return order[self.cursor[e]] if self.cursor[e] < len(order) else None

    def violation(self, e: int) -> int | None:
        """The cell to hide next for equation ``e``, or None when it is fine (or can do no
        better)."""
        count, total = self.hidden_count[e], self.hidden_sum[e]
        fine = _group_ok(count, total, self.threshold)
        if e >= self.m:  # a grand-total equation
            return None if fine else self.next_published(e)
        parent = self.n + e
        if self.hidden[parent]:
            if count == 0 or (count < len(self.children[e]) and not fine):
                return self.next_published(e)
            return None
        if fine:
            return None
        leaf = self.next_published(e)
        return parent if leaf is None else leaf

    def apply_rules(self) -> None:
        for e in range(self.m + 2):
            self.check(e)
        while self.pending:
            e = heapq.heappop(self.pending)
            self.queued[e] = False
            while (c := self.violation(e)) is not None:
                self.hide(c)

    # -- the exact check ------------------------------------------------------------------------

    def determined(self, hidden: Sequence[bool]) -> list[int]:
        return _determined(self.parent_of, self.m, hidden)

    def repair(self, *, rules: bool = True) -> None:
        """Hide cells until no hidden cell is determined beyond the structural ones."""
        structural = set(self.determined([True] * (self.n + self.m)))
        for _ in range(self.n + self.m + 1):  # each round hides a cell
            if rules:
                self.apply_rules()
            leaked = [c for c in self.determined(self.hidden) if c not in structural]
            if not leaked:
                return
            own, root = self.equations_of(leaked[0])
            members = [*self.children[own], self.n + own, *self.order[root]]
            candidates = [c for c in members if not self.hidden[c]] or [
                c for c in range(self.n + self.m) if not self.hidden[c]
            ]
            # Not empty: with every cell hidden only structural cells are determined.
            self.hide(min(candidates, key=lambda c: (self.count[c], c)))
        raise AssertionError("unreachable: every round hides one more cell")


def _determined(parent_of: Sequence[int], m: int, hidden: Sequence[bool]) -> list[int]:
    """Hidden cell ids (leaves ``0..n-1``, parents ``n..n+m-1``) whose value follows exactly from
    the published cells, the grand total and the hierarchy's equations.

    Exact Gaussian elimination over the rationals to reduced row echelon form, on the columns of
    the hidden cells only (published cells are constants). A hidden cell is determined iff its
    unit vector lies in the row space, i.e. iff it is a pivot column whose reduced row has no
    other non-zero entry.
    """
    n = len(parent_of)
    variables = [c for c in range(n + m) if hidden[c]]
    column = {c: j for j, c in enumerate(variables)}
    rows: list[dict[int, Fraction]] = [
        {column[i]: Fraction(1) for i in range(n) if hidden[i]},  # T = sum(leaves)
        {column[c]: Fraction(1) for c in range(n, n + m) if hidden[c]},  # T = sum(parents)
    ]
    for p in range(m):  # sum(leaves of p) - G_p = 0
        row = {column[i]: Fraction(1) for i in range(n) if parent_of[i] == p and hidden[i]}
        if hidden[n + p]:
            row[column[n + p]] = Fraction(-1)
        rows.append(row)
    rows = [r for r in rows if r]
    pivots: list[int] = []
    for col in range(len(variables)):
        at = next((r for r in range(len(pivots), len(rows)) if col in rows[r]), None)
        if at is None:
            continue
        rank = len(pivots)
        rows[rank], rows[at] = rows[at], rows[rank]
        scale = rows[rank][col]
        pivot_row = {k: v / scale for k, v in rows[rank].items()}
        rows[rank] = pivot_row
        for r, row in enumerate(rows):
            factor = row.get(col)
            if r == rank or factor is None:
                continue
            for k, v in pivot_row.items():
                value = row.get(k, Fraction(0)) - factor * v
                if value:
                    row[k] = value
                else:
                    row.pop(k, None)
        pivots.append(col)
    return sorted(variables[col] for r, col in enumerate(pivots) if len(rows[r]) == 1)


def determined_cells(
    leaves: Sequence[RawCell],
    hidden_leaves: AbstractSet[str],
    hidden_parents: AbstractSet[str],
) -> list[tuple[Level, str]]:
    """The hidden cells of a two-level table that a reader can compute exactly, as
    ``("leaf" | "parent", key)`` sorted, from every published leaf and parent, the grand total and
    the equations ``T = sum(leaves) = sum(parents)``, ``G_p = sum(leaves of p)``.

    Only the structure matters (which cells are hidden, which leaf lies under which parent), not
    the counts. Raises :class:`ValueError` for a leaf without parent, a duplicate key or a hidden
    key that is not in the table.
    """
    table = _Hierarchy(leaves, 1)
    unknown = set(hidden_leaves) - set(table.leaf_keys)
    unknown |= set(hidden_parents) - set(table.parent_keys)
    if unknown:
        raise ValueError(f"hidden keys not in the table: {sorted(unknown)}")
    hidden = [k in hidden_leaves for k in table.leaf_keys]
    hidden += [k in hidden_parents for k in table.parent_keys]
    return [
        ("leaf", table.leaf_keys[c]) if c < table.n else ("parent", table.parent_keys[c - table.n])
        for c in _determined(table.parent_of, table.m, hidden)
    ]


def suppress_hierarchy(leaves: Sequence[RawCell], threshold: int) -> HierarchyPattern:
    """One joint suppression pattern for a two-level table (see the module docstring).

    ``leaves`` are the location cells, each with its parent (the municipality); a parent's count
    is the sum of its leaves. Contract:
      * every leaf and every parent with ``count < threshold`` is suppressed (primary);
      * in ``T = sum(leaves)`` and ``T = sum(parents)`` the suppressed cells are none, or >= 2 with
        sum >= ``threshold`` and sum > their number, unless all of them are suppressed;
      * per parent: its suppressed leaves are none, all of them (only when the parent is
        suppressed too) or >= 2 with sum >= ``threshold`` and sum > their number; a suppressed
        parent has at least one suppressed leaf;
      * no suppressed cell is determined (:func:`determined_cells`) unless it is determined with
        every cell suppressed (a single parent equals the grand total);
      * published counts are exact; a table without small leaves or parents is published whole;
      * deterministic: depends only on the input (ties broken by key, not by input order);
      * pure: no I/O, input not modified.
    Returns the leaves in input order and the parents sorted by key. Raises :class:`ValueError`
    for ``threshold < 1``, a negative count, a duplicate key or a leaf without parent.
    """
    table = _Hierarchy(leaves, threshold)
    for c in range(table.n + table.m):
        if table.count[c] < threshold:
            table.hide(c)
    table.repair()
    by_key = {k: i for i, k in enumerate(table.leaf_keys)}

    def cell(c: int, key: str) -> Cell:
        return Cell(key, None, True) if table.hidden[c] else Cell(key, table.count[c], False)

    return HierarchyPattern(
        leaves=[cell(by_key[c.key], c.key) for c in leaves],
        parents=[cell(table.n + p, k) for p, k in enumerate(table.parent_keys)],
    )
