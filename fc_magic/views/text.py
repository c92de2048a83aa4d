"""Text map view: one line redrawn in place on a TTY, a few lines in a log.

Used by terminal IPython, `jupyter execute` without a widget frontend, and
CI logs. The line format is shared with the widget's label and its
plain-text fallback, so every frontend says the same thing.
"""
from __future__ import annotations

import shutil
from typing import Callable, TextIO

from ..progress import CANCELLED, ERROR, RUNNING, SUCCESS, MapSnapshot

_BAR_WIDTH = 20


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def fmt_rate(finished: int, elapsed_s: float | None) -> str | None:
    """'24 tasks/s', '3.5 tasks/min' or '12m30s/task': readable for fast and slow tasks."""
    if not finished or not elapsed_s or elapsed_s <= 0:
        return None
    per_s = finished / elapsed_s
    if per_s >= 10:
        return f"{per_s:.0f} tasks/s"
    if per_s >= 1:
        return f"{per_s:.1f} tasks/s"
    per_min = per_s * 60
    if per_min >= 1:
        return f"{per_min:.1f} tasks/min"
    return f"{fmt_seconds(elapsed_s / finished)}/task"


def status_line(s: MapSnapshot) -> str:
    """The one-line description every view shows, e.g. '120/200 done · 3 failed · …'."""
    parts = [f"{s.done}/{s.total} done"]
    if s.failed:
        parts.append(f"{s.failed} failed")
    if s.status == CANCELLED:
        parts.append(f"{s.total - s.finished} cancelled")
    else:
        if s.running:
            parts.append(f"{s.running} running")
        if s.status == RUNNING and s.pending:
            parts.append(f"{s.pending} pending")
    parts.append(fmt_seconds(s.elapsed_s))
    rate = fmt_rate(s.finished, s.elapsed_s)
    if rate:
        parts.append(rate)
    if s.eta_s is not None and s.finished < s.total:
        parts.append(f"ETA {fmt_seconds(s.eta_s)}")
    if s.where and s.status == RUNNING:  # the receipt says it once the map ends
        parts.append(f"on {s.where}")
    verdict = {SUCCESS: "ok", ERROR: "FAILED", CANCELLED: "CANCELLED"}.get(s.status)
    head = f"{s.label}: " if s.label else ""
    return head + " · ".join(parts) + (f" [{verdict}]" if verdict else "")


def text_bar(s: MapSnapshot, width: int = _BAR_WIDTH) -> str:
    """'[#######!!.....]': done share, then the failed share as '!' (one cell at least)."""
    if not s.total:
        return "[" + "#" * width + "]"
    filled = int(width * s.finished / s.total)
    failed = min(max(int(width * s.failed / s.total), 1 if s.failed else 0), width)
    filled = max(filled, failed)
    return "[" + "#" * (filled - failed) + "!" * failed + "." * (width - filled) + "]"


def fit_line(s: MapSnapshot, columns: int) -> str:
    """Bar and status line in fewer than ``columns`` characters, as tqdm fits its bar.

    A line as wide as the terminal wraps, and each redraw then leaves a new
    line behind. The bar shrinks first (down to 6 cells), then goes; a status
    line still too long is cut at the end with "…".
    """
    room = max(columns - 1, 10)
    status = status_line(s)
    bar_width = min(_BAR_WIDTH, room - len(status) - 3)
    if bar_width >= 6:
        return f"{text_bar(s, bar_width)} {status}"
    return status if len(status) <= room else status[:room - 1] + "…"


def terminal_columns() -> int:
    return shutil.get_terminal_size(fallback=(80, 24)).columns


class TextMapView:
    """Writes progress to a stream; in place on a TTY (fitted to its width), sparse lines otherwise."""

    #: Without a TTY, at most one progress line per this many seconds of map time.
    log_every_s = 10.0

    def __init__(self, stream: TextIO, tty: bool | None = None,
                 columns: Callable[[], int] = terminal_columns):
        self.stream = stream
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self._columns = columns
        self._last_logged: float | None = None

    def _line(self, snapshot: MapSnapshot) -> str:
        if self.tty:  # read each time: the user may resize the terminal
            return fit_line(snapshot, self._columns())
        return f"{text_bar(snapshot)} {status_line(snapshot)}"

    def draw(self, snapshot: MapSnapshot) -> None:
        line = self._line(snapshot)
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            if self._last_logged is not None and snapshot.elapsed_s - self._last_logged < self.log_every_s:
                return
            self._last_logged = snapshot.elapsed_s
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, snapshot: MapSnapshot) -> None:
        line = self._line(snapshot)
        self.stream.write(("\r" + line + "\x1b[K\n") if self.tty else line + "\n")
        self.stream.flush()

    def show_result(self, result, **_actions) -> None:
        """A few summary lines after the bar: failures, then the sizing hint."""
        lines = result_summary_lines(result)
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


def result_summary_lines(result) -> list[str]:
    """What a map's text view says after its final line (bounded, whatever the size)."""
    from .. import pricing

    lines: list[str] = []
    if getattr(result, "reducer", ""):
        lines.append(result.reduce_summary())
    real = result.failures_not_cancelled
    if real:
        lines.extend(failure_report(result).splitlines())
        lines.append("retry only those inputs: %fc_map --retry NAME (NAME holds this MapResult)")
    hint = pricing.sizing_hint(result)
    if hint is not None and hint.worth_saying:
        lines.append(hint.describe())
    return lines


def failure_report(result) -> str:
    """'3 of 100 tasks failed' and the first failure's remote traceback, short."""
    from .receipt import message_text, traceback_text

    failures = result.failures_not_cancelled or result.failures
    first = failures[0]
    lines = [f"{len(failures)} of {len(result)} tasks failed "
             f"(the other results are kept; see .failures).",
             f"First failure: task #{first.index}, input {first.input_repr}: "
             f"{first.exc_type}: {message_text(first.message)}"]
    if first.request_id:
        lines.append(f"FC request id {first.request_id}")
    if first.traceback:
        lines.append(traceback_text(first))
    if result.logs:
        lines.append(result.logs)
    return "\n".join(lines)


def memory_line(memory_mb: int, last_map=None, cpu: float | None = None) -> str:
    """The memory slider as one line: size, vCPU (chosen or FC's least), last map's cost."""
    from .. import pricing

    chosen = pricing.fitting_cpu(cpu, memory_mb)
    line = f"FC memory: {memory_mb} MB, {pricing.vcpu_for_memory(memory_mb, chosen):.2f} vCPU"
    if last_map is not None and last_map.stats:
        est = pricing.estimate_result(last_map, memory_mb, chosen)
        line += (f"; last map ({est.tasks} invocations) at this size ≈ "
                 f"{pricing.fmt_usd(est.usd)} ({pricing.fmt_cu(est.cu)} CU, estimate")
        said = pricing.assumptions(last_map)
        if memory_mb != last_map.memory_mb:
            said.insert(0, pricing.SAME_DURATIONS)
        line += "; " + "; ".join(said) + ")" if said else ")"
    return line
