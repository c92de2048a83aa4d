"""The widget views read back without a browser: scripted snapshots, a fake clock,
scripted MapResults, and the magics driving them in a real shell."""
from __future__ import annotations

import io

import ipywidgets as w
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic import pricing
from fc_magic.progress import CANCELLED, ERROR, MapSnapshot
from fc_magic.results import MapResult, TaskFailure, TaskStats
from fc_magic.views import MapDisplay
from fc_magic.views.text import TextMapView
from fc_magic.views.widgets import WidgetMapView, is_click


def scripted_result(n=30, failed=(3, 7), memory=1024, peak=180.0) -> MapResult:
    values, stats = [], []
    for i in range(n):
        if i in failed:
            values.append(TaskFailure(i, repr(i), "ValueError", f"bad input {i}",
                                      "Traceback (most recent call last):\n"
                                      f'  File "<cell>", line 2, in score\nValueError: bad input {i}'))
        else:
            values.append({"x": i, "text": "y" * 500})
        stats.append(TaskStats(i, duration_s=1.0 + i / n, peak_memory_mb=peak * (0.5 + i / (2 * (n - 1)))))
    return MapResult(values=values, inputs=list(range(n)), stats=stats, elapsed_s=3.0,
                     memory_mb=memory, function="score")


def live_widgets():
    from ipywidgets.widgets.widget import _instances  # Widget.widgets, undeprecated

    return list(_instances.values())


def newest(kind, **attrs):
    """The most recently created live widget of a kind with these attributes."""
    found = [x for x in live_widgets() if isinstance(x, kind)
             and all(getattr(x, k) == v for k, v in attrs.items())]
    return found[-1] if found else None


def test_map_view_counts_eta_rate_and_throttle_with_a_fake_clock(clock):
    display = MapDisplay("widget", progress_after=1.0, clock=clock,
                         make_view=lambda: WidgetMapView(display_now=False))
    for i in range(2000):
        clock.now = i * 0.0025  # 5 s of a 2,000-task map
        display.on_snapshot(MapSnapshot(total=2000, done=i, failed=0, running=8,
                                        elapsed_s=clock.now, label="score"))
        if i == 300:
            assert display.view is None  # not before progress_after
    view = display.view
    assert 14 <= display.reporter.draws <= 17  # (5 s - 1 s) / 0.25 s, not 2,000
    label = view.label.value
    assert "score: 1900/2000 done" in label and "8 running" in label  # last redraw, 4.75 s
    assert "pending" in label and "tasks/s" in label and "ETA" in label
    assert (view.bar.done, view.bar.total, view.bar.status) == (1900, 2000, "running")
    display.on_snapshot(MapSnapshot(total=2000, done=1998, failed=2, elapsed_s=5.1,
                                    status=ERROR, label="score"))
    assert view.bar.status == "error" and view.bar.failed == 2 and "2 failed" in view.label.value
    assert view.cancel_button.layout.display == "none"  # the finished view keeps no cancel


def test_cancel_button_sets_the_token_the_engine_polls(clock):
    display = MapDisplay("widget", progress_after=0.0, clock=clock,
                         make_view=lambda: WidgetMapView(display_now=False, cancel=display.cancel))
    display.on_snapshot(MapSnapshot(total=10, done=2, running=2, elapsed_s=1))
    view = display.view
    assert display.should_cancel() is False
    view.cancel_button.click()
    assert display.should_cancel() is True and view.cancel_button.disabled
    clock.now = 1.0
    display.on_snapshot(MapSnapshot(total=10, done=3, running=2, elapsed_s=1.5))
    assert "cancelling" in view.label.value
    display.on_snapshot(MapSnapshot(total=10, done=3, elapsed_s=2, status=CANCELLED))
    assert view.bar.status == "cancelled" and "7 cancelled" in view.label.value
    assert is_click({"method": "custom", "content": {"event": "click"}})
    assert not is_click({"method": "update", "state": {"value": 3}})


def test_final_panel_is_a_static_receipt_and_a_row_of_live_controls(ip):
    view = WidgetMapView(display_now=False)
    result = scripted_result()
    view.finish(MapSnapshot(total=30, done=28, failed=2, elapsed_s=3, status=ERROR))
    retried = []
    with capture_output() as shown:
        view.show_result(result, on_retry=lambda stage: retried.append(stage))
    assert len(shown.outputs) == 2  # the receipt, then the controls
    receipt, controls = (o.data for o in shown.outputs)
    assert "application/vnd.jupyter.widget-view+json" not in receipt  # no kernel needed
    body = receipt["text/html"]
    assert "FAILED" in body and "28/30 done · 2 failed" in body
    assert "#3  input 3" in body and "ValueError: bad input 3" in body
    assert "in score" in body and body.count("<details open>") == 1  # the first is open
    assert "peak 180 MB of 1024 MB: 256 MB would do, about" in body
    details = body[body.index("details: preview"):]
    assert details.count("<tr>") == 1 + 8 + 1 and "… 22 more in" in details
    assert "yyyyyyyy…" in details and "y" * 100 not in details  # reprs truncated
    assert details.count("<svg") == 2 and "duration" in details and "peak memory" in details
    assert receipt["text/plain"].splitlines()[0].startswith("score: 28/30 done · 2 failed")
    assert "2 of 30 tasks failed" in receipt["text/plain"]
    assert controls["text/plain"] == ""  # live only: the receipt is the record
    assert view.controls.retry_button.description == "Retry 2 failed"
    assert view.bar.comm is None  # the live row's models are closed
    view.controls.retry_button.click()
    assert retried == [view.controls.box] and view.controls.retry_button.disabled
    # The retry started: the controls row hides this map's receipt (its own class) and says so.
    name = f"fc-magic-receipt-{view.receipt.key}"
    assert f"class='fc-magic-receipt {name}'" in body
    assert view.controls.stand_in.value.startswith(
        f"<style>.jp-Cell:has(.{name}-stand-in) .{name}{{display:none !important}}")
    assert f"<div class='{name}-stand-in'" in view.controls.stand_in.value
    assert view.controls.panel.children == (view.controls.stand_in, view.controls.box)


def test_a_retry_that_cannot_start_leaves_the_receipt_shown(ip):
    view = WidgetMapView(display_now=False)
    view.finish(MapSnapshot(total=30, done=28, failed=2, elapsed_s=3, status=ERROR))

    def refused(stage):
        raise UsageError("%fc_map: credentials refused")

    with capture_output():
        view.show_result(scripted_result(), on_retry=refused)
    view.controls.retry_button.click()
    assert view.controls.stand_in.value == ""  # nothing merged: the receipt above still holds
    assert "credentials refused" in view.controls.message.value
    assert not view.controls.retry_button.disabled


def test_final_panel_is_bounded_for_huge_maps():
    from fc_magic.views.receipt import receipt_html

    n = 10_000
    big = receipt_html(scripted_result(n=n, failed=set(range(0, n, 10))))
    # As many failures shown (20, each with its traceback and copy box), 50x fewer tasks.
    small = receipt_html(scripted_result(n=200, failed=set(range(0, 200, 10))))
    assert "… 980 more in <code>.failures</code>" in big
    assert len(big) < len(small) * 1.2  # 50x the tasks, not 50x the record
    assert len(big) < 40_000


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_text_view_summary_lines_for_failures_and_hint():
    stream = io.StringIO()
    view = TextMapView(stream, tty=False)
    view.finish(MapSnapshot(total=30, done=28, failed=2, elapsed_s=3, status=ERROR))
    view.show_result(scripted_result())
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("[FAILED]")
    assert "2 of 30 tasks failed" in lines[1] and "%fc_map --retry NAME" in stream.getvalue()
    assert lines[-1].startswith("peak 180 MB of 1024 MB: 256 MB would do")
    assert len(lines) <= 10


def test_pricing_table_vcpu_rule_and_hint_arithmetic():
    assert pricing.vcpu_for_memory(1024) == pytest.approx(0.25)
    assert pricing.vcpu_for_memory(128) == pytest.approx(0.05)  # floor of FC's vCPU range
    assert pricing.vcpu_for_memory(32768) == pytest.approx(8.0)
    assert pricing.vcpu_for_memory(1536) == pytest.approx(0.4)  # 0.375 rounded up to 0.05
    est = pricing.estimate([2.0, 2.0], 1024)
    assert est.cu == pytest.approx(2 * 2.0 * (0.15 * 1 + 0.25) + 2 * 75 / 10_000)
    assert est.usd == pytest.approx(est.cu * 0.000020)
    assert "estimate" in est.describe()
    hint = pricing.sizing_hint(scripted_result(peak=180.0))
    assert hint.suggested_mb == 256 and hint.memory_mb == 1024
    assert hint.factor == pytest.approx(pricing.estimate_result(scripted_result(), 1024).cu
                                        / pricing.estimate_result(scripted_result(), 256).cu)
    near = pricing.sizing_hint(scripted_result(memory=256, peak=250.0))
    assert near.suggested_mb == 320 and "would be safer" in near.describe()


# ------------------------------------------------------------- through the magics
def test_fc_memory_slider_is_bound_to_the_trait(ip, fc):
    fc.view = "widget"
    with capture_output():
        ip.run_line_magic("fc_memory", "")
    slider = newest(w.SelectionSlider, description="memory")
    assert slider.value == fc.memory == 256
    values = [v for _, v in slider.options]
    assert values[0] == 128 and values[-1] == 32768 and all(v % 64 == 0 for v in values)
    slider.value = 1024  # the user drags the slider
    assert fc.memory == 1024
    ip.run_cell("%config FCMagic.memory = 576")  # not a stop: added, shown exactly
    assert slider.value == 576 and ("576 MB", 576) in slider.options
    with capture_output():
        ip.run_line_magic("fc_memory", "2048")
    assert fc.memory == 2048 and slider.value == 2048


def test_fc_memory_text_and_bad_value(ip, fc, cell):
    from IPython.core.error import UsageError

    with capture_output() as captured:
        ip.run_line_magic("fc_memory", "1024")
    assert captured.stdout.startswith("FC memory: 1024 MB, 0.25 vCPU")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_memory", "1000")
    assert str(info.value).startswith("%fc_memory: memory 1000 MB is not a multiple of 64")


def test_slider_cost_line_uses_the_last_map(ip, fc, cell):
    cell("def square(x):\n    return x * x")
    fc.view = "widget"
    with capture_output():
        ip.run_line_magic("fc_map", "square range(6) --quiet")
        ip.run_line_magic("fc_memory", "")
    slider = newest(w.SelectionSlider, description="memory")
    info = [x for x in live_widgets() if isinstance(x, w.HTML)
            and "last map (square, 6 invocations)" in x.value]
    assert info and "estimate" in info[-1].value
    assert "durations measured on this machine" in info[-1].value
    slider.value = 512
    assert "at 512 MB" in info[-1].value and "0.15 vCPU" in info[-1].value
    assert "if each task takes as long at that size" in info[-1].value


@pytest.fixture
def flaky(cell, tmp_path):
    """A function that fails for multiples of 3 until a flag file exists."""
    flag = tmp_path / "fixed"
    cell(f"import os\ndef flaky(x):\n    if x % 3 == 0 and not os.path.exists({str(flag)!r}):\n"
         f"        raise ValueError(f'not yet {{x}}')\n    return x * 10")
    return flag


def test_retry_magic_reruns_only_failures_and_merges_in_place(ip, fc, cell, flaky):
    with capture_output() as captured:
        first = ip.run_line_magic("fc_map", "flaky range(10) --out r")
    assert [f.index for f in first.failures] == [0, 3, 6, 9]
    assert "%fc_map --retry NAME" in captured.stdout
    flaky.write_text("")
    with capture_output() as captured:
        again = ip.run_line_magic("fc_map", "--retry r")
    assert again is first and ip.user_ns["r"] is first
    assert first.ok and first.values == [x * 10 for x in range(10)]
    assert "4/4 done" in captured.stdout  # only the failed inputs ran
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "--retry r")
    assert type(info.value) is UsageError and "\n" not in str(info.value)
    assert str(info.value) == "%fc_map: the map has no failed tasks to retry"
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "--retry nothing_here")
    assert type(info.value) is UsageError and "\n" not in str(info.value)
    assert str(info.value).startswith("%fc_map: --retry nothing_here: 'nothing_here' is not a MapResult")


def test_a_retried_task_that_fails_again_keeps_its_original_index(ip, fc, cell, tmp_path):
    still = tmp_path / "still_failing"
    still.write_text("0 3 6 9")
    cell(f"def stubborn(x):\n    if str(x) in open({str(still)!r}).read().split():\n"
         f"        raise ValueError(f'bad {{x}}')\n    return x * 10")
    with capture_output():
        result = ip.run_line_magic("fc_map", "stubborn range(10) --out r")
    assert [f.index for f in result.failures] == [0, 3, 6, 9]
    still.write_text("6 9")   # 0 and 3 now succeed; 6 and 9 fail again
    with capture_output():
        ip.run_line_magic("fc_map", "--retry r")
    # The retry ran inputs [0, 3, 6, 9] at positions 0..3; its failures must name the slots
    # of the original map (6 and 9), not their positions in the retry (2 and 3).
    assert [(f.index, f.input_repr, f.message) for f in result.failures] == [
        (6, "6", "bad 6"), (9, "9", "bad 9")]
    assert result.values[6] is result.failures[0] and result.values[9] is result.failures[1]
    assert result.values[:6] == [0, 10, 20, 30, 40, 50] and result.values[7:9] == [70, 80]
    assert [s.index for s in result.stats] == list(range(10))


def test_retry_button_in_the_widget_view(ip, fc, cell, flaky, monkeypatch):
    import re

    fc.view = "widget"
    with capture_output() as first:
        result = ip.run_line_magic("fc_map", "flaky range(7)")
    assert len(result.failures) == 3
    static = [o.data["text/html"] for o in first.outputs if "text/html" in o.data]
    assert len(static) == 1  # the map's static receipt, named by a class of its own
    name = re.search(r"class='fc-magic-receipt (fc-magic-receipt-[0-9a-f]{12})'", static[0])[1]
    button = newest(w.Button, description="Retry 3 failed")
    flaky.write_text("")
    hiding = []  # what the controls row held when the retry's first snapshot was drawn
    original = WidgetMapView.draw

    def draw(view, snapshot):
        hiding.append([x.value for x in live_widgets()
                       if isinstance(x, w.HTML) and f" .{name}{{display:none" in x.value])
        return original(view, snapshot)

    monkeypatch.setattr(WidgetMapView, "draw", draw)
    with capture_output() as shown:
        button.click()
    assert result.ok and result.values == [x * 10 for x in range(7)]
    assert not shown.outputs  # nothing lands elsewhere: the controls' row shows it all
    # Hidden from the start of the retry (not only at its end), and saying so.
    assert hiding and all(len(h) == 1 for h in hiding), hiding
    assert "this panel replaces the map&#x27;s first receipt" in hiding[0][0]
    receipts = [x for x in live_widgets() if isinstance(x, w.HTML)
                and "fc-magic-receipt" in x.value and "7/7 done" in x.value]
    assert receipts and "[ok]" not in receipts[-1].value and ">ok<" in receipts[-1].value
    assert name not in receipts[-1].value  # the merged receipt is not the one hidden


def test_rerun_with_this_memory_replaces_the_map_in_place(ip, fc, cell):
    cell("def square(x):\n    return x * x")
    fc.view = "widget"
    with capture_output():
        result = ip.run_line_magic("fc_map", "square range(5)")
    slider = newest(w.SelectionSlider, description="memory")
    slider.value = 640
    assert fc.memory == 640
    with capture_output():
        newest(w.Button, description="Re-run 5 tasks at 640 MB").click()
    assert result.memory_mb == 640 and result.values == [0, 1, 4, 9, 16]


def test_the_live_bar_turns_its_failed_share_red_while_the_map_runs(ip, fc, cell, monkeypatch):
    import re

    from fc_magic.views import widgets

    states: list[dict] = []  # every value the bar's model took, as the frontend receives them
    original = widgets.StackedBar.__init__

    def recording(self, **kwargs):
        original(self, **kwargs)
        self.observe(lambda change: states.append(
            dict(re.findall(r"data-(\w+)='([^']*)'", change["new"]), html=change["new"])), "value")

    monkeypatch.setattr(widgets.StackedBar, "__init__", recording)
    cell("import time\n"
         "def early_fail(x):\n"
         "    if x < 2:\n"
         "        raise ValueError(f'bad {x}')\n"
         "    time.sleep(0.3)\n"
         "    return x")
    fc.view, fc.workers = "widget", 2
    with capture_output():
        result = ip.run_line_magic("fc_map", "early_fail range(8)")
    assert len(result.failures) == 2
    live = [s for s in states if s["status"] == "running" and s["failed"] == "2"]
    assert live, states  # red before the end, not only in the final frame
    first = live[0]
    assert int(first["done"]) < 6  # drawn while tasks were still to finish
    assert "fc-magic-bar-failed' style='width:25.00%" in first["html"]
    assert "var(--jp-error-color1" in first["html"]  # the theme's red, with a fallback
    assert states[-1]["status"] == "error" and states[-1]["done"] == "6"
    # The terminal line shows the failed share while it runs too.
    from fc_magic.views.text import fit_line

    line = fit_line(MapSnapshot(total=8, done=2, failed=2, running=2, elapsed_s=1.0), 120)
    assert line.startswith("[#####!!!!!.") and "2 failed" in line
