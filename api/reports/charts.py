"""The report page's charts as server-side SVG (no script, nothing to download).

Each function takes plain numbers and labels and returns an SVG document
fragment with a `<title>` and a `<desc>` for screen readers; colours are
presentation attributes (the pages' CSP allows no inline style). Values are
also in the tables under each chart, so nothing is shown by colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Final

from markupsafe import Markup

BAR: Final = "#0f766e"
BAR_ALT: Final = "#b45309"
GRID: Final = "#d1d5db"
INK: Final = "#111827"
HEAT: Final = ("#f0fdf4", "#bbf7d0", "#86efac", "#4ade80", "#16a34a", "#166534", "#052e16")


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" class="chart" font-size="{FONT}" font-family="sans-serif">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )
    return Markup(head + "".join(body) + "</svg>")  # every text above is escaped


# Drawn at about 1:1 on a desk screen and at about 0.6 on a 375 px phone, where
# 16-unit text still reads as 10 px.
FONT: Final = 16
CHAR_W: Final = FONT * 0.6  # an average label character (digits, latin)


def ticks(peak: float, most: int = 5) -> list[float]:
    """Round axis values from 0 up to at least `peak`: steps of 1, 2 or 5 x 10^k,
    at most `most` steps (0 and 1 for an empty chart)."""
    if peak <= 0:
        return [0.0, 1.0]
    raw = peak / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(peak / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    unit: str = "",
    every: int = 1,
    color: str = BAR,
) -> Markup:
    """Vertical bars, one per label, on a y axis with round ticks and grid lines;
    `every`: write at most every n-th label (more apart if they would overlap)."""
    axis = ticks(max([*values, 0.0]))
    top_value = axis[-1]
    label_w = max([len(_num(v)) for v in axis] + [1]) * CHAR_W
    width, height, bottom, top = 560, 260, FONT + 14, FONT // 2 + 4
    left = int(label_w + 10)
    plot_w, plot_h = width - left - 8, height - bottom - top
    step = plot_w / max(1, len(values))
    widest = max([len(n) for n in labels] + [1]) * CHAR_W + 8
    every = max(every, math.ceil(widest / step))
    body = []
    for value in axis:
        y = top + plot_h - plot_h * value / top_value
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 8}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + FONT * 0.35:.1f}" text-anchor="end" fill="{INK}">'
            f"{escape(_num(value))}</text>"
        )
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / top_value
        x = left + i * step
        body.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{step * 0.8:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(name)}: {escape(_num(value))}{escape(unit)}</title></rect>"
        )
        if i % every == 0:
            body.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                f'fill="{INK}">{escape(name)}</text>'
            )
    desc = ", ".join(f"{n}: {_num(v)}{unit}" for n, v in zip(labels, values, strict=True))
    return _svg(width, height, title, desc, body)


def hbars(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "") -> Markup:
    """Horizontal bars with their values written at the end."""
    row, left, width = 26, 170, 720
    height = row * len(values) + 10
    peak = max([*values, 0.0]) or 1.0
    body = []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = 5 + i * row
        w = (width - left - 70) * value / peak
        body.append(
            f'<text x="{left - 6}" y="{y + 16}" text-anchor="end" fill="{INK}">'
            f"{escape(name)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{BAR_ALT}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 16}" fill="{INK}">'
            f"{escape(_num(value))}{escape(unit)}</text>"
        )
    desc = ", ".join(f"{n}: {_num(v)}{unit}" for n, v in zip(labels, values, strict=True))
    return _svg(width, height, title, desc, body)


def heatmap(
    title: str, rows: Sequence[str], columns: Sequence[str], grid: Sequence[Sequence[int]]
) -> Markup:
    """Cells shaded by value (7 steps); each cell's value is in its tooltip."""
    cell, left, top = 26, 44, 22
    width, height = left + cell * len(columns) + 4, top + cell * len(rows) + 4
    peak = max([max(r, default=0) for r in grid] + [0]) or 1
    body = []
    for j, name in enumerate(columns):
        if j % 3 == 0:
            body.append(
                f'<text x="{left + j * cell + cell / 2}" y="{top - 8}" text-anchor="middle" '
                f'fill="{INK}">{escape(name)}</text>'
            )
    for i, (name, values) in enumerate(zip(rows, grid, strict=True)):
        y = top + i * cell
        body.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end" fill="{INK}">'
            f"{escape(name)}</text>"
        )
        for j, value in enumerate(values):
            shade = HEAT[min(len(HEAT) - 1, round((len(HEAT) - 1) * value / peak))]
            body.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{shade}"><title>{escape(name)} {escape(columns[j])}: {value}</title>'
                f"</rect>"
            )
    total = sum(sum(r) for r in grid)
    return _svg(width, height, title, f"{total} in all, busiest cell {peak}", body)
