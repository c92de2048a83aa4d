"""Tiny histograms of per-task figures (duration, peak memory) as text and SVG.

Inline SVG in an HTML widget needs no plotting library and stays the same
size for 10 or 10,000 tasks: the saved notebook holds the bins, not the points.
"""
from __future__ import annotations

import html


def fmt_duration(seconds: float) -> str:
    """Task durations are often tiny: '12 µs', '3.2 ms', '0.41 s', '12.0 s'."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def histogram(values: list[float], bins: int = 20) -> tuple[list[int], float, float]:
    """Counts per equal-width bin, and the range covered."""
    values = [v for v in values if v is not None]
    if not values:
        return [], 0.0, 0.0
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [len(values)] + [0] * (bins - 1), lo, hi
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return counts, lo, hi


def svg_histogram(values: list[float], title: str, fmt, *, bins: int = 20,
                  width: int = 220, height: int = 46, colour: str = "#1976d2") -> str:
    """An inline SVG histogram with its title and range, e.g. 'duration 0.1s..2.3s'."""
    counts, lo, hi = histogram(values, bins)
    if not counts:
        return ""
    top = max(counts)
    bar_w = width / len(counts)
    bars = "".join(
        f"<rect x='{i * bar_w:.1f}' y='{height - height * c / top:.1f}' width='{bar_w - 1:.1f}' "
        f"height='{height * c / top:.1f}' fill='{colour}'><title>{c}</title></rect>"
        for i, c in enumerate(counts) if c)
    caption = html.escape(f"{title} {fmt(lo)}..{fmt(hi)} ({len([v for v in values if v is not None])} tasks)")
    return (f"<div style='display:inline-block;margin-right:16px'>"
            f"<svg width='{width}' height='{height}' style='background:#f5f5f5'>{bars}</svg>"
            f"<div style='font-size:11px;color:#555'>{caption}</div></div>")
