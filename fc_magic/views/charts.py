"""Tiny histograms of per-task figures (duration, peak memory) as inline SVG with axes.

Inline SVG needs no plotting library and stays the same size for 10 or
10,000 tasks: the saved notebook holds the bins, not the points. Colours are
JupyterLab's theme variables (light and dark) with fallbacks readable on
both, set through ``style`` because SVG presentation attributes do not
resolve ``var()``.
"""
from __future__ import annotations

import html
import logging
import statistics
from typing import Callable

logger = logging.getLogger(__name__)

BAR = "var(--jp-brand-color1, #2196f3)"
AXIS = "var(--jp-ui-font-color2, #8a8a8a)"
CAPTION = "var(--jp-ui-font-color1, currentColor)"


def fmt_duration(seconds: float) -> str:
    """Task durations are often tiny: '12 µs', '3.2 ms', '0.41 s', '12.0 s'."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_mb(mb: float) -> str:
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def histogram(values: list[float], bins: int = 20) -> tuple[list[int], float, float]:
    """Counts per equal-width bin, and the range covered; one bin when all values are equal."""
    values = [v for v in values if v is not None]
    if not values:
        return [], 0.0, 0.0
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [len(values)], lo, hi
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return counts, lo, hi


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p95) by linear interpolation between the closest ranks."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]


def caption(values: list[float], title: str, fmt: Callable[[float], str]) -> str:
    """'task duration: p50 1.20 s · p95 2.10 s · 300 tasks', or 'all 36 MB' when equal."""
    values = [v for v in values if v is not None]
    if min(values) == max(values):
        return f"{title}: all {len(values)} tasks {fmt(values[0])}"
    p50, p95 = percentiles(values)
    return f"{title}: p50 {fmt(p50)} · p95 {fmt(p95)} · {len(values)} tasks"


def svg_histogram(values: list[float], title: str, fmt: Callable[[float], str], *,
                  unit: str, bins: int = 20, width: int = 240, height: int = 46,
                  colour: str = BAR) -> str:
    """An inline SVG histogram: bars, an x axis labelled with its range and unit, a count axis.

    When every value is the same, a single bar at that value is drawn (no
    invented spread); the caption gives p50 and p95.
    """
    values = [v for v in values if v is not None]
    counts, lo, hi = histogram(values, bins)
    if not counts:
        return ""
    left, bottom, top_pad = 30, 14, 2
    plot_w, plot_h = width - left - 4, height - top_pad
    top = max(counts)
    bar_w = plot_w / len(counts) if len(counts) > 1 else min(plot_w, 24)
    x0 = left if len(counts) > 1 else left + (plot_w - bar_w) / 2
    bars = "".join(
        f"<rect x='{x0 + i * bar_w:.1f}' y='{top_pad + plot_h - plot_h * c / top:.1f}' "
        f"width='{max(bar_w - 1, 1):.1f}' height='{plot_h * c / top:.1f}' "
        f"style='fill:{colour}'><title>{c} tasks</title></rect>"
        for i, c in enumerate(counts) if c)
    axis = (f"<line x1='{left}' y1='{top_pad + plot_h}' x2='{width - 4}' y2='{top_pad + plot_h}' "
            f"style='stroke:{AXIS}'/><line x1='{left}' y1='{top_pad}' x2='{left}' "
            f"y2='{top_pad + plot_h}' style='stroke:{AXIS}'/>")
    text = f"style='fill:{AXIS};font-size:9px'"
    esc = html.escape
    if len(counts) > 1:
        ticks = (f"<text x='{left}' y='{height + bottom - 3}' {text}>{esc(fmt(lo))}</text>"
                 f"<text x='{width - 4}' y='{height + bottom - 3}' text-anchor='end' {text}>"
                 f"{esc(fmt(hi))}</text>")
    else:
        ticks = (f"<text x='{left + plot_w / 2:.1f}' y='{height + bottom - 3}' "
                 f"text-anchor='middle' {text}>{esc(fmt(lo))}</text>")
    ylabels = (f"<text x='{left - 3}' y='{top_pad + 8}' text-anchor='end' {text}>{top}</text>"
               f"<text x='{left - 3}' y='{top_pad + plot_h}' text-anchor='end' {text}>0</text>"
               f"<text x='8' y='{top_pad + plot_h / 2:.1f}' text-anchor='middle' "
               f"transform='rotate(-90 8 {top_pad + plot_h / 2:.1f})' {text}>tasks</text>")
    label = (f"<text x='{left + plot_w / 2:.1f}' y='{height + bottom - 3}' text-anchor='middle' "
             f"{text}>{esc(unit)}</text>" if len(counts) > 1 else "")
    return (f"<figure class='fc-magic-chart' style='display:inline-block;margin:0 16px 4px 0'>"
            f"<svg width='{width}' height='{height + bottom}' role='img' "
            f"aria-label='{esc(title)} histogram' style='background:transparent'>"
            f"{bars}{axis}{ticks}{label}{ylabels}</svg>"
            f"<figcaption style='font-size:11px;color:{CAPTION}'>"
            f"{esc(caption(values, title, fmt))}</figcaption></figure>")
