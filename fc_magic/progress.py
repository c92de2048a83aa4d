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
    #: Seconds left as `EtaSmoother` estimates them (None: use the average rate).
    smoothed_eta_s: float | None = None
    #: Where the map runs, in a few words (the backend's description).
    where: str = ""

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
        if self.status != RUNNING:
            return None
        if self.smoothed_eta_s is not None:
            return self.smoothed_eta_s
        rate = self.rate
        return None if rate is None else (self.total - self.finished) / rate

    @property
    def final(self) -> bool:
        return self.status != RUNNING


class EtaSmoother:
    """Seconds left in a map, from its recent rate rather than its average since the start.

    The average since the start counts the time before any task ran (executor
    start, upload, cold starts), so the first ETA would be far too long: with
    4 workers, 2 s tasks and 3 s to start, the average says 20 s left after the
    first batch when 8 s is right. Here the first rate is the tasks that ran at
    once over how long the first ones took since work began (Little's law);
    later completions update it as tqdm does, an exponential moving average of
    tasks finished and of the time they took (``smoothing`` weighs the newest).
    """

    def __init__(self, smoothing: float = 0.3):
        self.smoothing = smoothing
        self._began: float | None = None     # when tasks were first seen running
        self._last_seen = 0.0                # the previous update's time
        self._workers = 0                    # most tasks seen running at once
        self._last_finished = 0
        self._last_time: float | None = None
        self._tasks: float | None = None     # smoothed tasks per completion event
        self._seconds: float | None = None   # smoothed seconds per completion event

    def update(self, elapsed_s: float, finished: int, running: int, total: int) -> float | None:
        """Seconds left after this poll (None until a task finished)."""
        if self._began is None and (running or finished):
            # Work began after the previous update, which saw none: count from
            # there (at most one poll early, so never optimistic).
            self._began = self._last_seen
        self._last_seen = elapsed_s
        self._workers = max(self._workers, running)
        new = finished - self._last_finished
        if new > 0:
            if self._tasks is None:
                self._tasks = float(max(self._workers, finished))
                self._seconds = max(elapsed_s - (self._began or 0.0), 1e-9)
            else:
                a = self.smoothing
                self._tasks = a * new + (1 - a) * self._tasks
                self._seconds = a * (elapsed_s - self._last_time) + (1 - a) * self._seconds
            self._last_finished, self._last_time = finished, elapsed_s
        if self._tasks is None:
            return None
        # Counted down between completions, so the line does not stand still.
        left = (total - finished) * self._seconds / self._tasks
        return max(left - (elapsed_s - self._last_time), 0.0)


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
