"""The map loop: submit, poll the unsettled tasks, collect every outcome, cancel, clean up.

It turns a plain `MapRequest` into a `MapResult`, reporting `MapSnapshot`s
as it goes so that exactly one progress view is drawn. Where and how tasks
run is the backend's business (`fc_magic.backends`): the loop holds a
`LithopsJob` and never sees a Lithops type.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .backends.request import MapRequest
from .errors import ServiceUnavailable
from .progress import CANCELLED, ERROR, RUNNING, SUCCESS, EtaSmoother, MapSnapshot
from .results import CANCELLED_TASK, MapResult, TaskFailure, TaskStats, short_repr

logger = logging.getLogger(__name__)

__all__ = ["MapRequest", "MapCancelled", "run_map", "open_job"]

#: Seconds with no task finishing, on top of the task timeout, after which the
#: remaining tasks are reported lost instead of waiting for ever.
STALL_GRACE_S = 60.0
#: A map with no task finishing for this long checks that its storage still answers.
PROBE_AFTER_S = 10.0
#: Consecutive failed checks (one per PROBE_AFTER_S) before the map gives up.
PROBE_FAILURES = 2


class MapCancelled(Exception):
    """Raised inside the poll loop when the caller asks to cancel."""


def open_job(request: MapRequest):
    """The backend's side of one map (a context manager); tests pass their own."""
    from .backends.job import LithopsJob

    return LithopsJob(request)


@dataclass
class _Progress:
    """Counts of one map while it runs, and why it stopped early (if it did)."""

    total: int
    label: str
    start: float
    where: str = ""
    done: int = 0
    failed: int = 0
    lost_reason: str | None = None
    cancelled: bool = False


def run_map(func: Callable, items: list, request: MapRequest, *,
            on_snapshot: Callable[[MapSnapshot], None] | None = None,
            should_cancel: Callable[[], bool] | None = None,
            poll_interval: float = 0.1,
            clock: Callable[[], float] = time.monotonic,
            job_factory: Callable[[MapRequest], Any] = open_job,
            on_outcome: Callable[[int, Any, TaskStats], None] | None = None) -> MapResult:
    """Run ``func`` over ``items`` and return every outcome in input order.

    ``on_snapshot`` receives a `MapSnapshot` after every poll and a final one;
    ``on_outcome(index, value or TaskFailure, stats)`` each task as it settles
    (a background map fills its result in with it).
    A KeyboardInterrupt or ``should_cancel()`` stops sending work; results that
    arrived are kept and the rest are marked cancelled in the returned result.
    """
    notify = on_snapshot or (lambda snapshot: None)
    progress = _Progress(len(items), getattr(func, "__name__", "function"), clock())
    with job_factory(request) as job:
        progress.where = job.describe()
        notify(MapSnapshot(total=progress.total, elapsed_s=0.0, label=progress.label,
                           where=progress.where))
        try:
            job.submit(func, items)
            _poll_until_settled(job, progress, notify, should_cancel, poll_interval, clock,
                                _outcome_feed(job, items, on_outcome))
            reduced = _reduce(job, progress, notify, should_cancel, poll_interval, clock)
        except (KeyboardInterrupt, MapCancelled):
            progress.cancelled = True
            reduced = None
            with _interrupts_deferred():  # a second Ctrl-C must not cut the tidy-up short
                job.cancel()
        else:
            job.finish()
        result = _collect(job, items, request, progress, clock)
        if request.reduce is not None:
            result.reducer = getattr(request.reduce, "__name__", "reduce")
            result.reduced = reduced
    notify(_final_snapshot(result, progress))
    return result


def _outcome_feed(job, items: list, on_outcome) -> Callable[[Any], None]:
    """Hand each task that settled in a poll to ``on_outcome`` (nothing without one)."""
    def feed(poll) -> None:
        if on_outcome is None:
            return
        for index in getattr(poll, "settled", ()):
            outcome = job.outcome(index, items[index])
            if outcome is not None:
                on_outcome(index, *outcome)
    return feed


def _poll_until_settled(job, progress: _Progress, notify, should_cancel, poll_interval: float,
                        clock: Callable[[], float], feed: Callable[[Any], None]) -> None:
    """Poll until every task settled, the caller cancels, or the map is given up as lost."""
    probe = _StorageProbe(job.check_storage, clock)
    timeout_s = job.request.timeout_s
    last_progress, last_finished = clock(), -1
    pending, running = list(job.futures), 0
    eta = EtaSmoother()
    while True:
        try:
            poll = job.poll(pending)
        except ServiceUnavailable as exc:  # the storage or compute endpoint failing
            probe.failed(str(exc))
        else:
            pending = poll.pending
            feed(poll)
            progress.done += poll.newly_done
            progress.failed += poll.newly_failed
            running = poll.running
        now = clock()
        finished = progress.done + progress.failed
        notify(MapSnapshot(progress.total, progress.done, progress.failed, running,
                           now - progress.start, RUNNING, progress.label,
                           eta.update(now - progress.start, finished, running, progress.total),
                           progress.where))
        if not pending:
            return
        if should_cancel is not None and should_cancel():
            raise MapCancelled()
        if progress.done + progress.failed != last_finished:
            last_progress, last_finished = now, progress.done + progress.failed
        elif probe.unreachable(stalled_s=now - last_progress):
            progress.lost_reason = probe.reason
            logger.warning("%s: %d of %d tasks unfinished are reported lost",
                           probe.reason, len(pending), progress.total)
            return
        elif now - last_progress > timeout_s + STALL_GRACE_S:
            logger.warning("no task finished for %.0f s; giving up on the rest",
                           now - last_progress)
            return
        time.sleep(poll_interval)


def _reduce(job, progress: _Progress, notify, should_cancel, poll_interval: float,
            clock: Callable[[], float]) -> Any:
    """`--reduce G`: run G remotely over the map's results; its value, a TaskFailure, or None.

    G runs only when every task succeeded, or with ``reduce_partial`` over
    the ones that did (in input order). The map's values stay in storage:
    the reducer's worker reads them, and only G's value comes back.
    """
    request = job.request
    if request.reduce is None:
        return None
    if (progress.failed or progress.done < progress.total) and not request.reduce_partial:
        return None
    pending = job.submit_reduce()
    if not pending:
        return None
    label = f"{progress.label} -> {getattr(request.reduce, '__name__', 'reduce')}"
    started = clock()
    while pending:
        poll = job.poll(pending)
        pending = poll.pending
        now = clock()
        notify(MapSnapshot(progress.total, progress.done, progress.failed, 0,
                           now - progress.start, RUNNING, label))
        if not pending:
            break
        if should_cancel is not None and should_cancel():
            raise MapCancelled()
        if now - started > request.timeout_s + STALL_GRACE_S:
            return TaskFailure(progress.total, "<all results>", "TaskLost",
                               "the reducer did not answer before the deadline")
        time.sleep(poll_interval)
    return job.reduce_outcome()


def _unsettled(index: int, item: Any, progress: _Progress) -> TaskFailure:
    """The slot of a task that never settled: cancelled, its service gone, or lost."""
    if progress.cancelled:
        kind, reason = CANCELLED_TASK, "cancelled before it finished"
    elif progress.lost_reason is not None:
        kind, reason = "ServiceUnavailable", progress.lost_reason
    else:
        kind, reason = ("TaskLost", "no answer from the worker before the deadline; "
                        "it was lost or killed")
    return TaskFailure(index, short_repr(item), kind, reason)


def _collect(job, items: list, request: MapRequest, progress: _Progress,
             clock: Callable[[], float]) -> MapResult:
    """Every input's outcome, in input order; a task that never settled gets a failure slot."""
    values: list[Any] = []
    stats: list[TaskStats] = []
    outputs: list[str] = []
    for index, item in enumerate(items):
        outcome = job.outcome(index, item)
        if outcome is None:
            failure = _unsettled(index, item, progress)
            # A task killed before it reported still has the invoke's id: its logs say why.
            failure.request_id = job.request_id(index) if not failure.cancelled else ""
            values.append(failure)
            stats.append(TaskStats(index, request_id=failure.request_id))
            outputs.append("")
        else:
            values.append(outcome[0])
            stats.append(outcome[1])
            outputs.append(outcome[2] if len(outcome) > 2 else "")
    failed = any(isinstance(v, TaskFailure) and not v.cancelled for v in values)
    logs = job.logs() if failed else ""
    return MapResult(values=values, inputs=list(items), stats=stats, outputs=outputs,
                     elapsed_s=clock() - progress.start, backend=request.backend,
                     runtime=job.runtime, memory_mb=request.memory_mb, cpu=request.cpu,
                     function=progress.label, cancelled=progress.cancelled,
                     where=progress.where, logs=logs)


def _final_snapshot(result: MapResult, progress: _Progress) -> MapSnapshot:
    failed = len(result.failures_not_cancelled)
    status = CANCELLED if progress.cancelled else (ERROR if failed else SUCCESS)
    return MapSnapshot(progress.total, result.succeeded, failed, 0, result.elapsed_s,
                       status, progress.label, where=progress.where)


class _StorageProbe:
    """Tell a slow map from a dead service without waiting out every timeout.

    Lithops' job monitor swallows storage errors and keeps polling, so when
    the FC/OSS endpoint goes away (network loss, a stopped sandbox) a map
    would otherwise sit until each task's timeout plus the stall grace. Once
    nothing has finished for PROBE_AFTER_S, the storage is checked every
    PROBE_AFTER_S; PROBE_FAILURES failures in a row end the map with a
    one-line reason naming the service.
    """

    def __init__(self, check: Callable[[], None], clock: Callable[[], float]):
        self._check = check
        self._clock = clock
        self._last = clock()
        self._failures = 0
        self.reason: str | None = None

    def failed(self, reason: str) -> None:
        self._failures += 1
        self.reason = reason

    def unreachable(self, stalled_s: float) -> bool:
        if stalled_s < PROBE_AFTER_S:
            self._failures = 0
            return False
        now = self._clock()
        if now - self._last >= PROBE_AFTER_S:
            self._last = now
            try:
                self._check()
            except ServiceUnavailable as exc:
                self.failed(str(exc))
            else:
                self._failures = 0
        return self._failures >= PROBE_FAILURES


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ignore further Ctrl-C while a cancelled map stops its calls and keeps its results.

    The map is already being cancelled; another KeyboardInterrupt in the
    middle of stopping Lithops would leave its threads and job half torn
    down and lose the results that had arrived. Main thread only (signals).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
