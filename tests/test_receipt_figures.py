"""What a finished map's receipt says in its details: histograms with axes and percentiles,
and a cost estimate that states its assumptions. Built from plain `MapResult`s, read
back from the receipt's HTML and text as a reader of the saved notebook sees them."""
from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from fc_magic.results import CANCELLED_TASK, MapResult, TaskFailure, TaskStats
from fc_magic.views.receipt import Receipt


def _result(durations, peaks, *, backend="localhost", memory_mb=1024, cancelled=0, **kw):
    n = len(durations)
    values = list(range(n)) + [TaskFailure(n + i, str(n + i), CANCELLED_TASK, "cancelled")
                               for i in range(cancelled)]
    stats = [TaskStats(i, d, p) for i, (d, p) in enumerate(zip(durations, peaks))]
    stats += [TaskStats(n + i) for i in range(cancelled)]
    return MapResult(values=values, inputs=list(range(len(values))), stats=stats,
                     elapsed_s=5.0, backend=backend, memory_mb=memory_mb, function="f",
                     cancelled=bool(cancelled), where="localhost, 2 worker processes", **kw)


def _figures(result):
    soup = BeautifulSoup(Receipt(result)._repr_mimebundle_()["text/html"], "html.parser")
    return {f.figcaption.get_text(): f.svg for f in soup.find_all("figure")}


def test_equal_values_are_one_bar_at_that_value_not_a_spread():
    figures = _figures(_result([0.5] * 6, [36.0] * 6))
    assert set(figures) == {"task duration: all 6 tasks 0.50 s", "peak memory: all 6 tasks 36 MB"}
    memory = figures["peak memory: all 6 tasks 36 MB"]
    assert len(memory.find_all("rect")) == 1
    assert [t.get_text() for t in memory.find_all("text")] == ["36 MB", "6", "0", "tasks"]
    assert "36 MB..36 MB" not in str(memory)


def test_spread_values_have_axes_units_and_p50_p95():
    durations = [float(i) for i in range(1, 21)]  # 1..20 s
    figures = _figures(_result(durations, [100.0 + i for i in range(20)]))
    (duration_caption, svg), = [(c, s) for c, s in figures.items() if c.startswith("task")]
    # p50 and p95 of 1..20 by linear interpolation: 10.5 and 19.05.
    assert duration_caption == "task duration: p50 10.5 s · p95 19.1 s · 20 tasks"
    labels = [t.get_text() for t in svg.find_all("text")]
    assert labels[:3] == ["1.00 s", "20.0 s", "duration"]  # x axis: range and what it is
    assert labels[-1] == "tasks" and "0" in labels  # the count axis
    assert len(svg.find_all("line")) == 2


def test_chart_colours_are_theme_variables_with_fallbacks():
    html = Receipt(_result([0.1, 0.2], [40.0, 50.0]))._repr_mimebundle_()["text/html"]
    soup = BeautifulSoup(html, "html.parser")
    for rect in soup.find_all("rect"):
        assert rect["style"].startswith("fill:var(--jp-brand-color")
    assert "fill='#" not in html and "#f5f5f5" not in html and "#555" not in html
