"""One map's Lithops side: submit, poll, read outcomes, cancel, clean up.

`fc_magic.engine` runs the loop and decides what a map means to the user;
this class is the only thing it holds that knows Lithops' executors and
futures, so the loop never sees a Lithops type.
"""
from __future__ import annotations

import logging
import sys
import traceback as tb
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ServiceUnavailable
from ..objects import is_object_map
from ..results import CANCELLED_TASK, REDUCED, TaskFailure, TaskStats, short_repr
from . import Backend, get, lithops_fixes, object_input
from .request import MapRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Poll:
    """What one poll of the unsettled tasks found."""

    pending: list
    newly_done: int
    newly_failed: int
    running: int
    #: Input positions of the tasks this poll saw settle (for maps that fill in live).
    settled: tuple[int, ...] = ()


def service_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a storage or compute service is not answering.

    requests' and urllib3's network errors are OSErrors; oss2 wraps its own.
    Anything else escaping Lithops is a defect, and is raised as itself.
    """
    errors: list[type[BaseException]] = [OSError]
    try:
        import oss2
    except ImportError:
        pass
    else:
        errors.append(oss2.exceptions.OssError)
    return tuple(errors)


def service_error(exc: BaseException) -> str:
    """One line naming the storage that stopped answering (no secrets: type and cause only)."""
    source = type(exc).__module__.split(".")[0]
    text = str(exc)
    detail = text.splitlines()[0] if text else type(exc).__name__
    if "Connection refused" in detail or "Failed to establish" in detail:
        detail = "connection refused"
    elif "timed out" in detail.lower():
        detail = "timed out"
    else:
        detail = f"{type(exc).__name__}: {short_repr(detail, 120)}"
    return f"the storage service stopped answering ({source}: {detail})"


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Lithops tidies up inside its own KeyboardInterrupt handler; a failure there hides the Ctrl-C."""
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _failure_from_future(index: int, item: Any, future) -> TaskFailure:
    """Rebuild what the worker raised, with its remote traceback as text."""
    exc_info = getattr(future, "_exception", None)
    if not exc_info:
        return TaskFailure(index, short_repr(item), "UnknownError",
                           "the worker reported no result and no exception")
    if not (isinstance(exc_info, tuple) and len(exc_info) == 3):
        # Lithops' wait(), interrupted (Ctrl-C landing inside it), marks every
        # future it waited on as failed with a bare Exception() and no remote
        # traceback: those tasks were stopped by the cancel, not failed.
        return TaskFailure(index, short_repr(item), CANCELLED_TASK,
                           "cancelled before it finished")
    exc_type, exc, remote_tb = exc_info
    if isinstance(remote_tb, str):  # the worker could not pickle the exception
        text = remote_tb
    else:
        # Drop Lithops' own worker frames: the user wants their function's.
        frames = [f for f in tb.extract_tb(remote_tb)
                  if "/lithops/" not in f.filename and f.name != lithops_fixes.TASK_NAME]
        text = ("Traceback (most recent call last):\n" + "".join(tb.format_list(frames))
                + "".join(tb.format_exception_only(exc_type, exc)))
    name = getattr(exc_type, "__name__", str(exc_type))
    return TaskFailure(index, short_repr(item), name, _message(exc), text)


def _message(exc: BaseException) -> str:
    """The exception's message whole, as Python prints it after ``Type: ``."""
    try:
        return str(exc)
    except Exception as err:  # a user's __str__ may raise
        return f"<message unavailable: {type(err).__name__}>"


def _stats_from_future(index: int, future) -> TaskStats:
    stats = getattr(future, "stats", None) or {}
    duration = stats.get("worker_func_exec_time")
    peak = stats.get("worker_peak_memory_end") or stats.get("worker_func_rss")
    return TaskStats(index=index,
                     duration_s=float(duration) if duration is not None else None,
                     peak_memory_mb=float(peak) / 2**20 if peak else None)


def _failed(future) -> bool:
    return bool(future.error or future._state == future.State.Unknown)


class LithopsJob:
    """A Lithops executor for one map, used as a context manager by the map loop."""

    def __init__(self, request: MapRequest, backend: Backend | None = None):
        self.request = request
        self.backend = backend or get(request.backend)
        self.futures: list = []
        self._positions: dict[int, int] = {}
        self._reduce_futures: list = []
        self._map_job_id, self._map_job = "", None
        self._executor = None
        self._quiet = lithops_fixes.quiet_lithops()

    # -- lifetime
    def __enter__(self) -> LithopsJob:
        lithops_fixes.check_version()
        lithops_fixes.private_temp_dir()
        self._quiet.__enter__()
        try:
            with lithops_fixes.one_executor_setup_at_a_time():
                self._executor = self.backend.executor(self.request)
        except BaseException:
            self._quiet.__exit__(*sys.exc_info())
            raise
        lithops_fixes.forget_executor_at_exit(self._executor)
        lithops_fixes.leave_session_to_ourselves()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._executor.job_monitor.stop()
        finally:
            self._quiet.__exit__(*exc_info)

    @property
    def runtime(self) -> str:
        """What ran the tasks: the deployed runtime name, or the local interpreter."""
        return self.request.runtime or sys.executable

    def describe(self) -> str:
        return self.backend.describe(self.request)

    # -- the map
    def submit(self, func: Callable, items: list) -> None:
        # Each item goes in a 1-tuple so it binds to the first parameter
        # whatever its type: Lithops would spread a tuple over the
        # parameters and take a dict as keyword arguments.
        if is_object_map(items):  # objects as input: FUNC gets a StorageObject per part
            task = object_input.object_task(func, self.request.constants)
            iterdata = [(part.payload(),) for part in items]
        else:
            task = lithops_fixes.task_function(func, self.request.call, self.request.constants)
            iterdata = [(item,) for item in items]
        if self.request.reduce is None:
            self.futures = self._executor.map(task, iterdata,
                                              runtime_memory=self.request.memory_mb,
                                              timeout=self.request.timeout_s)
        else:
            # Lithops' map_reduce() blocks until its reducer is spawned; its two
            # stages are called separately so the loop keeps polling (and can
            # refuse to reduce a partial list).
            self._map_job_id, self._map_job, futures = self._executor._submit_map(
                task, iterdata, runtime_memory=self.request.memory_mb,
                timeout=self.request.timeout_s)
            self._executor.futures.extend(futures)
            self.futures = list(futures)
        self._positions = {id(f): index for index, f in enumerate(self.futures)}

    def submit_reduce(self) -> list:
        """Start the reducer over the successful tasks' results (input order); its futures."""
        ok = [f for f in self.futures if not _failed(f) and (f.done or f.success)]
        if not ok:
            return []
        reducer = lithops_fixes.reduce_function(self.request.reduce)
        self._reduce_futures = self._executor._run_reduce_job(
            reduce_job_id=self._map_job_id.replace("M", "R"), reduce_function=reducer,
            map_job=self._map_job, map_futures=ok, runtime_memory=self.request.memory_mb,
            obj_reduce_by_key=False, extra_env=None, include_modules=[], exclude_modules=[])
        self._executor.futures.extend(self._reduce_futures)
        return list(self._reduce_futures)

    def reduce_outcome(self) -> Any:
        """The reducer's value, or a TaskFailure with its remote traceback."""
        future = self._reduce_futures[0]
        if _failed(future):
            return _failure_from_future(len(self.futures), "<all results>", future)
        if not future.done:
            return TaskFailure(len(self.futures), "<all results>", "TaskLost",
                               "the reducer never reported back")
        return future.result(throw_except=False)

    def poll(self, pending: list) -> Poll:
        """Wait briefly on ``pending`` futures and sort them; only unsettled ones are polled."""
        from lithops.wait import ALWAYS

        # A --reduce map's values stay in storage for the reducer (only its
        # statuses are read); the reducer's own value is downloaded.
        download = self.request.reduce is None or any(
            id(f) not in self._positions for f in pending)
        try:
            self._executor.wait(pending, return_when=ALWAYS, download_results=download,
                                throw_except=False, show_progressbar=False)
        except Exception as exc:
            if _caused_by_interrupt(exc):
                raise KeyboardInterrupt() from exc
            if isinstance(exc, service_errors()):
                raise ServiceUnavailable(service_error(exc)) from exc
            raise
        still, done, failed, running, settled = [], 0, 0, 0, []
        for f in pending:
            if _failed(f):
                failed += 1
            elif f.done or (not download and f.success):
                done += 1
            else:
                still.append(f)
                running += f.running
                continue
            if id(f) in self._positions:
                settled.append(self._positions[id(f)])
        return Poll(still, done, failed, running, tuple(settled))

    def check_storage(self) -> None:
        """Raise `ServiceUnavailable` when the job's storage does not answer."""
        internal = self._executor.internal_storage
        try:
            internal.storage.head_bucket(internal.bucket)
        except service_errors() as exc:
            raise ServiceUnavailable(service_error(exc)) from exc

    def outcome(self, index: int, item: Any) -> tuple[Any, TaskStats, str] | None:
        """(value or TaskFailure, stats, what it printed) of a settled task; None if it never settled."""
        future = self.futures[index] if index < len(self.futures) else None
        if future is None or not (future.done or future.success or future.error):
            return None
        exc_info = getattr(future, "_exception", None)
        if _failed(future) and not (isinstance(exc_info, tuple) and len(exc_info) == 3):
            # Lithops lost track of it (its job cleared on cancel, or the worker
            # vanished): no outcome to report; the map loop says why.
            return None
        stats = _stats_from_future(index, future)
        stats.request_id = self.request_id(index)
        if _failed(future):
            value = _failure_from_future(index, item, future)
            value.request_id = stats.request_id
            output = lithops_fixes.task_output_of(exc_info[1])
        elif self.request.reduce is not None and not future.done:
            # Left in storage for the reducer; never fetched here.
            value, output = REDUCED, ""
        else:
            value, output = lithops_fixes.unpack_task_value(future.result(throw_except=False))
        return value, stats, output

    def request_id(self, index: int) -> str:
        """The service's id of the invocation that ran task ``index`` ('' if none or not sent)."""
        future = self.futures[index] if index < len(self.futures) else None
        if future is None:
            return ""
        return self.backend.request_id(self._executor, future)

    def logs(self) -> str:
        """One line on where the backend keeps the tasks' logs ('' when it has nothing to say)."""
        return self.backend.logs(self._executor, self.request)

    # -- the end
    def finish(self) -> None:
        """Release a finished job and delete its data and function pickle.

        A storage that stopped answering leaves the data behind with a
        warning: the results are already here and must not be lost over it.
        """
        sessions = lithops_fixes.runner_sessions(self._executor)
        futures = self.futures + self._reduce_futures
        self._executor.compute_handler.clear({f.job_key for f in futures})
        try:
            self.backend.clean(self._executor, futures)
        except service_errors() as exc:
            logger.warning("the map's job data was left in storage: %s", service_error(exc))
        lithops_fixes.kill_sessions(sessions)

    def cancel(self) -> None:
        """Stop sending calls and drop the job's queued work (Lithops' own Ctrl-C path).

        Each step runs even if an earlier one fails: a half-stopped job would
        keep invoking. Failures are logged, never raised over the cancel.
        """
        executor, futures = self._executor, self.futures + self._reduce_futures
        sessions = lithops_fixes.runner_sessions(executor)
        steps = (("stop the invoker", lambda: executor.invoker.stop(wait=True)),
                 ("stop monitoring", lambda: executor.job_monitor.remove(futures)),
                 ("drop queued calls", lambda: executor.compute_handler.clear(
                     {f.job_key for f in futures}, exception=KeyboardInterrupt())),
                 ("kill the tasks' processes", lambda: lithops_fixes.kill_sessions(sessions)),
                 # The backend's own clean first: on localhost it deletes here and
                 # now (a kernel shutting down is killed ~2.5 s after it is asked
                 # to stop), and it removes the function pickle and job file that
                 # Lithops' cleaner keeps for a cancelled job.
                 ("delete the job data", lambda: self.backend.clean(executor, futures)),
                 ("hand the rest to Lithops' cleaner", lambda: executor.clean(
                     fs=futures, clean_cloudobjects=False, force=True)))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # best effort: the remaining steps must still run
                logger.debug("cancel: could not %s: %s: %s", what, type(exc).__name__, exc)
        lithops_fixes.reap_cleaner()
