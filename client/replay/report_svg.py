"""Inline SVG charts for the after-action report (bars, columns, grouped bars, a heatmap)
and the load report (lines over time, a latency spectrum).

Pure string building. Every text goes through ``html.escape``; charts load no fonts,
images or scripts, so the page they are pasted into works offline and prints. Text widths
are estimated from the characters, since nothing here can measure rendered text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape

#: Formats a value for a bar label or an axis tick.
Fmt = Callable[[float], str]

WIDTH = 720
ROW_H = 22
BAR_H = 14
MAX_LABEL = 30  # characters; longer labels are cut, the full text stays in a tooltip

#: Styles the classes used below; the page includes it in its one <style> element.
CHART_CSS = """
svg.chart { max-width: 100%; height: auto; font-size: 12px; }
svg.chart text { fill: #1a202c; }
svg.chart .tick { fill: #5a6472; font-size: 11px; }
svg.chart .value { fill: #3d4654; }
svg.chart .grid { stroke: #e2e8f0; }
svg.chart .axis { stroke: #8a94a3; }
svg.chart .bar, svg.chart .heat { fill: #2b6cb0; }
svg.chart .s0 { fill: #90cdf4; }
svg.chart .s1 { fill: #3182ce; }
svg.chart .s2 { fill: #1a365d; }
svg.chart .empty { fill: #f7fafc; stroke: #e2e8f0; }
svg.chart text.on-dark { fill: #fff; }
svg.chart .line { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
svg.chart .l0 { stroke: #2b6cb0; }
svg.chart .l1 { stroke: #dd6b20; }
svg.chart .l2 { stroke: #2f855a; }
svg.chart .l3 { stroke: #805ad5; }
svg.chart .tip { fill: transparent; }
svg.chart .tip:hover { fill: #1a202c; fill-opacity: 0.35; }
"""


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Axis ticks from 0 to at least ``top``, spaced 1, 2 or 5 times a power of ten."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def hbar_chart(title: str, bars: Sequence[tuple[str, float]], fmt: Fmt) -> str:
    """Horizontal bars, one row per (label, value), in the order given."""
    label_w = _label_width(label for label, _ in bars)
    value_w = max(text_width(fmt(v)) for _, v in bars) + 10
    ticks = nice_ticks(max(v for _, v in bars))
    x0, plot_w, top = label_w, WIDTH - label_w - value_w, 6.0
    scale = plot_w / ticks[-1]
    bottom = top + len(bars) * ROW_H
    parts = _x_axis(ticks, x0, scale, top, bottom, fmt)
    for i, (label, value) in enumerate(bars):
        y = top + i * ROW_H
        w = max(value, 0.0) * scale
        parts.append(
            f'<text x="{_c(x0 - 6)}" y="{_c(y + ROW_H / 2 + 4)}" text-anchor="end">'
            f"{_label(label)}</text>"
            f'<rect class="bar" x="{_c(x0)}" y="{_c(y + (ROW_H - BAR_H) / 2)}" '
            f'width="{_c(w)}" height="{BAR_H}"><title>{escape(label)}: {escape(fmt(value))}'
            f"</title></rect>"
            f'<text class="value" x="{_c(x0 + w + 4)}" y="{_c(y + ROW_H / 2 + 4)}">'
            f"{escape(fmt(value))}</text>"
        )
    parts.append(_line("axis", x0, top, x0, bottom))
    return _svg(title, WIDTH, bottom + 20, parts)


def column_chart(title: str, columns: Sequence[tuple[str, float]], fmt: Fmt) -> str:
    """Vertical columns, one per (label, value), left to right in the order given."""
    ticks = nice_ticks(max(v for _, v in columns))
    x0 = max(text_width(fmt(t)) for t in ticks) + 12
    top, plot_h = 20.0, 180.0
    base = top + plot_h
    slot = (WIDTH - x0 - 8) / len(columns)
    longest = max(text_width(label[:MAX_LABEL]) for label, _ in columns)
    slanted = longest > slot - 8
    if slanted:  # the first slanted label reaches left of its column: make room for it
        x0 = max(x0, longest * 0.72 + 12 - slot / 2)
        slot = (WIDTH - x0 - 8) / len(columns)
    bar_w = min(slot * 0.7, 48.0)
    scale = plot_h / ticks[-1]
    parts: list[str] = []
    for t in ticks:
        y = base - t * scale
        parts.append(_line("grid", x0, y, WIDTH - 8, y))
        parts.append(f'<text class="tick" x="{_c(x0 - 6)}" y="{_c(y + 4)}" '
                     f'text-anchor="end">{escape(fmt(t))}</text>')
    for i, (label, value) in enumerate(columns):
        cx = x0 + slot * (i + 0.5)
        h = max(value, 0.0) * scale
        shown = escape(fmt(value))
        parts.append(
            f'<rect class="bar" x="{_c(cx - bar_w / 2)}" y="{_c(base - h)}" '
            f'width="{_c(bar_w)}" height="{_c(h)}"><title>{escape(label)}: {shown}</title></rect>'
        )
        if text_width(fmt(value)) <= slot:
            parts.append(f'<text class="value" x="{_c(cx)}" y="{_c(base - h - 4)}" '
                         f'text-anchor="middle">{shown}</text>')
        if slanted:
            parts.append(f'<text x="{_c(cx)}" y="{_c(base + 14)}" text-anchor="end" '
                         f'transform="rotate(-45 {_c(cx)} {_c(base + 14)})">{_label(label)}'
                         f"</text>")
        else:
            parts.append(f'<text x="{_c(cx)}" y="{_c(base + 16)}" text-anchor="middle">'
                         f"{_label(label)}</text>")
    parts.append(_line("axis", x0, base, WIDTH - 8, base))
    under = longest * 0.72 + 22 if slanted else 24.0
    return _svg(title, WIDTH, base + under, parts)


def grouped_hbar_chart(title: str, series: Sequence[str],
                       groups: Sequence[tuple[str, Sequence[float | None]]], fmt: Fmt) -> str:
    """Horizontal bars in groups: per group label, one bar per series (None: no bar),
    with a legend naming the series."""
    values = [v for _, row in groups for v in row if v is not None]
    label_w = _label_width(label for label, _ in groups)
    value_w = max((text_width(fmt(v)) for v in values), default=0.0) + 10
    ticks = nice_ticks(max(values, default=0.0))
    x0, plot_w, top = label_w, WIDTH - label_w - value_w, 26.0
    scale = plot_w / ticks[-1]
    bar_h, group_h = 10.0, len(series) * 12.0 + 10
    bottom = top + len(groups) * group_h
    parts = _x_axis(ticks, x0, scale, top, bottom, fmt)
    lx = x0
    for k, name in enumerate(series):
        parts.append(f'<rect class="s{k % 3}" x="{_c(lx)}" y="6" width="12" height="12"/>'
                     f'<text x="{_c(lx + 16)}" y="16">{escape(name)}</text>')
        lx += 16 + text_width(name) + 18
    for i, (label, row) in enumerate(groups):
        y = top + i * group_h
        parts.append(f'<text x="{_c(x0 - 6)}" y="{_c(y + group_h / 2 + 4)}" '
                     f'text-anchor="end">{_label(label)}</text>')
        for k, value in enumerate(row):
            if value is None:
                continue
            by, w = y + 5 + k * 12, max(value, 0.0) * scale
            shown = escape(fmt(value))
            parts.append(
                f'<rect class="s{k % 3}" x="{_c(x0)}" y="{_c(by)}" width="{_c(w)}" '
                f'height="{_c(bar_h)}"><title>{escape(label)}, {escape(series[k])}: {shown}'
                f'</title></rect><text class="value" x="{_c(x0 + w + 4)}" '
                f'y="{_c(by + bar_h - 1)}" font-size="10">{shown}</text>'
            )
    parts.append(_line("axis", x0, top, x0, bottom))
    return _svg(title, WIDTH, bottom + 20, parts)


def heatmap(title: str, rows: Sequence[str], columns: Sequence[str],
            cells: Mapping[tuple[str, str], float], fmt: Fmt) -> str:
    """A grid of ``rows`` x ``columns``; a cell's shade grows with its value in ``cells``
    (keyed by (row, column)); missing cells are left pale."""
    cell = 34.0
    x0 = _label_width(rows)
    longest = max(text_width(c[:MAX_LABEL]) for c in columns)
    top = longest * 0.72 + 14
    width = x0 + len(columns) * cell + longest * 0.72 + 8
    peak = max((v for v in cells.values() if v > 0), default=1.0)
    parts: list[str] = []
    for j, name in enumerate(columns):
        cx = x0 + (j + 0.5) * cell
        parts.append(f'<text x="{_c(cx)}" y="{_c(top - 6)}" '
                     f'transform="rotate(-45 {_c(cx)} {_c(top - 6)})">{_label(name)}</text>')
    for i, row in enumerate(rows):
        y = top + i * cell
        parts.append(f'<text x="{_c(x0 - 6)}" y="{_c(y + cell / 2 + 4)}" '
                     f'text-anchor="end">{_label(row)}</text>')
        for j, col in enumerate(columns):
            x, value = x0 + j * cell, cells.get((row, col), 0.0)
            tip = f"<title>{escape(row)} → {escape(col)}: {escape(fmt(value))}</title>"
            if value <= 0:
                parts.append(f'<rect class="empty" x="{_c(x)}" y="{_c(y)}" width="{_c(cell)}" '
                             f'height="{_c(cell)}">{tip}</rect>')
                continue
            shade = 0.12 + 0.88 * value / peak
            parts.append(f'<rect class="heat" x="{_c(x)}" y="{_c(y)}" width="{_c(cell)}" '
                         f'height="{_c(cell)}" fill-opacity="{shade:.2f}">{tip}</rect>')
            shown = fmt(value)
            if len(shown) * 6 <= cell - 4:
                dark = ' class="on-dark"' if shade > 0.55 else ""
                parts.append(f'<text{dark} x="{_c(x + cell / 2)}" y="{_c(y + cell / 2 + 4)}" '
                             f'text-anchor="middle" font-size="10">{escape(shown)}</text>')
    return _svg(title, width, top + len(rows) * cell + 8, parts)


#: One line of a line chart: its name and its (x, y) points; a None y breaks the line.
Line = tuple[str, Sequence[tuple[float, float | None]]]
#: Points in a line chart above which they get no hover tooltip (the page would grow).
MAX_TIPS = 2000
LINE_COLOURS = 4


def line_chart(title: str, lines: Sequence[Line], fmt: Fmt, *, x_fmt: Fmt,
               x_ticks: Sequence[tuple[float, str]] = (), width: float = WIDTH) -> str:
    """Lines over one x axis from 0, each point joined to the next in the order given, with
    a legend naming the lines. The x axis has ``x_ticks`` (value, label) if given, else
    ticks spaced by nice_ticks labelled with ``x_fmt``; ``x_fmt`` and ``fmt`` label each
    point's tooltip."""
    xs = [x for _, points in lines for x, _ in points]
    ys = [y for _, points in lines for _, y in points if y is not None]
    y_ticks = nice_ticks(max(ys, default=0.0))
    ticks = list(x_ticks) or [(t, x_fmt(t)) for t in nice_ticks(max(xs, default=0.0))]
    x_top = max(max(xs, default=0.0), max(t for t, _ in ticks)) or 1.0
    # a fixed least margin lines up the plots of charts one above the other
    x0 = max(max(text_width(fmt(t)) for t in y_ticks) + 12, 56.0)
    right = width - max(12.0, text_width(ticks[-1][1]) / 2 + 2)
    top, plot_h = 26.0, 180.0
    base = top + plot_h
    sx, sy = (right - x0) / x_top, plot_h / y_ticks[-1]
    parts: list[str] = []
    for t in y_ticks:
        at = base - t * sy
        parts.append(_line("grid", x0, at, right, at))
        parts.append(f'<text class="tick" x="{_c(x0 - 6)}" y="{_c(at + 4)}" '
                     f'text-anchor="end">{escape(fmt(t))}</text>')
    for t, label in ticks:
        at = x0 + t * sx
        parts.append(_line("grid", at, top, at, base))
        parts.append(f'<text class="tick" x="{_c(at)}" y="{_c(base + 16)}" '
                     f'text-anchor="middle">{escape(label)}</text>')
    parts += [_line("axis", x0, top, x0, base), _line("axis", x0, base, right, base)]
    lx = x0
    tips = len(xs) <= MAX_TIPS
    for k, (name, points) in enumerate(lines):
        colour = f"line l{k % LINE_COLOURS}"
        parts.append(f'{_line(colour, lx, 12, lx + 16, 12)}'
                     f'<text x="{_c(lx + 20)}" y="16">{escape(name)}</text>')
        lx += 20 + text_width(name) + 18
        run: list[str] = []
        for x, y in [*points, (0.0, None)]:  # the sentinel ends the last run
            if y is not None:
                run.append(f"{_c(x0 + x * sx)},{_c(base - y * sy)}")
                continue
            if len(run) == 1:  # a lone point: a dot, since a line of one point is not drawn
                cx, cy = run[0].split(",")
                parts.append(f'<circle class="{colour}" cx="{cx}" cy="{cy}" r="1.5"/>')
            if run:
                parts.append(f'<polyline class="{colour}" points="{" ".join(run)}">'
                             f"<title>{escape(name)}</title></polyline>")
            run = []
        if tips:
            parts += [f'<circle class="tip" cx="{_c(x0 + x * sx)}" cy="{_c(base - y * sy)}" '
                      f'r="4"><title>{escape(name)}, {escape(x_fmt(x))}: {escape(fmt(y))}'
                      f"</title></circle>" for x, y in points if y is not None]
    return _svg(title, width, base + 24, parts)


def _x_axis(ticks: Sequence[float], x0: float, scale: float, top: float, bottom: float,
            fmt: Fmt) -> list[str]:
    parts = []
    for t in ticks:
        x = x0 + t * scale
        parts.append(_line("grid", x, top, x, bottom))
        parts.append(f'<text class="tick" x="{_c(x)}" y="{_c(bottom + 14)}" '
                     f'text-anchor="middle">{escape(fmt(t))}</text>')
    return parts


def text_width(text: str) -> float:
    """Rough width of ``text`` at 12px: capitals and digits are wider than the rest."""
    return sum(8.5 if c.isupper() else 7.0 if c.isdigit() else 6.5 for c in text)


def _label_width(labels: Iterable[str]) -> float:
    return max((text_width(label[:MAX_LABEL]) for label in labels), default=0.0) + 12


def _label(text: str) -> str:
    """A label cut to MAX_LABEL characters, escaped; a cut one keeps its full text as a
    tooltip."""
    if len(text) <= MAX_LABEL:
        return escape(text)
    return f"<title>{escape(text)}</title>{escape(text[: MAX_LABEL - 1])}…"


def _line(cls: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="{cls}" x1="{_c(x1)}" y1="{_c(y1)}" x2="{_c(x2)}" y2="{_c(y2)}"/>'


def _svg(title: str, width: float, height: float, parts: Sequence[str]) -> str:
    w, h = _c(width), _c(height)
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(parts)}</svg>')


def _c(x: float) -> str:
    """A coordinate with at most one decimal."""
    text = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
