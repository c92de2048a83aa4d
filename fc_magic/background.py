"""Background maps: the map loop in a thread, its `MapResult` filling in as tasks finish.

`start` returns at once a `MapResult` whose slots hold `PENDING` until their
task settles; the loop (`engine.run_map`) runs in a daemon thread, so the
kernel's main thread stays free for other cells and a kernel interrupt
(SIGINT, main thread only) never reaches it. It stops on `cancel()` (the
view's button, `r.cancel()`) or when the process ends: `cancel_all` runs at
interpreter exit and when the extension is unloaded, and waits for each map
to stop its calls, kill its tasks' processes and delete its job data.

Lithops arms ``signal.alarm`` when given a ``timeout=`` to wait on, which only
works in the main thread; the loop never passes one (it polls with
``return_when=ALWAYS``), so it is safe here.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from typing import Any, Callable

from .backends.request import MapRequest
from .engine import run_map
from .progress import MapSnapshot
from .results import PENDING, MapResult, TaskStats

logger = logging.getLogger(__name__)

#: Seconds between polls: slower than a foreground map's 0.1 s, so the thread
#: holds the GIL less often while the user works (bench/background.py). Each
#: poll walks every unsettled future in Python; the row redraws once a second.
POLL_INTERVAL_S = 1.0
#: Lithops' job monitor (a thread in this process) lists every status object
#: and walks every future each round: every `monitoring_interval` / 5 while
#: calls finish (0.4 s by default). A background map's monitor runs at a
#: fifth of that rate; the map learns of its last results at most a second later.
MONITORING_INTERVAL_S = 5
#: Seconds `cancel_all` waits for each map to tidy up when the process ends.
EXIT_GRACE_S = 20.0

_LOCK = threading.Lock()
_RUNNING: set[BackgroundMap] = set()


class BackgroundMap:
    """One map running in a thread; the runner behind a background `MapResult`."""

    def __init__(self, func: Callable, items: list, request: MapRequest, *,
                 label: str = "", on_snapshot: Callable[[MapSnapshot], None] | None = None,
                 should_cancel: Callable[[], bool] | None = None,
                 on_cancel: Callable[[], None] | None = None,
                 on_end: Callable[[MapResult], None] | None = None,
                 run: Callable[..., MapResult] = run_map):
        if "monitoring_interval" not in request.extra_config.get("lithops", {}):
            extra = dict(request.extra_config)
            extra["lithops"] = {**extra.get("lithops", {}),
                                "monitoring_interval": MONITORING_INTERVAL_S}
            request = dataclasses.replace(request, extra_config=extra)
        self.func, self.items, self.request = func, items, request
        self.result = MapResult(values=[PENDING] * len(items), inputs=list(items),
                                stats=[TaskStats(i) for i in range(len(items))],
                                outputs=[""] * len(items),
                                backend=request.backend, memory_mb=request.memory_mb,
                                cpu=request.cpu,
                                function=label or getattr(func, "__name__", "function"),
                                _runner=self)
        self.latest = MapSnapshot(total=len(items), label=self.result.function)
        #: An exception that ended the map before it could run (e.g. a refused deploy).
        self.error: BaseException | None = None
        #: Set by `%fc_wait` in a text view: it prints the final line itself, once.
        self.quiet_end = False
        self._on_snapshot = on_snapshot
        self._should_cancel = should_cancel
        self._on_cancel = on_cancel
        self._on_end = on_end
        self._run = run
        self._cancel = threading.Event()
        self._finished = threading.Event()
        #: Set after the end is drawn too: `wait()` returns after the receipt, so a
        #: cell waiting on the map ends with it on the page (and in nbclient's record).
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"fc_magic-map-{self.result.function}")

    def start(self) -> MapResult:
        with _LOCK:
            _RUNNING.add(self)
        self._thread.start()
        return self.result

    # -- what MapResult delegates to
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    def cancel(self, timeout: float | None = None) -> bool:
        """Ask the loop to stop and wait (up to ``timeout``) until it has tidied up."""
        if self._finished.is_set():
            return self._ended.wait(timeout)
        self._cancel.set()
        if self._on_cancel is not None:
            self._on_cancel()  # the view shows "cancelling…" at once
        return self._ended.wait(timeout)

    def progress(self) -> dict[str, int]:
        s = self.latest
        return {"total": s.total, "done": s.done, "failed": s.failed, "cancelled": 0,
                "running": s.running, "pending": s.pending}

    # -- the thread
    def _cancelled(self) -> bool:
        return self._cancel.is_set() or bool(self._should_cancel and self._should_cancel())

    def _snapshot(self, snapshot: MapSnapshot) -> None:
        self.latest = snapshot
        if snapshot.final and self.quiet_end:
            return
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)

    def _outcome(self, index: int, value: Any, stats: TaskStats, output: str = "") -> None:
        self.result.values[index] = value
        self.result.stats[index] = stats
        self.result.outputs[index] = output

    def _main(self) -> None:
        try:
            final = self._run(self.func, self.items, self.request, on_snapshot=self._snapshot,
                              should_cancel=self._cancelled, on_outcome=self._outcome,
                              poll_interval=POLL_INTERVAL_S)
        except BaseException as exc:  # reported through wait()/%fc_wait, never lost in a thread
            self.error = exc
            logger.debug("background map %s ended with %s", self.result.function, exc)
            self._settle(None)
            return
        self._settle(final)

    def _settle(self, final: MapResult | None) -> None:
        result = self.result
        if final is not None:
            result.values[:] = final.values
            result.stats[:] = final.stats
            result.outputs[:] = final.outputs
            for name in ("elapsed_s", "runtime", "cancelled", "where", "reduced", "reducer"):
                setattr(result, name, getattr(final, name))
        else:
            result.cancelled = True
            result.values[:] = [_failed_to_run(i, item, self.error)
                                if v is PENDING else v
                                for (i, item), v in zip(enumerate(self.items), result.values)]
        with _LOCK:
            _RUNNING.discard(self)
        self._finished.set()
        try:
            if self._on_end is not None:
                self._on_end(result)
        except Exception:  # a view that fails must not hide the result that arrived
            logger.warning("showing the end of background map %s failed", result.function,
                           exc_info=True)
        finally:
            result._runner = None  # a plain, finished MapResult from now on
            self._ended.set()


def _failed_to_run(index: int, item: Any, error: BaseException | None):
    from .results import TaskFailure, short_repr

    kind = type(error).__name__ if error is not None else "TaskLost"
    return TaskFailure(index, short_repr(item), kind, str(error) if error else "never ran")


def running() -> list[BackgroundMap]:
    """Background maps of this process that have not finished."""
    with _LOCK:
        return list(_RUNNING)


def cancel_all(timeout: float = EXIT_GRACE_S) -> int:
    """Cancel every running background map and wait for each to tidy up; returns how many."""
    maps = running()
    for m in maps:
        m._cancel.set()
    for m in maps:
        if not m._ended.wait(timeout):
            logger.warning("background map %s did not stop within %.0f s", m.result.function,
                           timeout)
    return len(maps)


# The kernel ending (shutdown, restart) must not leave tasks, processes or job
# data behind: the threads are daemons, so nothing else would stop them.
atexit.register(cancel_all)
