"""Inline SVG charts shared by the HTML report and the dashboards.

Each chart is one ``<figure>`` holding an ``<svg>`` with axes, tick labels, a
legend and a caption saying what is drawn and how it was computed; there is
no script and no external asset, so a chart renders offline and in an email.
Every text that may come from the database (series names, labels) is escaped.
A chart without data draws its frame with a visible "no data" note instead of
an empty box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from markupsafe import Markup, escape

from pgperfmon import resources

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563")
MAX_POINT_MARKERS = 120  # above this many points, no per-point circle (and tooltip)

X = datetime | float | int
Y = float | int | None


@dataclass
class Series:
    """One line of a chart: (x, y) points, x a time or a number; y None leaves a gap."""

    name: str
    points: Sequence[tuple[X, Y]] = field(default_factory=list)
    unit: str = ""


@dataclass
class _Frame:
    width: int
    height: int
    left: int = 56
    right: int = 12
    top: int = 24
    bottom: int = 30

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom


def _num(value: float) -> str:
    """A coordinate with at most one decimal (keeps the SVG small)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def format_value(value: float | None, unit: str = "") -> str:
    """A figure for people, as the report and its messages write it (perfmon_py.report_digest)."""
    if value is None:
        return "–"
    return resources.plpython_module("report_digest").number(value, unit or None)


def _as_float(x: X) -> float:
    if isinstance(x, datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=timezone.utc)
        return x.timestamp()
    return float(x)


def _time_label(seconds: float, span: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    if span <= 2 * 86400:
        return moment.strftime("%H:%M")
    if span <= 120 * 86400:
        return moment.strftime("%m-%d")
    return moment.strftime("%Y-%m")


def _time_ticks(low: float, high: float, count: int = 6) -> list[float]:
    span = max(high - low, 1.0)
    steps = [60, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
             2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 90 * 86400, 365 * 86400]
    step = next((s for s in steps if span / s <= count), steps[-1])
    first = math.ceil(low / step) * step
    return [t for t in (first + i * step for i in range(count + 2)) if t <= high]


def _figure(kind: str, title: str, how: str, svg: str, points: int, extra_class: str = "") -> Markup:
    cls = f"chart {extra_class}".strip()
    return Markup(
        f'<figure class="{cls}" data-chart="{kind}" data-points="{points}">'
        f'<figcaption class="chart-title">{escape(title)}</figcaption>{svg}'
        f'<p class="how">{escape(how)}</p></figure>'
    )


def _no_data(kind: str, title: str, how: str, width: int, height: int, note: str) -> Markup:
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}: no data" class="nodata">'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f8fafc" '
        f'stroke="#cbd5e1" stroke-dasharray="4 3"/>'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" dominant-baseline="middle" '
        f'class="nodata-note" font-size="14" fill="#64748b">{escape(note)}</text></svg>'
    )
    return _figure(kind, title, how, svg, 0, "nodata")


def line_chart(series: Sequence[Series], *, title: str, how: str, unit: str = "",
               width: int = 640, height: int = 220, area: bool = False,
               y_min: float | None = 0.0, y_max: float | None = None,
               x_range: tuple[X, X] | None = None,
               no_data: str = "no data for this period") -> Markup:
    """Lines (or filled areas) over time or over a number, one per series.

    ``y_min``/``y_max`` extend the axis (e.g. 0-100 for percentages); None lets
    the data decide. ``x_range`` (e.g. the report's period) extends the x axis, so
    that missing data shows as missing. Points with y None break the line.
    """
    present = [s for s in series if any(y is not None for _, y in s.points)]
    if not present:
        return _no_data("line", title, how, width, height, no_data)
    frame = _Frame(width, height)
    xs = [_as_float(x) for s in present for x, y in s.points if y is not None]
    ys = [float(y) for s in present for _, y in s.points if y is not None]
    is_time = any(isinstance(x, datetime) for s in present for x, _ in s.points)
    x_low, x_high = min(xs), max(xs)
    if x_range is not None:
        x_low = min(x_low, _as_float(x_range[0]))
        x_high = max(x_high, _as_float(x_range[1]))
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    low = min(ys) if y_min is None else min(y_min, min(ys))
    high = max(ys) if y_max is None else max(y_max, max(ys))
    y_ticks = nice_ticks(low, high)
    y_low, y_high = y_ticks[0], y_ticks[-1]
    if y_high == y_low:
        y_high = y_low + 1

    def px(x: float) -> float:
        return frame.left + (x - x_low) / (x_high - x_low) * frame.plot_w

    def py(y: float) -> float:
        return frame.top + frame.plot_h - (y - y_low) / (y_high - y_low) * frame.plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    # Grid and y axis labels.
    for t in y_ticks:
        y = py(t)
        parts.append(f'<line class="grid" x1="{frame.left}" x2="{width - frame.right}" y1="{_num(y)}" '
                     f'y2="{_num(y)}" stroke="#e2e8f0"/>')
        parts.append(f'<text class="tick y" x="{frame.left - 6}" y="{_num(y)}" text-anchor="end" '
                     f'dominant-baseline="middle" font-size="11" fill="#475569">'
                     f'{escape(format_value(t))}</text>')
    # x axis labels.
    span = x_high - x_low
    x_ticks = _time_ticks(x_low, x_high) if is_time else nice_ticks(x_low, x_high, 6)
    for t in x_ticks:
        if t < x_low or t > x_high:
            continue
        label = _time_label(t, span) if is_time else format_value(t)
        parts.append(f'<text class="tick x" x="{_num(px(t))}" y="{height - 10}" text-anchor="middle" '
                     f'font-size="11" fill="#475569">{escape(label)}</text>')
    axis_y = frame.top + frame.plot_h
    parts.append(f'<line class="axis" x1="{frame.left}" x2="{width - frame.right}" y1="{axis_y}" '
                 f'y2="{axis_y}" stroke="#64748b"/>')
    parts.append(f'<line class="axis" x1="{frame.left}" x2="{frame.left}" y1="{frame.top}" '
                 f'y2="{axis_y}" stroke="#64748b"/>')
    if unit:
        parts.append(f'<text class="unit" x="4" y="12" font-size="11" fill="#475569">'
                     f'{escape(unit)}</text>')
    total_points = 0
    for i, s in enumerate(present):
        colour = PALETTE[i % len(PALETTE)]
        segments: list[list[tuple[float, float]]] = [[]]
        for x, y in sorted(s.points, key=lambda p: _as_float(p[0])):
            if y is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((px(_as_float(x)), py(float(y))))
        segments = [seg for seg in segments if seg]
        count = sum(len(seg) for seg in segments)
        total_points += count
        d = " ".join("M" + " L".join(f"{_num(a)} {_num(b)}" for a, b in seg) for seg in segments)
        values = [float(y) for _, y in s.points if y is not None]
        summary = (f"{s.name}: {count} points, min {format_value(min(values), s.unit or unit)}, "
                   f"max {format_value(max(values), s.unit or unit)}, "
                   f"last {format_value(values[-1], s.unit or unit)}")
        if area:
            for seg in segments:
                fill = (f"M{_num(seg[0][0])} {_num(axis_y)} L"
                        + " L".join(f"{_num(a)} {_num(b)}" for a, b in seg)
                        + f" L{_num(seg[-1][0])} {_num(axis_y)} Z")
                parts.append(f'<path class="area" d="{fill}" fill="{colour}" fill-opacity="0.15" '
                             'stroke="none"/>')
        parts.append(f'<path class="series" data-series="{escape(s.name)}" data-points="{count}" '
                     f'd="{d}" fill="none" stroke="{colour}" stroke-width="2" '
                     f'stroke-linejoin="round"><title>{escape(summary)}</title></path>')
        if count <= MAX_POINT_MARKERS:
            for x, y in s.points:
                if y is None:
                    continue
                label = _time_label(_as_float(x), 0) if is_time else format_value(_as_float(x))
                if is_time:
                    label = datetime.fromtimestamp(_as_float(x), tz=timezone.utc).strftime(
                        "%Y-%m-%d %H:%M UTC")
                parts.append(
                    f'<circle cx="{_num(px(_as_float(x)))}" cy="{_num(py(float(y)))}" r="2.5" '
                    f'fill="{colour}"><title>{escape(s.name)} {escape(label)}: '
                    f'{escape(format_value(float(y), s.unit or unit))}</title></circle>')
    # Legend, top right.
    if len(present) > 1 or present[0].name:
        lx = width - frame.right - 4
        for i, s in enumerate(reversed(present)):
            colour = PALETTE[(len(present) - 1 - i) % len(PALETTE)]
            text = s.name
            lx_text = lx - 7 * len(text)
            parts.append(f'<rect x="{_num(lx_text - 14)}" y="3" width="10" height="10" '
                         f'fill="{colour}"/><text class="legend" x="{_num(lx_text)}" '
                         f'y="12" font-size="11" fill="#1e293b">{escape(text)}</text>')
            lx = lx_text - 24
    parts.append("</svg>")
    return _figure("line", title, how, "".join(parts), total_points)


def bar_chart(bars: Sequence[tuple[str, Y]], *, title: str, how: str, unit: str = "",
              width: int = 640, bar_height: int = 20, label_width: int = 230,
              no_data: str = "no data for this period", colour: str = PALETTE[0]) -> Markup:
    """Horizontal bars, one per (label, value), largest scale first as given."""
    present = [(label, float(v)) for label, v in bars if v is not None]
    if not present:
        return _no_data("bar", title, how, width, 120, no_data)
    height = 16 + len(present) * (bar_height + 6) + 22
    top = 8
    # Short labels need less room (34 characters at most are shown).
    label_width = int(min(label_width, 24 + 6.5 * max(min(len(label), 34) for label, _ in present)))
    plot_w = width - label_width - 90
    high = max(max(v for _, v in present), 0.0)
    low = min(min(v for _, v in present), 0.0)
    ticks = nice_ticks(low, high, 5)
    t_low, t_high = ticks[0], ticks[-1]
    if t_high == t_low:
        t_high = t_low + 1

    def px(v: float) -> float:
        return label_width + (v - t_low) / (t_high - t_low) * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    axis_y = top + len(present) * (bar_height + 6)
    for t in ticks:
        parts.append(f'<line class="grid" x1="{_num(px(t))}" x2="{_num(px(t))}" y1="{top}" '
                     f'y2="{axis_y}" stroke="#e2e8f0"/>')
        parts.append(f'<text class="tick x" x="{_num(px(t))}" y="{axis_y + 14}" text-anchor="middle" '
                     f'font-size="11" fill="#475569">{escape(format_value(t))}</text>')
    for i, (label, value) in enumerate(present):
        y = top + i * (bar_height + 6)
        x0, x1 = sorted((px(0.0), px(value)))
        short = label if len(label) <= 34 else label[:33] + "…"
        parts.append(f'<text class="bar-label" x="{label_width - 6}" y="{y + bar_height / 2}" '
                     f'text-anchor="end" dominant-baseline="middle" font-size="11" fill="#1e293b">'
                     f'{escape(short)}<title>{escape(label)}</title></text>')
        parts.append(f'<rect class="bar" x="{_num(x0)}" y="{y}" width="{_num(max(x1 - x0, 1))}" '
                     f'height="{bar_height}" fill="{colour}"><title>{escape(label)}: '
                     f'{escape(format_value(value, unit))}</title></rect>')
        parts.append(f'<text class="bar-value" x="{_num(x1 + 4)}" y="{y + bar_height / 2}" '
                     f'dominant-baseline="middle" font-size="11" fill="#1e293b">'
                     f'{escape(format_value(value, unit))}</text>')
    parts.append(f'<line class="axis" x1="{label_width}" x2="{label_width}" y1="{top}" y2="{axis_y}" '
                 'stroke="#64748b"/>')
    parts.append("</svg>")
    return _figure("bar", title, how, "".join(parts), len(present))
