"""Progress views fed scripted snapshots and a fake clock; no browser, no Lithops."""
from __future__ import annotations

import io

import pytest

from fc_magic.progress import CANCELLED, ERROR, RUNNING, SUCCESS, MapSnapshot, ProgressReporter
from fc_magic.views.text import TextMapView, status_line


class CountingView:
    def __init__(self):
        self.draws, self.finished = [], None

    def draw(self, snapshot):
        self.draws.append(snapshot)

    def finish(self, snapshot):
        self.finished = snapshot


def test_snapshot_derived_figures():
    s = MapSnapshot(total=100, done=40, failed=10, running=8, elapsed_s=5.0)
    assert s.pending == 42 and s.finished == 50
    assert s.rate == 10.0 and s.eta_s == 5.0
    assert MapSnapshot(total=3).rate is None


def test_reporter_waits_then_redraws_at_a_fixed_rate_whatever_the_task_count(clock):
    views = []
    reporter = ProgressReporter(lambda: views.append(CountingView()) or views[-1],
                                progress_after=1.0, interval=0.2, clock=clock)
    for i in range(10_000):  # 10,000 updates over 5 simulated seconds
        clock.now = i * 0.0005
        reporter(MapSnapshot(total=10_000, done=i, elapsed_s=clock.now))
    assert len(views) == 1
    draws = len(views[0].draws)
    assert 15 <= draws <= 21  # (5 s - 1 s) / 0.2 s, not one per update
    reporter(MapSnapshot(total=10_000, done=10_000, elapsed_s=5.0, status=SUCCESS))
    assert views[0].finished.status == SUCCESS


def test_reporter_counts_its_draws_and_waits_from_its_own_start(clock):
    clock.now = 1000.0          # a monotonic clock does not start at zero
    views = []
    reporter = ProgressReporter(lambda: views.append(CountingView()) or views[-1],
                                progress_after=1.0, interval=0.2, clock=clock)
    assert reporter.draws == 0 and reporter.view is None
    clock.now = 1000.5
    reporter(MapSnapshot(total=5, done=1))
    assert reporter.draws == 0 and views == []          # still inside progress_after
    clock.now = 1001.0
    reporter(MapSnapshot(total=5, done=2))
    clock.now = 1001.1
    reporter(MapSnapshot(total=5, done=3))               # inside the redraw interval
    assert reporter.draws == 1 and len(views[0].draws) == 1
    clock.now = 1001.3
    reporter(MapSnapshot(total=5, done=4))
    reporter(MapSnapshot(total=5, done=5, status=SUCCESS))
    assert reporter.draws == 3 and views[0].finished.done == 5


def test_quick_success_draws_nothing_but_quick_failure_is_shown(clock):
    made = []
    reporter = ProgressReporter(lambda: made.append(CountingView()) or made[-1],
                                progress_after=1.0, clock=clock)
    reporter(MapSnapshot(total=3, done=1))
    reporter(MapSnapshot(total=3, done=3, status=SUCCESS))
    assert made == []
    reporter = ProgressReporter(lambda: made.append(CountingView()) or made[-1],
                                progress_after=1.0, clock=clock)
    reporter(MapSnapshot(total=3, done=2, failed=1, status=ERROR))
    assert made and made[0].finished.status == ERROR


def test_text_view_tty_redraws_in_place():
    stream = io.StringIO()
    view = TextMapView(stream, tty=True)
    view.draw(MapSnapshot(total=10, done=3, running=2, elapsed_s=1.0, label="f"))
    view.finish(MapSnapshot(total=10, done=9, failed=1, elapsed_s=2.0, status=ERROR, label="f"))
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "f: 9/10 done · 1 failed" in text and "[FAILED]" in text


def test_text_view_without_tty_writes_few_lines():
    stream = io.StringIO()
    view = TextMapView(stream, tty=False)
    for i in range(1000):
        view.draw(MapSnapshot(total=1000, done=i, elapsed_s=i * 0.03))
    view.finish(MapSnapshot(total=1000, done=1000, elapsed_s=30.0, status=SUCCESS))
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= 5
    assert lines[-1].endswith("[ok]")


def test_status_line_cancelled():
    line = status_line(MapSnapshot(total=10, done=4, elapsed_s=1, status=CANCELLED))
    assert "4/10 done" in line and "6 cancelled" in line and "[CANCELLED]" in line


@pytest.mark.parametrize("status", [SUCCESS, ERROR])
def test_widget_view_ends_green_or_red(status):
    from fc_magic.views.widgets import WidgetMapView

    view = WidgetMapView(display_now=False)
    view.draw(MapSnapshot(total=4, done=2, running=2, elapsed_s=0.5, status=RUNNING))
    assert (view.bar.done, view.bar.total, view.bar.status) == (2, 4, RUNNING)
    failed = 1 if status == ERROR else 0
    final = MapSnapshot(total=4, done=4 - failed, failed=failed, elapsed_s=1, status=status)
    view.finish(final)
    assert view.bar.done + view.bar.failed == 4 and view.bar.status == status
    assert ("fc-magic-bar-failed' style='width:25.00%" in view.bar.value) == bool(failed)
    assert ("1 failed" in view.label.value) == bool(failed)
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    # A frontend without the widget manager reads exactly the text view's final line.
    assert bundle["text/plain"] == status_line(final)
    assert bundle["text/plain"].startswith(f"{4 - failed}/4 done")
    assert bundle["text/plain"].endswith("[ok]" if status == SUCCESS else "[FAILED]")


def test_view_kind_follows_the_shell(ip):
    from fc_magic.views import choose_view_kind

    assert choose_view_kind(ip) == "text"  # a terminal-style shell has no kernel

    class KernelShell:
        kernel = object()

    assert choose_view_kind(KernelShell()) == "widget"
    assert choose_view_kind(KernelShell(), "text") == "text"
