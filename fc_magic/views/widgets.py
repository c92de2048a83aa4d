"""ipywidgets map view: live bar and counts, cancel, then failures, preview, figures.

While the map runs the view is a bar, one HTML status line and a cancel
button: two comm messages per redraw, whatever the task count. When it ends
the bar turns green or red and stays; below it come a collapsible failure
list (input, exception, remote traceback) with "retry failed", a preview of
the first results, histograms of per-task duration and peak memory, the
right-sizing hint and the memory slider. Every part is bounded in size, so a
10,000-task map saves the same few kilobytes as a 10-task one.

Its plain-text form (what `jupyter execute`, nbconvert to text, or a
frontend without the widget manager shows) is the text view's status line:
at the end the display is updated with a bundle carrying both.
"""
from __future__ import annotations

import html
import logging
from typing import Callable

import ipywidgets as w
from IPython.display import display

from .. import pricing
from ..progress import CANCELLED, ERROR, SUCCESS, CancelToken, MapSnapshot
from ..results import short_repr
from .charts import fmt_duration, svg_histogram
from .fallback import TextFallback
from .text import status_line

logger = logging.getLogger(__name__)

_STYLE = {SUCCESS: "success", ERROR: "danger", CANCELLED: "warning"}
#: Bounds on what the final view holds, whatever the map's size.
MAX_FAILURES_SHOWN = 20
PREVIEW_ROWS = 8


def is_click(data) -> bool:
    """Whether a widget comm message is a button click from the frontend."""
    return (isinstance(data, dict) and data.get("method") == "custom"
            and isinstance(data.get("content"), dict)
            and data["content"].get("event") == "click")


def listen_while_busy(widget, on_message: Callable[[dict], None]) -> bool:
    """Let ``on_message`` see the widget's comm messages while the kernel is busy.

    A cell that runs a map keeps the kernel's main thread busy, and the
    kernel handles the widget's messages (a click on "cancel") only after
    the cell ends. ipykernel 7 receives every shell message on a separate
    shell-channel thread and asks the comm there which subshell should handle
    it (``_reply_subshell_for``); wrapping that question lets us see the
    message on that thread, at once, and only set a flag there. The message
    is then delivered as usual. Returns False when the kernel has no such
    thread (the kernel interrupt still cancels; the click then acts late).
    """
    comm = getattr(widget, "comm", None)
    route = getattr(comm, "_reply_subshell_for", None)
    if route is None:
        return False

    def routed(data, default):
        try:
            on_message(data)
        except Exception:  # never break the kernel's message routing
            logger.debug("busy-time widget listener failed", exc_info=True)
        return route(data, default)

    comm._reply_subshell_for = routed
    return True


class WidgetMapView(TextFallback):
    """The live map view; `draw`/`finish` per `MapView`, `show_result` at the end."""

    def __init__(self, display_now: bool = True, *, cancel: CancelToken | None = None):
        self.cancel_token = cancel or CancelToken()
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                 layout=w.Layout(width="30%", flex="0 0 auto"))
        self.label = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning",
                                      tooltip="Stop sending tasks; keep the results that arrived",
                                      layout=w.Layout(width="auto", flex="0 0 auto"))
        self.cancel_button.on_click(lambda _b: self._cancel_clicked())
        self.busy_cancel = listen_while_busy(
            self.cancel_button, lambda data: is_click(data) and self.cancel_token.cancel())
        self.head = w.HBox([self.bar, self.label, self.cancel_button])
        self.details = w.VBox([])
        #: Where actions started from the view (retry, re-run) show their own progress.
        self.actions_out = w.Output()
        self.box = w.VBox([self.head, self.details, self.actions_out])
        self.failures: w.Accordion | None = None
        self.retry_button: w.Button | None = None
        self.slider = None
        self._text = ""
        self._handle = display(self, display_id=True) if display_now else None

    def plain_text(self) -> str:
        return self._text or "fc_map: starting"

    def _cancel_clicked(self) -> None:
        self.cancel_token.cancel()
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling…"

    def draw(self, snapshot: MapSnapshot) -> None:
        total = max(snapshot.total, 1)
        if self.bar.max != total:
            self.bar.max = total
        self.bar.value = snapshot.finished
        self._text = status_line(snapshot)
        if self.cancel_token.cancelled and snapshot.status not in _STYLE:
            self._text += " · cancelling…"
        self.label.value = html.escape(self._text)

    def finish(self, snapshot: MapSnapshot) -> None:
        with self.bar.hold_sync():
            self.draw(snapshot)
            self.bar.bar_style = _STYLE.get(snapshot.status, "")
        self.cancel_button.layout.display = "none"
        if self._handle is not None:
            self._handle.update(self)

    # ------------------------------------------------------------------ the end
    def show_result(self, result, *, on_retry: Callable[[], None] | None = None,
                    memory=None, on_rerun: Callable[[int], None] | None = None) -> None:
        """Fill the panel under the bar from a finished `MapResult` (bounded in size)."""
        parts: list[w.Widget] = []
        failures = result.failures_not_cancelled
        cancelled = len(result.failures) - len(failures)
        if failures or cancelled:
            parts.append(self._failure_panel(result, failures, cancelled, on_retry))
        if result.reducer:
            parts.append(w.HTML(f"<code>{html.escape(result.reduce_summary())}</code>"))
        if result.results:
            parts.append(w.HTML(preview_html(result)))
        figures = figures_html(result)
        if figures:
            parts.append(w.HTML(figures))
        if memory is not None and result.stats:
            from .memory import MemorySlider

            rerun = (lambda mb: self._in_actions(on_rerun, mb)) if on_rerun is not None else None
            self.slider = MemorySlider(memory, memory.value, result=result, on_rerun=rerun)
            parts.append(self.slider.box)
        self.details.children = parts
        from .text import result_summary_lines

        # The plain-text form a saved notebook shows without the widget
        # manager: the final status line and the same few lines as the text view.
        self._text = "\n".join([self._text, *result_summary_lines(result)]).strip()
        if self._handle is not None:
            self._handle.update(self)

    def _failure_panel(self, result, failures, cancelled: int, on_retry) -> w.Widget:
        n = len(failures) + cancelled
        rows = failure_html(failures[:MAX_FAILURES_SHOWN])
        if len(failures) > MAX_FAILURES_SHOWN:
            rows += (f"<div>… {len(failures) - MAX_FAILURES_SHOWN} more in "
                     f"<code>.failures</code></div>")
        if cancelled:
            rows += f"<div>{cancelled} task(s) cancelled before they finished.</div>"
        if on_retry is not None:
            # In the head row, where the cancel button was: visible without
            # opening the list.
            self.retry_button = w.Button(description=f"Retry {n} failed", icon="redo",
                                         button_style="danger",
                                         tooltip="Run only these inputs again; merge in place",
                                         layout=w.Layout(width="auto", flex="0 0 auto"))
            self.retry_button.on_click(lambda _b: self._retry(on_retry))
            self.head.children = [self.bar, self.label, self.retry_button]
        self.failures = w.Accordion(children=[w.HTML(rows)], selected_index=None)
        title = f"{len(failures)} of {len(result)} failed" if failures else f"{cancelled} cancelled"
        if failures and cancelled:
            title += f", {cancelled} cancelled"
        self.failures.set_title(0, title)
        return self.failures

    def _retry(self, on_retry) -> None:
        self.retry_button.disabled = True
        self._in_actions(on_retry)

    def _in_actions(self, action, *args) -> None:
        """Run a follow-up map under this view, its own progress in the output area."""
        with self.actions_out:
            action(*args)


def failure_html(failures) -> str:
    """Each failure as a <details>: task, input and exception; traceback inside."""
    rows = []
    for f in failures:
        head = html.escape(f"#{f.index}  input {f.input_repr}  →  {f.exc_type}: "
                           f"{short_repr(f.message, 120)}")
        tb = html.escape(f.short_traceback()) if f.traceback else "(no remote traceback)"
        rows.append(f"<details><summary><code>{head}</code></summary>"
                    f"<pre style='font-size:11px'>{tb}</pre></details>")
    return "".join(rows)


def preview_html(result, rows: int = PREVIEW_ROWS) -> str:
    """The first results as a compact table of truncated reprs."""
    esc = html.escape
    body = "".join(
        f"<tr><td>{i}</td><td><code>{esc(short_repr(result.inputs[i], 30) if i < len(result.inputs) else '')}"
        f"</code></td><td><code>{esc(short_repr(v, 50))}</code></td></tr>"
        for i, v in enumerate(result.values[:rows]))
    more = (f"<tr><td colspan=3>… {len(result) - rows} more in <code>.values</code></td></tr>"
            if len(result) > rows else "")
    return ("<table style='font-size:12px;border-collapse:collapse;line-height:1.3'>"
            "<tr><th>#</th><th>input</th><th>result</th></tr>"
            f"{body}{more}</table>").replace("<td>", "<td style='padding:0 10px 0 0'>")


def figures_html(result) -> str:
    """Duration and peak-memory histograms plus the right-sizing hint."""
    durations = [s.duration_s for s in result.stats if s.duration_s is not None]
    peaks = [s.peak_memory_mb for s in result.stats if s.peak_memory_mb]
    charts = ""
    if durations:
        charts += svg_histogram(durations, "duration", fmt_duration)
    if peaks:
        charts += svg_histogram(peaks, "peak memory", lambda v: f"{v:.0f} MB", colour="#7b1fa2")
    hint = pricing.sizing_hint(result)
    hint_html = (f"<div style='font-size:12px'><b>Memory:</b> {html.escape(hint.describe())}</div>"
                 if hint is not None else "")
    return (f"<div>{charts}</div>" if charts else "") + hint_html
