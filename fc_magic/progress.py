"""Map progress as plain data, and the throttle between a map and its view.

The engine produces a `MapSnapshot` whenever it polls; `ProgressReporter`
decides whether and when a view sees it (dask's and tqdm's split): nothing is
drawn before `progress_after` seconds, then at most one redraw per `interval`,
so the redraw cost is fixed whatever the task count. The clock is injectable
so tests can fake time.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

RUNNING, SUCCESS, ERROR, CANCELLED = "running", "success", "error", "cancelled"


@dataclass(frozen=True)
class MapSnapshot:
    """The state of a map at one instant. Views render nothing else."""

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    elapsed_s: float = 0.0
    status: str = RUNNING
    label: str = ""

    @property
    def pending(self) -> int:
        return max(self.total - self.done - self.failed - self.running, 0)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def rate(self) -> float | None:
        """Tasks finished per second so far, None before the first one."""
        if not self.finished or self.elapsed_s <= 0:
            return None
        return self.finished / self.elapsed_s

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        if rate is None or self.status != RUNNING:
            return None
        return (self.total - self.finished) / rate

    @property
    def final(self) -> bool:
        return self.status != RUNNING


class MapView(Protocol):
    """What every map view implements: the widget and the text line alike."""

    def draw(self, snapshot: MapSnapshot) -> None: ...

    def finish(self, snapshot: MapSnapshot) -> None: ...

    def show_result(self, result, *, on_retry=None, memory=None, on_rerun=None) -> None:
        """What the map left: failures (with retry), preview, figures, hint, memory slider."""


class CancelToken:
    """A cancel request shared by a view (any thread) and the map's poll loop.

    The widget's cancel button may be clicked on a kernel thread other than
    the one running the map, so the request is a `threading.Event`; the engine
    only asks `token()` (it is its ``should_cancel``) between polls.
    """

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()


#: Seconds between redraws. A widget redraw is two comm messages (the bar and
#: one HTML line), so 0.25 s keeps a map at or below 8 messages per second.
DEFAULT_INTERVAL = 0.25


class ProgressReporter:
    """Feeds snapshots to a view lazily (after a delay) and at a bounded rate.

    Any snapshot with ``.final`` and ``.status`` will do: maps use it with
    `MapSnapshot`, runtime builds with `BuildSnapshot` (no delay, no rate
    limit, and a quick success still shown: a cache hit says so).
    """

    def __init__(self, make_view: Callable[[], MapView], *, progress_after: float = 1.0,
                 interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic,
                 show_quick_result: bool = True, show_quick_success: bool = False):
        self._make_view = make_view
        self.progress_after = progress_after
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._last_draw: float | None = None
        self.view: MapView | None = None
        self.draws = 0
        # A map that ends before progress_after still gets its final state
        # drawn once when it failed, so a red result is never silent.
        self.show_quick_result = show_quick_result
        self.show_quick_success = show_quick_success

    def __call__(self, snapshot: MapSnapshot) -> None:
        """The engine's ``on_snapshot`` hook: final snapshots end the view."""
        (self.finish if snapshot.final else self.update)(snapshot)

    def show_now(self) -> MapView:
        """Make the view at once (a background map's is displayed from its own cell)."""
        return self._ensure_view()

    def _ensure_view(self) -> MapView:
        if self.view is None:
            self.view = self._make_view()
        return self.view

    def update(self, snapshot: MapSnapshot) -> None:
        now = self._clock()
        if now - self._started < self.progress_after:
            return
        if self._last_draw is not None and now - self._last_draw < self.interval:
            return
        self._ensure_view().draw(snapshot)
        self._last_draw = now
        self.draws += 1

    def finish(self, snapshot: MapSnapshot) -> None:
        quick_shown = self.show_quick_success or (self.show_quick_result
                                                  and snapshot.status != SUCCESS)
        if self.view is None and not quick_shown:
            return
        self._ensure_view().finish(snapshot)
        self.draws += 1
