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


def _cost_and_hint(result):
    plain = Receipt(result)._repr_mimebundle_()["text/plain"]
    soup = BeautifulSoup(Receipt(result)._repr_mimebundle_()["text/html"], "html.parser")
    cost = [d.get_text() for d in soup.find_all("div") if d.get_text().startswith("Cost on")]
    return plain, cost


def test_cost_states_its_assumptions_with_sensible_digits():
    # 4 tasks x 1 s at 1024 MB / 0.25 vCPU: 4 x 0.4 CU + 4 x 0.0075 CU = 1.63 CU = $0.0000326.
    plain, cost = _cost_and_hint(_result([1.0] * 4, [36.0] * 4))
    assert cost == ["Cost on Function Compute at 1024 MB: ≈ $0.000033 (1.63 CU) for 4 "
                    "invocations at 1024 MB / 0.25 vCPU (estimate); durations measured on "
                    "this machine, not on Function Compute"]
    # The hint says what "cheaper" assumes, right next to it.
    assert ("peak 36 MB of 1024 MB: 128 MB would do, about 5.3x cheaper (if each task takes "
            "as long at that size; estimate)") in plain


def test_cancelled_tasks_never_sent_are_not_invocations():
    _plain, cost = _cost_and_hint(_result([1.0] * 4, [36.0] * 4, cancelled=6))
    assert "for 4 invocations" in cost[0] and "6 cancelled tasks never sent, not counted" in cost[0]


def test_memory_line_prices_other_sizes_with_the_same_assumption():
    from fc_magic.views.text import memory_line

    line = memory_line(256, _result([1.0] * 4, [36.0] * 4))
    # 4 x (0.15 x 0.25 + 0.1) CU + 0.03 CU = 0.58 CU = $0.0000116
    assert line == ("FC memory: 256 MB, 0.10 vCPU; last map (4 invocations) at this size ≈ "
                    "$0.000012 (0.580 CU, estimate; if each task takes as long at that size; "
                    "durations measured on this machine, not on Function Compute)")


@pytest.mark.parametrize("usd, shown", [(0.0000326, "$0.000033"), (0.04249, "$0.042"),
                                        (1.234, "$1.23"), (1234.5, "$1,234")])
def test_amounts_have_two_significant_digits_or_cents(usd, shown):
    from fc_magic.pricing import fmt_usd

    assert fmt_usd(usd) == shown
