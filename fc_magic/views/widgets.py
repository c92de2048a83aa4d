"""ipywidgets map view: a live row while the map runs, a static receipt when it ends.

While the map runs the view is one row: a bar, one HTML status line and a
cancel button; two comm messages per redraw, whatever the task count. When
it ends, the row's display is replaced by the static receipt
(`views.receipt`: HTML + text, no widget), so a saved or shared notebook
keeps the record with no kernel. The live controls ("Retry N failed", the
memory slider and its re-run) come after it as one compact widget row; they
act only while the kernel is alive and the receipt does not need them.

A run started from a control (retry, re-run) is drawn inside that controls
row: its live row (cancellable) replaces the buttons, then its receipt and
fresh controls take its place. That is widget state, so it updates in place
even though the cell that showed the map has long finished (a frontend
routes display updates only to the cell still executing). The static receipt
above cannot be updated from there, so once such a run starts the controls
row hides it (a ``<style>`` naming the receipt's own class, `receipt_class`)
and becomes the map's one panel; the notebook file keeps that first receipt.
"""
from __future__ import annotations

import html
import logging
import secrets
from typing import Callable

import ipywidgets as w
from IPython.display import display

from ..progress import CANCELLED, ERROR, RUNNING, SUCCESS, CancelToken, MapSnapshot
from .bar import bar_html
from .fallback import TextFallback
from .receipt import MUTED, Receipt, receipt_class, receipt_html
from .text import status_line

logger = logging.getLogger(__name__)

_ENDED = (SUCCESS, ERROR, CANCELLED)


class StackedBar(w.HTML):
    """The live row's bar: done share, then the failed share in red, redrawn as it changes.

    One HTML model, so a redraw is still one comm message; ``done``,
    ``failed``, ``total`` and ``status`` say what it shows (`views.bar`).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.done = self.failed = 0
        self.total = 1
        self.status = RUNNING
        self.value = bar_html(0, 0, 1)

    def show(self, done: int, failed: int, total: int, status: str = RUNNING) -> None:
        self.done, self.failed, self.total, self.status = done, failed, max(total, 1), status
        self.value = bar_html(done, failed, self.total, status)


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
    """The live map row; `draw`/`finish` per `MapView`, `show_result` at the end.

    ``stage``: a widget box to draw into instead of a new display (a run
    started from a control draws where that control was).
    """

    def __init__(self, display_now: bool = True, *, cancel: CancelToken | None = None,
                 stage: w.Box | None = None, where: str = "",
                 in_own_cell: Callable[[], bool] | None = None):
        self.cancel_token = cancel or CancelToken()
        self.where = where
        self.bar = StackedBar(layout=w.Layout(width="30%", flex="0 0 auto"))
        self.label = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning",
                                      tooltip="Stop sending tasks; keep the results that arrived",
                                      layout=w.Layout(width="auto", flex="0 0 auto"))
        self.cancel_button.on_click(lambda _b: self._cancel_clicked())
        self.busy_cancel = listen_while_busy(
            self.cancel_button, lambda data: is_click(data) and self.cancel_token.cancel())
        self.box = w.HBox([self.bar, self.label, self.cancel_button])
        self.stage = stage
        self.controls: MapControls | None = None
        self.receipt: Receipt | None = None
        self._text = ""
        self._handle = None
        self._shown = self
        #: A background map's: whether the cell that started it is still running.
        self._in_own_cell = in_own_cell
        if in_own_cell is not None:
            # A background map ends from a thread, usually after its cell has
            # finished, when only widget state still reaches the page: its row
            # sits in a box of its own that the receipt can replace later.
            self.stage = stage = w.VBox([self.box])
            self._shown = _Staged(stage, self.plain_text)
            self._handle = display(self._shown, display_id=True)
        elif stage is not None:
            stage.children = [self.box]
        elif display_now:
            self._handle = display(self, display_id=True)

    def plain_text(self) -> str:
        return self._text or "fc_map: starting"

    def _cancel_clicked(self) -> None:
        self.cancel_token.cancel()
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling…"

    def draw(self, snapshot: MapSnapshot) -> None:
        # The failed share turns red as failures arrive, not only at the end.
        self.bar.show(snapshot.done, snapshot.failed, snapshot.total,
                      snapshot.status if snapshot.status in _ENDED else RUNNING)
        self._text = status_line(snapshot)
        if self.where and not snapshot.final and not snapshot.where:
            self._text += f" · on {self.where}"
        if self.cancel_token.cancelled and snapshot.status not in _ENDED:
            self._text += " · cancelling…"
        self.label.value = html.escape(self._text)

    def finish(self, snapshot: MapSnapshot) -> None:
        self.draw(snapshot)
        self.cancel_button.layout.display = "none"
        if self._handle is not None:
            self._handle.update(self._shown)

    # ------------------------------------------------------------------ the end
    def show_result(self, result, *, on_retry: Callable[[w.Box], None] | None = None,
                    memory=None, on_rerun: Callable[[int, w.Box], None] | None = None,
                    cpu=None) -> None:
        """Replace the live row by the static receipt, then the live controls (if any)."""
        # A per-map class on the static receipt, so its controls can hide it later.
        self.receipt = Receipt(result, key=secrets.token_hex(6))
        self._text = self.receipt._repr_mimebundle_()["text/plain"]
        actions = MapControls.wanted(result, on_retry, memory, on_rerun)
        # A background map that ends while its own cell still runs gets the
        # static receipt like a foreground one; later, only widget state reaches
        # the page, so its box shows the same receipt HTML.
        staged = self.stage is not None and (self._in_own_cell is None
                                             or not self._in_own_cell())
        if staged:
            self.controls = MapControls(result, on_retry=on_retry, memory=memory,
                                        on_rerun=on_rerun, cpu=cpu) if actions else None
            self.stage.children = [w.HTML(receipt_html(result)),
                                   *(self.controls.box.children if self.controls else ())]
            if self.controls is not None:
                self.controls.box = self.stage  # later runs from these controls draw here
        else:
            if self._handle is not None:
                self._handle.update(self.receipt)
            else:
                display(self.receipt)
            if actions:
                self.controls = MapControls(result, on_retry=on_retry, memory=memory,
                                            on_rerun=on_rerun, cpu=cpu,
                                            replaces=self.receipt.key)
                display(self.controls)
        self._close_live_row()

    def _close_live_row(self) -> None:
        """The live row is gone from the page; its models need not stay in the kernel or notebook."""
        for widget in (self.bar, self.label, self.cancel_button, self.box):
            widget.close()


class _Staged(TextFallback):
    """A background map's box as displayed: its widgets, and the view's text as text/plain."""

    def __init__(self, box: w.Box, text: Callable[[], str]):
        self.box, self._text = box, text

    def plain_text(self) -> str:
        return self._text()


class MapControls(TextFallback):
    """What a finished map offers while the kernel lives: retry, the memory slider, re-run.

    One compact row ("Retry 7 failed", "Memory…"); the slider opens below it.
    A run started here draws its live row in this box, then its receipt.
    ``replaces``: the key of the static receipt shown above (`receipt_class`);
    when a run starts here, that receipt is hidden and this row, headed by a
    line saying so, stands in for it: one panel, updated in place.
    """

    #: Heads the controls row once it stands in for the static receipt above it.
    STANDS_IN = ("Updated in place from its controls while the kernel runs: this panel replaces "
                 "the map's first receipt; the notebook file keeps that receipt as its "
                 "kernel-free record.")

    @staticmethod
    def wanted(result, on_retry, memory, on_rerun) -> bool:
        return bool((on_retry is not None and result.failures)
                    or (memory is not None and result.stats))

    def __init__(self, result, *, on_retry=None, memory=None, on_rerun=None, cpu=None,
                 replaces: str | None = None):
        from .memory import MemorySlider

        self.result = result
        self.replaces = replaces
        self.retry_button: w.Button | None = None
        self.memory_button: w.Button | None = None
        self.slider: MemorySlider | None = None
        self.message = w.HTML()
        row: list[w.Widget] = []
        failed = len(result.failures_not_cancelled)
        cancelled = len(result.failures) - failed
        if on_retry is not None and result.failures:
            # After a cancel, say what the button really does: run the
            # cancelled tasks, which never failed.
            text = (f"Retry {failed} failed" if failed and not cancelled else
                    f"Re-run {cancelled} cancelled" if not failed else
                    f"Retry {failed} failed + {cancelled} cancelled")
            self.retry_button = w.Button(
                description=text, icon="redo", button_style="danger" if failed else "warning",
                tooltip="Run only these inputs again and merge the outcomes in place",
                layout=w.Layout(width="auto"))
            self.retry_button.on_click(lambda _b: self._act(on_retry))
            row.append(self.retry_button)
        parts: list[w.Widget] = []
        if memory is not None and result.stats:
            rerun = (lambda mb, _stage: self._act(on_rerun, mb)) if on_rerun is not None else None
            self.slider = MemorySlider(memory, result.memory_mb or memory.value, result=result,
                                       on_rerun=rerun, follow=False, cpu=cpu)
            self.slider.box.layout.display = "none"
            self.memory_button = w.Button(description="Memory…", icon="sliders",
                                          tooltip="Cost at other memory sizes; re-run at one",
                                          layout=w.Layout(width="auto"))
            self.memory_button.on_click(lambda _b: self._toggle_memory())
            row.append(self.memory_button)
            parts.append(self.slider.box)
        self.box = w.VBox([w.HBox(row), *parts, self.message])
        # Runs started here redraw self.box; the style that hides the receipt
        # above sits outside it, so it lasts through every later run here.
        self.stand_in = w.HTML() if replaces else None
        self.panel = w.VBox([self.stand_in, self.box]) if replaces else self.box

    def plain_text(self) -> str:
        return ""  # the receipt above is the record; these are live only

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.panel._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.plain_text()
        return bundle

    def stand_in_html(self) -> str:
        """Hides the receipt above and its output row, in this cell only; says so.

        Scoped to the cell that holds this row (JupyterLab's and Notebook 7's
        ``.jp-Cell``, CSS ``:has``): a copy of the notebook open next to it
        carries the same receipt class and must keep showing its receipt.
        """
        name = receipt_class(self.replaces)
        here = f".jp-Cell:has(.{name}-stand-in)"
        return (f"<style>{here} .{name}{{display:none !important}}"
                f"{here} .jp-OutputArea-child:has(.{name}){{display:none}}</style>"
                f"<div class='{name}-stand-in' style='font-size:11px;color:{MUTED}'>"
                f"{html.escape(self.STANDS_IN)}</div>")

    def _toggle_memory(self) -> None:
        box = self.slider.box
        box.layout.display = None if box.layout.display == "none" else "none"

    def _act(self, action, *args) -> None:
        """Run a follow-up map here: its live row replaces these controls, then its receipt."""
        for button in (self.retry_button, self.memory_button):
            if button is not None:
                button.disabled = True
        # The static receipt above goes before the live row appears, not after the run.
        hid = self.stand_in is not None and not self.stand_in.value
        if hid:
            self.stand_in.value = self.stand_in_html()
        try:
            action(*args, self.box)
        except Exception as exc:  # shown where the user clicked, not in the log console
            logger.debug("action from the map controls failed", exc_info=True)
            if hid:  # nothing merged: the receipt above is still the map's state
                self.stand_in.value = ""
            self.message.value = (f"<span style='color:var(--jp-error-color1, #c62828)'>"
                                  f"{html.escape(f'{type(exc).__name__}: {exc}')}</span>")
            if self.message not in self.box.children:
                self.box.children = (*self.box.children, self.message)
            for button in (self.retry_button, self.memory_button):
                if button is not None:
                    button.disabled = False
