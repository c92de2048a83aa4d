"""The one module that talks to Lithops.

It turns a plain `MapRequest` into a Lithops configuration, runs the map,
polls the futures itself so that exactly one progress view is drawn (Lithops'
tqdm bar stays off), and hands back a plain `MapResult`. Lithops types never
leave this module. `lithops` is imported lazily so `%load_ext fc_magic` stays
instant.

Lithops defects worked around here are named where the workaround is.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .progress import CANCELLED, ERROR, RUNNING, SUCCESS, MapSnapshot
from .results import MapResult, TaskFailure, TaskStats, short_repr

logger = logging.getLogger(__name__)

#: Seconds with no task finishing, on top of the task timeout, after which the
#: remaining tasks are reported lost instead of waiting for ever.
STALL_GRACE_S = 60.0


@dataclass
class MapRequest:
    """Where and how to run a map; plain data the magic fills from traits and flags."""

    backend: str = "localhost"
    #: localhost: absolute path of the interpreter that runs tasks (None: this
    #: kernel's). aliyun_fc: the deployed runtime name.
    runtime: str | None = None
    memory_mb: int = 256
    timeout_s: int = 300
    #: Parallel worker processes on localhost (None: one per core).
    workers: int | None = None
    #: Extra Lithops configuration sections merged over the defaults.
    extra_config: dict = field(default_factory=dict)


class MapCancelled(Exception):
    """Raised inside the poll loop when the caller asks to cancel."""


def lithops_config(request: MapRequest) -> dict:
    """The Lithops config dict for a request (no file, no environment lookups)."""
    if request.backend == "localhost":
        # Lithops' localhost default runtime is a bare interpreter name looked
        # up on PATH: with another Python first on PATH every task dies
        # silently and get_result() waits for execution_timeout. Always an
        # absolute path. Version 1 runs a whole job in one process pool:
        # 100 tiny tasks in 0.8 s against 13.8 s for v2's process per task.
        localhost = {"runtime": request.runtime or sys.executable, "version": 1}
        if request.workers:
            localhost["worker_processes"] = request.workers
        config = {
            "lithops": {"backend": "localhost", "storage": "localhost"},
            "localhost": localhost,
        }
    else:
        config = {"lithops": {"backend": request.backend}}
    for section, values in request.extra_config.items():
        config.setdefault(section, {}).update(values)
    return config


@contextlib.contextmanager
def _quiet_lithops() -> Iterator[None]:
    """Keep Lithops' own warnings ("There was an exception ...") out of the cell.

    fc_magic reports failures itself; a user who configured the lithops
    logger (a handler or a level of their own) keeps what they asked for.
    """
    lithops_logger = logging.getLogger("lithops")
    untouched = not lithops_logger.handlers and lithops_logger.level == logging.NOTSET
    if untouched:
        lithops_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if untouched:
            lithops_logger.setLevel(logging.NOTSET)


def _failure_from_future(index: int, item: Any, future) -> TaskFailure:
    """Rebuild what the worker raised, with its remote traceback as text."""
    exc_info = getattr(future, "_exception", None)
    if not exc_info:
        return TaskFailure(index, short_repr(item), "UnknownError",
                           "the worker reported no result and no exception")
    exc_type, exc, remote_tb = exc_info
    if isinstance(remote_tb, str):  # the worker could not pickle the exception
        text = remote_tb
    else:
        # Drop Lithops' own worker frames: the user wants their function's.
        frames = [f for f in tb.extract_tb(remote_tb)
                  if "/lithops/" not in f.filename and f.name != _TASK_NAME]
        text = ("Traceback (most recent call last):\n" + "".join(tb.format_list(frames))
                + "".join(tb.format_exception_only(exc_type, exc)))
    name = getattr(exc_type, "__name__", str(exc_type))
    return TaskFailure(index, short_repr(item), name, str(exc), text)


def _stats_from_future(index: int, future) -> TaskStats:
    stats = getattr(future, "stats", None) or {}
    duration = stats.get("worker_func_exec_time")
    peak = stats.get("worker_peak_memory_end") or stats.get("worker_func_rss")
    return TaskStats(index=index,
                     duration_s=float(duration) if duration is not None else None,
                     peak_memory_mb=float(peak) / 2**20 if peak else None)


_TASK_MODULE = "fc_magic_task"
_TASK_NAME = "__fc_magic_task__"
_TASK_SOURCE = f"def {_TASK_NAME}(item):\n    return func(item)\n"


def task_function(func: Callable) -> Callable:
    """Wrap ``func`` so Lithops calls it exactly like ``map()`` would.

    Lithops gives some parameter names a meaning of its own: ``obj`` turns
    the map into a storage partitioner, and ``id``, ``storage``, ``ibm_cos``
    and ``rabbitmq`` are overwritten by the worker. ``def f(id)`` would get
    the call id instead of the item, and ``len`` (parameter ``obj``) fails
    with "No objects found". The wrapper has one neutral parameter. It lives
    in a module that cannot be imported, so cloudpickle ships it by value and
    the worker never needs fc_magic installed.
    """
    namespace = {"__name__": _TASK_MODULE, "func": func}
    exec(compile(_TASK_SOURCE, f"<{_TASK_MODULE}>", "exec"), namespace)
    task = namespace[_TASK_NAME]
    task.__name__ = task.__qualname__ = getattr(func, "__name__", "task")
    return task


def _counts(futures) -> tuple[int, int, int]:
    done = failed = running = 0
    for f in futures:
        if f.error or f._state == f.State.Unknown:
            failed += 1
        elif f.done or f.success:
            done += 1
        elif f.running:
            running += 1
    return done, failed, running


def run_map(func: Callable, items: list, request: MapRequest, *,
            on_snapshot: Callable[[MapSnapshot], None] | None = None,
            should_cancel: Callable[[], bool] | None = None,
            poll_interval: float = 0.1,
            clock: Callable[[], float] = time.monotonic) -> MapResult:
    """Run ``func`` over ``items`` with Lithops and return every outcome in order.

    ``on_snapshot`` receives a `MapSnapshot` after every poll and a final one.
    A KeyboardInterrupt or ``should_cancel()`` stops sending work; results that
    arrived are kept and the rest are marked cancelled in the returned result.
    """
    import lithops
    from lithops.wait import ALWAYS

    notify = on_snapshot or (lambda snapshot: None)
    label = getattr(func, "__name__", "function")
    total = len(items)
    start = clock()
    status = RUNNING
    interrupted: BaseException | None = None

    with _quiet_lithops():
        executor = lithops.FunctionExecutor(config=lithops_config(request), log_level=None)
        # Lithops registers every executor with atexit; a long notebook
        # session would otherwise keep each one alive until exit.
        atexit.unregister(executor._clean_at_exit)
        _leave_session_to_ourselves()
        try:
            notify(MapSnapshot(total=total, elapsed_s=0.0, label=label))
            # Each item goes in a 1-tuple so it binds to the first parameter
            # whatever its type: Lithops would spread a tuple over the
            # parameters and take a dict as keyword arguments.
            futures = executor.map(task_function(func), [(item,) for item in items],
                                   runtime_memory=request.memory_mb,
                                   timeout=request.timeout_s)
            last_progress, last_finished = clock(), -1
            while True:
                executor.wait(futures, return_when=ALWAYS, download_results=True,
                              throw_except=False, show_progressbar=False)
                done, failed, running = _counts(futures)
                now = clock()
                notify(MapSnapshot(total, done, failed, running, now - start, RUNNING, label))
                if done + failed == total:
                    break
                if should_cancel is not None and should_cancel():
                    raise MapCancelled()
                if done + failed != last_finished:
                    last_progress, last_finished = now, done + failed
                elif now - last_progress > request.timeout_s + STALL_GRACE_S:
                    logger.warning("no task finished for %.0f s; giving up on the rest",
                                   now - last_progress)
                    break
                time.sleep(poll_interval)
        except (KeyboardInterrupt, MapCancelled) as exc:
            interrupted = exc
            status = CANCELLED
            _stop(executor, futures if "futures" in locals() else [])
        else:
            executor.wait(futures, throw_except=False, show_progressbar=False)
        finally:
            with contextlib.suppress(Exception):
                executor.job_monitor.stop()

    values: list[Any] = []
    stats: list[TaskStats] = []
    futures = locals().get("futures") or []
    for index, item in enumerate(items):
        future = futures[index] if index < len(futures) else None
        if future is None or not (future.done or future.success or future.error):
            reason = ("cancelled before it finished" if interrupted is not None
                      else "no answer from the worker before the deadline; it was lost or killed")
            values.append(TaskFailure(index, short_repr(item),
                                      "Cancelled" if interrupted is not None else "TaskLost",
                                      reason))
            stats.append(TaskStats(index))
            continue
        if future.error or future._state == future.State.Unknown:
            values.append(_failure_from_future(index, item, future))
        else:
            values.append(future.result(throw_except=False))
        stats.append(_stats_from_future(index, future))

    result = MapResult(values=values, inputs=list(items), stats=stats,
                       elapsed_s=clock() - start, backend=request.backend,
                       runtime=request.runtime or sys.executable,
                       memory_mb=request.memory_mb, function=label,
                       cancelled=interrupted is not None)
    failed = sum(1 for f in result.failures if f.exc_type != "Cancelled")
    if status != CANCELLED:
        status = ERROR if failed else SUCCESS
    notify(MapSnapshot(total, len(result.results), failed, 0, result.elapsed_s, status, label))
    return result


#: Environment variables through which Lithops hands its session to child processes.
_SESSION_VARIABLES = ("__LITHOPS_SESSION_ID", "__LITHOPS_TOTAL_EXECUTORS")


def _leave_session_to_ourselves() -> None:
    """Keep Lithops' session out of the environment of processes we start.

    Lithops exports its session id and executor count so that a process
    spawned from this one "joins the session". A kernel, `fc-magic run` or
    any script started after a map then numbers its executors exactly like
    this process does and, sharing TMPDIR (localhost storage), one reads the
    other's job results: the next map here silently returned the child's
    values. This process keeps counting in `lithops.utils`; children start
    a session of their own.
    """
    import os

    for name in _SESSION_VARIABLES:
        os.environ.pop(name, None)


def _stop(executor, futures) -> None:
    """Stop sending calls and drop the job's queued work (Lithops' own Ctrl-C path)."""
    with contextlib.suppress(Exception):
        executor.invoker.stop(wait=True)
    with contextlib.suppress(Exception):
        executor.job_monitor.remove(futures)
    with contextlib.suppress(Exception):
        executor.compute_handler.clear({f.job_key for f in futures},
                                       exception=KeyboardInterrupt())
    with contextlib.suppress(Exception):
        executor.clean(fs=futures, clean_cloudobjects=False, force=True)


# ------------------------------------------------------------------ Lithops facts
def fc_function_name(runtime_name: str, memory_mb: int) -> str:
    """The FC function name Lithops' aliyun_fc backend derives from (runtime, memory).

    Asked of Lithops itself (its naming method uses no instance state) so the
    runtime-name limit fc_magic enforces follows whatever Lithops does.
    """
    from lithops.serverless.backends.aliyun_fc.aliyun_fc import AliyunFunctionComputeBackend

    return AliyunFunctionComputeBackend._format_function_name(None, runtime_name, memory_mb)


def fc_worker_requirements() -> list[str]:
    """The requirement lines Lithops installs into its aliyun_fc zip runtime."""
    from lithops.serverless.backends.aliyun_fc import config

    lines = (line.split("#", 1)[0].strip() for line in config.REQUIREMENTS_FILE.splitlines())
    return [line for line in lines if line]
