"""Bar charts drawn on the server as SVG geometry (no chart library, nothing from a CDN).

:func:`bar_chart` turns a table (days × series → value) into rectangles, axis ticks and labels;
the template draws them as inline SVG with presentation attributes only (no inline style, so the
strict CSP holds). The numbers are always also in the table beside the chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Colour-blind-safe palette (Okabe–Ito), one colour per series; the last is "overig".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999")
WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 12, 44


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # for the <title> tooltip and screen readers


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(slots=True)
class Chart:
    """What the template draws: ``bars``, y ``ticks``, x ``labels``, ``legend`` (name, colour)."""

    title: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM
    right: int = WIDTH - RIGHT
    top: int = TOP
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)


def nice_step(value: float, *, integer: bool = True) -> float:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (at least 1 for counts)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        step = factor * power
        if step >= value:
            return float(max(step, 1)) if integer else float(step)
    return float(10 * power)  # pragma: no cover - the loop always returns


def nice_max(value: float, *, integer: bool = True) -> float:
    """The top of a four-tick axis over ``value``: four round steps (whole ones for counts)."""
    return 4 * nice_step(value / 4, integer=integer)


def bar_chart(
    title: str,
    days: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple[str, str], float],
    *,
    unit: str = "",
    integer: bool = True,
) -> Chart:
    """Stacked bars: one bar per day, one segment per series (in ``series`` order)."""
    chart = Chart(title=title)
    colours = {name: PALETTE[min(i, len(PALETTE) - 1)] for i, name in enumerate(series)}
    chart.legend = [(name, colours[name]) for name in series]
    totals = [sum(values.get((day, s), 0.0) for s in series) for day in days]
    top_value = nice_max(max(totals, default=0.0), integer=integer)
    plot_h = chart.bottom - chart.top
    plot_w = chart.right - chart.left
    slot = plot_w / max(len(days), 1)
    width = max(slot * 0.7, 1.0)
    for k in range(5):
        value = top_value * k / 4
        y = chart.bottom - plot_h * k / 4
        chart.ticks.append(Tick(y, f"{value:g}{unit}"))
    every = max(1, math.ceil(len(days) / 12))
    for i, day in enumerate(days):
        x = chart.left + slot * i + (slot - width) / 2
        if i % every == 0:
            chart.labels.append(Tick(x + width / 2, day[5:]))
        y = float(chart.bottom)
        for name in series:
            value = values.get((day, name), 0.0)
            if value <= 0:
                continue
            h = plot_h * value / top_value
            y -= h
            chart.bars.append(
                Bar(x, y, width, h, colours[name], f"{day} · {name}: {value:g}{unit}")
            )
    return chart
