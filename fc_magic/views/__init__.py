"""Views of a map: an ipywidgets panel in a kernel, text lines elsewhere.

Both implement `fc_magic.progress.MapView` (`draw`/`finish`) plus
`show_result`, and are fed `MapSnapshot`s and the final `MapResult` only;
nothing here calls Lithops. ipywidgets is imported only when a widget view
is asked for, so terminal IPython never pays for it. `MapDisplay` is the one
object a magic needs per map: throttle, cancel token, final panel.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from ..progress import DEFAULT_INTERVAL, CancelToken, MapView, ProgressReporter
from ..setting import Setting


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def choose_view_kind(shell, preference: str = "auto") -> str:
    """'widget' when the shell has a kernel (a frontend may render it), else 'text'."""
    if preference in ("widget", "text"):
        return preference
    has_kernel = getattr(shell, "kernel", None) is not None
    return "widget" if has_kernel and widgets_available() else "text"


def make_map_view(kind: str, *, stream: TextIO | None = None,
                  cancel: CancelToken | None = None, stage=None, where: str = "",
                  in_own_cell: Callable[[], bool] | None = None) -> MapView:
    if kind == "widget":
        from .widgets import WidgetMapView
        return WidgetMapView(cancel=cancel, stage=stage, where=where, in_own_cell=in_own_cell)
    from .text import TextMapView
    return TextMapView(stream or sys.stdout)


def show_note(text: str, stream: TextIO | None = None) -> None:
    """One line shown before a map starts (e.g. where its credentials come from)."""
    print(text, file=stream or sys.stdout)


class MapDisplay:
    """Everything one map shows: the lazy, throttled view, its cancel, its end.

    Pass `on_snapshot` and `should_cancel` to `engine.run_map`, then call
    `show_result` with what it returned. ``stage``: the widget box a run
    started from a control draws in (its live row at once, then its receipt).
    ``background``: the map runs in a thread (`fc_magic.background`);
    ``in_own_cell()`` says whether the cell that started it still runs.
    """

    def __init__(self, kind: str, *, progress_after: float = 1.0, quiet: bool = False,
                 stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 make_view: Callable[[], MapView] | None = None, stage=None, where: str = "",
                 background: bool = False, in_own_cell: Callable[[], bool] | None = None):
        self.cancel = CancelToken()
        self.kind, self.background = kind, background
        if background and in_own_cell is None:
            in_own_cell = lambda: False  # noqa: E731 - ended after its cell: widget state only
        make = make_view or (lambda: make_map_view(
            kind, stream=stream, cancel=self.cancel, stage=stage, where=where,
            in_own_cell=in_own_cell if background else None))
        staged = stage is not None and kind == "widget"
        if background and kind != "widget":
            # Updated from a thread while the user types: a text line redrawn
            # under the prompt would garble it, so only the final line is printed.
            progress_after = float("inf")
        elif background or staged:
            progress_after = 0.0
        self.reporter = None if quiet and not staged else ProgressReporter(
            make, progress_after=progress_after, interval=interval, clock=clock,
            show_quick_success=staged or background)
        if background and kind == "widget" and self.reporter is not None:
            # Displayed now, from the main thread, so it lands in the map's own cell.
            self.reporter.show_now()

    @property
    def on_snapshot(self):
        return self.reporter

    @property
    def should_cancel(self) -> CancelToken:
        return self.cancel

    @property
    def view(self) -> MapView | None:
        return self.reporter.view if self.reporter is not None else None

    def show_result(self, result, **actions) -> None:
        """The final panel: failures (with retry), preview, figures, hint, slider."""
        if self.background and self.kind != "widget":
            return  # from a thread, under the prompt: the final line says enough
        if self.view is not None:  # None: quiet, or a quick success that needed no view
            self.view.show_result(result, **actions)

    def cancelling(self) -> None:
        """Show at once that a cancel was asked for (a background map's r.cancel())."""
        self.cancel.cancel()
        view = self.view
        if view is not None and hasattr(view, "_cancel_clicked"):
            view._cancel_clicked()


def memory_slider(memory: Setting, value: int | None = None, *, result=None,
                  on_change: Callable[[int], None] | None = None,
                  on_rerun: Callable[..., None] | None = None, display_now: bool = True,
                  cpu: Setting | None = None):
    """Show FC's memory sizes as a slider bound to the ``memory`` setting (or ``on_change``).

    ``value`` is where it starts (default: the setting's). The cost line
    estimates ``result`` at the chosen size. Returns the `MemorySlider`.
    """
    from IPython.display import display

    from .memory import MemorySlider

    slider = MemorySlider(memory, value, result=result, on_change=on_change, on_rerun=on_rerun,
                          cpu=cpu)
    if display_now:
        display(slider)
    return slider


def show_memory(memory: Setting, kind: str, *, last_map=None, on_rerun=None,
                stream: TextIO | None = None, cpu: Setting | None = None):
    """`%fc_memory`: the slider in a widget frontend, one line of text elsewhere."""
    if kind == "widget":
        return memory_slider(memory, result=last_map, on_rerun=on_rerun, cpu=cpu)
    from .text import memory_line

    (stream or sys.stdout).write(memory_line(memory.value, last_map,
                                             cpu.value if cpu is not None else None) + "\n")
    return None
