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
import os
import random
import signal
import sys
import threading
import time
import traceback as tb
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import limits
from .inputs import InputProblem
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
    #: aliyun_fc: the runtime's code package zip (RuntimeEntry.package), deployed
    #: as the FC function for (runtime, memory) unless FC already has it.
    package: str | None = None
    #: aliyun_fc settings; None takes the Lithops config file's, then Lithops' defaults.
    region: str | None = None
    fc_endpoint: str | None = None
    oss_endpoint: str | None = None
    #: The Lithops config file holding the credentials (None: Lithops' own lookup).
    config_file: str | None = None


class MapCancelled(Exception):
    """Raised inside the poll loop when the caller asks to cancel."""


def lithops_config(request: MapRequest) -> dict:
    """The Lithops config dict for a request.

    localhost needs no file or environment; aliyun_fc reads the credentials
    from the user's Lithops config (see `aliyun_settings`).
    """
    if request.backend == "aliyun_fc":
        return aliyun_settings(request)[0]
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
        # Its monitor logs every failed storage poll with a traceback; the
        # map's own report (and _StorageProbe) says what matters, once.
        lithops_logger.setLevel(logging.CRITICAL)
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


def _settle(futures) -> tuple[list, int, int, int]:
    """Split polled futures: (still pending, newly done, newly failed, running)."""
    pending, done, failed, running = [], 0, 0, 0
    for f in futures:
        if f.error or f._state == f.State.Unknown:
            failed += 1
        elif f.done:
            done += 1
        else:
            pending.append(f)
            running += f.running
    return pending, done, failed, running


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
    lost_reason: str | None = None

    with _quiet_lithops():
        executor = _new_executor(request)
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
            probe = _StorageProbe(executor, clock)
            # Only unsettled futures are polled, so a poll costs what is left
            # to do, not the size of the map.
            pending, done, failed = list(futures), 0, 0
            while True:
                try:
                    executor.wait(pending, return_when=ALWAYS, download_results=True,
                                  throw_except=False, show_progressbar=False)
                except Exception as exc:
                    # Lithops tidies up inside its own KeyboardInterrupt handler;
                    # if that tidying fails, the Ctrl-C arrives as the context
                    # of another error, and it is still a cancel.
                    if _caused_by_interrupt(exc):
                        raise MapCancelled() from exc
                    probe.failed(exc)  # the storage or compute endpoint failing
                pending, newly_done, newly_failed, running = _settle(pending)
                done, failed = done + newly_done, failed + newly_failed
                now = clock()
                notify(MapSnapshot(total, done, failed, running, now - start, RUNNING, label))
                if not pending:
                    break
                if should_cancel is not None and should_cancel():
                    raise MapCancelled()
                if done + failed != last_finished:
                    last_progress, last_finished = now, done + failed
                elif probe.unreachable(stalled_s=now - last_progress):
                    lost_reason = probe.reason
                    logger.warning("%s: %d of %d tasks unfinished are reported lost",
                                   lost_reason, len(pending), total)
                    break
                elif now - last_progress > request.timeout_s + STALL_GRACE_S:
                    logger.warning("no task finished for %.0f s; giving up on the rest",
                                   now - last_progress)
                    break
                time.sleep(poll_interval)
        except (KeyboardInterrupt, MapCancelled) as exc:
            interrupted = exc
            status = CANCELLED
            with _interrupts_deferred():  # a second Ctrl-C must not cut the tidy-up short
                _stop(executor, futures if "futures" in locals() else [])
                _reap_cleaner(lithops.FunctionExecutor)
        else:
            # Release the job and delete its data, and the function pickle too
            # (clean_fn): a fresh executor per map would otherwise leave one
            # behind in storage for every map of the session.
            with contextlib.suppress(Exception):
                executor.compute_handler.clear({f.job_key for f in futures})
            _clean_job_data(executor, futures, lithops.FunctionExecutor)
        finally:
            with contextlib.suppress(Exception):
                executor.job_monitor.stop()

    values: list[Any] = []
    stats: list[TaskStats] = []
    futures = locals().get("futures") or []
    for index, item in enumerate(items):
        future = futures[index] if index < len(futures) else None
        if future is None or not (future.done or future.success or future.error):
            if interrupted is not None:
                kind, reason = "Cancelled", "cancelled before it finished"
            elif lost_reason is not None:
                kind, reason = "ServiceUnavailable", lost_reason
            else:
                kind, reason = ("TaskLost", "no answer from the worker before the deadline; "
                                "it was lost or killed")
            values.append(TaskFailure(index, short_repr(item), kind, reason))
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


#: A map with no task finishing for this long checks that its storage still answers.
PROBE_AFTER_S = 10.0
#: Consecutive failed checks (one per PROBE_AFTER_S) before the map gives up.
PROBE_FAILURES = 2


class _StorageProbe:
    """Tell a slow map from a dead service without waiting out every timeout.

    Lithops' job monitor swallows storage errors and keeps polling, so when
    the FC/OSS endpoint goes away (network loss, a stopped sandbox) a map
    would otherwise sit until each task's timeout plus the stall grace. Once
    nothing has finished for PROBE_AFTER_S, the bucket is checked every
    PROBE_AFTER_S; PROBE_FAILURES failures in a row end the map with a
    one-line reason naming the service.
    """

    def __init__(self, executor, clock: Callable[[], float]):
        self._executor = executor
        self._clock = clock
        self._last = clock()
        self._failures = 0
        self.reason: str | None = None

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        self.reason = _service_error(exc)

    def unreachable(self, stalled_s: float) -> bool:
        if stalled_s < PROBE_AFTER_S:
            self._failures = 0
            return False
        now = self._clock()
        if now - self._last >= PROBE_AFTER_S:
            self._last = now
            internal = self._executor.internal_storage
            try:
                internal.storage.head_bucket(internal.bucket)
            except Exception as exc:
                self.failed(exc)
            else:
                self._failures = 0
        return self._failures >= PROBE_FAILURES


def _service_error(exc: BaseException) -> str:
    """One line naming the storage that stopped answering (no secrets: type and URL only)."""
    source = type(exc).__module__.split(".")[0]
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "Connection refused" in detail or "Failed to establish" in detail:
        detail = "connection refused"
    elif "timed out" in detail.lower():
        detail = "timed out"
    else:
        detail = f"{type(exc).__name__}: {short_repr(detail, 120)}"
    return f"the storage service stopped answering ({source}: {detail})"


def _clean_job_data(executor, futures, executor_class) -> None:
    """Delete a finished map's data: its job prefixes and its function pickle.

    On localhost storage that is a local delete, done here and now: Lithops'
    shared background cleaner serves every executor of the machine in turn,
    so a request stuck on an unreachable cloud bucket would hold back the
    local ones indefinitely. Cloud storage goes through Lithops' cleaner.
    """
    from lithops.constants import JOBS_PREFIX

    internal = executor.internal_storage
    if internal.backend != "localhost":
        with contextlib.suppress(Exception):
            executor.clean(fs=futures, clean_cloudobjects=False, clean_fn=True)
        _reap_cleaner(executor_class)
        return
    prefixes = {f"{JOBS_PREFIX}/{f.job_key}/" for f in futures}
    prefixes.add(f"{JOBS_PREFIX}/{executor.executor_id}/")
    for prefix in prefixes:
        with contextlib.suppress(Exception):
            keys = internal.storage.list_keys(internal.bucket, prefix)
            if keys:
                internal.storage.delete_objects(internal.bucket, keys)


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


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


def _reap_cleaner(executor_class) -> None:
    """Wait for Lithops' background data cleaner in a daemon thread.

    Lithops starts the cleaner with Popen and only polls it when it starts
    the next one, so the last cleaner of a session stays a zombie child of
    the kernel. A thread that waits on it reaps it the moment it exits.
    """
    process = getattr(executor_class, "_cleaner_process", None)
    if process is not None and process.poll() is None:
        threading.Thread(target=process.wait, name="fc_magic-reap-cleaner",
                         daemon=True).start()


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


# ------------------------------------------------------------------ aliyun_fc
#: Code packages up to this size go inline in CreateFunction (base64 in the
#: request, FC's 100 MB SDK limit); larger ones through an OSS code location.
INLINE_CODE_MAX_BYTES = 100 * 1024 * 1024
#: Credentials as Alibaba Cloud's own tools read them from the environment,
#: used when the Lithops config has none.
_ENV_KEYS = {"access_key_id": "ALIBABA_CLOUD_ACCESS_KEY_ID",
             "access_key_secret": "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
             "region": "ALIBABA_CLOUD_REGION_ID"}
_CONFIG_HINT = ("in your Lithops config (~/.lithops/config, ./.lithops_config or "
                "$LITHOPS_CONFIG_FILE, or %config FCMagic.config_file)")


@dataclass(frozen=True)
class AliyunEndpoints:
    """Endpoint overrides: VPC-internal endpoints inside Alibaba Cloud, or the sandbox."""

    fc: str | None = None
    oss: str | None = None


def function_timeout_s(request: MapRequest) -> int:
    """The FC function's own timeout: above the task timeout, which Lithops enforces.

    FC bills run time, not the configured timeout, so a generous one costs
    nothing and lets one function serve maps with different --timeout.
    """
    return min(max(request.timeout_s + 30, 900), 86_400)


def aliyun_settings(request: MapRequest) -> tuple[dict, AliyunEndpoints]:
    """(Lithops config, endpoint overrides) for an aliyun_fc map.

    Credentials come from the Lithops config as Lithops users keep it (file or
    $LITHOPS_CONFIG), sections ``aliyun`` (account_id, access_key_id,
    access_key_secret, region), ``aliyun_fc`` (role_arn) and ``aliyun_oss``
    (storage_bucket); fc_magic also reads ``endpoint`` in the last two. Raises
    `InputProblem` naming what is missing, never a value.
    """
    import copy

    from lithops.config import load_config

    problem = limits.python_problem()
    if problem:
        raise InputProblem(problem)
    try:
        user = copy.deepcopy(load_config(request.config_file, log=False) or {})
    except FileNotFoundError:
        raise InputProblem(f"the Lithops config file {request.config_file!r} does not exist; "
                           f"fix %config FCMagic.config_file") from None
    aliyun = dict(user.get("aliyun") or {})
    fc = dict(user.get("aliyun_fc") or {})
    oss = dict(user.get("aliyun_oss") or {})
    for key, env in _ENV_KEYS.items():
        if not aliyun.get(key) and not fc.get(key) and os.environ.get(env):
            aliyun[key] = os.environ[env]
    if request.region:
        aliyun["region"] = request.region
        fc.pop("region", None)
        oss.pop("region", None)
    missing = [k for k in ("access_key_id", "access_key_secret", "account_id", "region")
               if not (aliyun.get(k) or fc.get(k))]
    if missing:
        raise InputProblem(f"backend 'aliyun_fc' needs {', '.join(missing)} under 'aliyun:' "
                           f"{_CONFIG_HINT}")
    if not fc.get("role_arn"):
        raise InputProblem(f"backend 'aliyun_fc' needs the RAM role FC runs as: role_arn "
                           f"under 'aliyun_fc:' {_CONFIG_HINT}")
    endpoints = AliyunEndpoints(fc=request.fc_endpoint or fc.pop("endpoint", None) or None,
                                oss=request.oss_endpoint or oss.pop("endpoint", None) or None)
    fc.pop("endpoint", None)
    oss.pop("endpoint", None)
    fc.update(runtime_memory=request.memory_mb, runtime_timeout=function_timeout_s(request))
    if request.runtime:
        fc["runtime"] = request.runtime
    section = {"backend": "aliyun_fc", "storage": "aliyun_oss"}
    for key in ("monitoring_interval", "execution_timeout"):
        if key in (user.get("lithops") or {}):
            section[key] = user["lithops"][key]
    config = {"lithops": section, "aliyun": aliyun, "aliyun_fc": fc, "aliyun_oss": oss}
    for name, values in request.extra_config.items():
        config.setdefault(name, {}).update(values)
    return config, endpoints


def check_aliyun(request: MapRequest) -> None:
    """Everything an aliyun_fc map needs before it starts; `InputProblem` if not."""
    aliyun_settings(request)
    if not request.runtime or not request.package:
        raise InputProblem("backend 'aliyun_fc' runs tasks in a runtime built for Function "
                           "Compute; define one with %%fc_runtime NAME and its packages")
    if not os.path.isfile(request.package):
        raise InputProblem(f"the code package of runtime {request.runtime} is gone from the "
                           f"cache; run its %%fc_runtime cell again")


_ENDPOINT_LOCK = threading.Lock()


@contextlib.contextmanager
def _aliyun_endpoints(endpoints: AliyunEndpoints) -> Iterator[None]:
    """Point Lithops' aliyun backends at other endpoints while an executor is made.

    Lithops 3.8 recomputes the endpoints from account id and region inside
    ``load_config`` and has no setting for them; the module constants it
    formats are the narrowest place to change them. They are read only while
    the executor is built (the workers get the computed values in the
    payload), and put back afterwards.
    """
    from lithops.serverless.backends.aliyun_fc import config as fc_config
    from lithops.storage.backends.aliyun_oss import config as oss_config

    with _ENDPOINT_LOCK:
        saved = (fc_config.ENDPOINT, oss_config.PUBLIC_ENDPOINT, oss_config.INTERNAL_ENDPOINT)
        try:
            if endpoints.fc:
                fc_config.ENDPOINT = endpoints.fc.replace("{", "{{").replace("}", "}}")
            if endpoints.oss:
                oss = endpoints.oss.replace("{", "{{").replace("}", "}}")
                oss_config.PUBLIC_ENDPOINT = oss_config.INTERNAL_ENDPOINT = oss
            yield
        finally:
            fc_config.ENDPOINT, oss_config.PUBLIC_ENDPOINT, oss_config.INTERNAL_ENDPOINT = saved


class AliyunAuthError(InputProblem):
    """Alibaba Cloud refused the credentials (one line, never the secret)."""


def _auth_problem(exc: BaseException, config: dict) -> AliyunAuthError | None:
    """Turn an FC/OSS 403 on the credentials into one clear line."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    code = (getattr(exc, "code", None) or (getattr(exc, "details", None) or {}).get("Code")
            or "")
    auth_codes = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidAccessKeyId.NotFound",
                  "InvalidAccessKeyId.Inactive", "AccessDenied", "InvalidSecurityToken")
    if status != 403 and code not in auth_codes:
        return None
    service = "OSS" if hasattr(exc, "details") else "Function Compute"
    key_id = (config.get("aliyun") or {}).get("access_key_id", "")
    shown = f"{key_id[:4]}…{key_id[-2:]}" if len(key_id) > 8 else "(unset)"
    return AliyunAuthError(f"{service} refused the AccessKey {shown} ({code or status}): check "
                           f"access_key_id and access_key_secret under 'aliyun:' {_CONFIG_HINT}")


_PATCHED = False


def _patch_lithops_aliyun() -> None:
    """Work around Lithops 3.8 aliyun defects the real services expose (idempotent).

    1. ``aliyun_oss.list_objects/list_keys`` make ONE ListObjects call of at
       most 1000 keys, and job completion is detected by listing the job's
       prefix (about 3 keys per task): a map of more than ~330 tasks is never
       seen as finished. Replaced by versions that follow ``NextMarker``; and
       ``delete_objects`` then sends at most 1000 keys per batch, OSS's limit.
    2. ``aliyun_fc.invoke`` lets a throttled (429) or transient 5xx answer
       escape as an exception in an invoker thread nobody waits on, so that
       call is silently never run and the map never completes. Wrapped to
       retry with backoff, then to return None, which makes Lithops' invoker
       put the call back in its queue.
    """
    global _PATCHED
    if _PATCHED:
        return
    import oss2
    from lithops.serverless.backends.aliyun_fc.aliyun_fc import AliyunFunctionComputeBackend
    from lithops.storage.backends.aliyun_oss.aliyun_oss import (
        AliyunObjectStorageServiceBackend as OSSBackend,
    )
    from lithops.storage.utils import StorageNoSuchKeyError

    def list_all(self, bucket_name, prefix=None):
        bucket = self._connect_bucket(bucket_name)
        prefix = prefix or ""
        try:
            return list(oss2.ObjectIterator(bucket, prefix=prefix, max_keys=1000))
        except (oss2.exceptions.NoSuchKey, oss2.exceptions.NoSuchBucket):
            raise StorageNoSuchKeyError(bucket_name, prefix) from None

    def list_objects(self, bucket_name, prefix=None, match_pattern=None):
        return [{"Key": o.key, "Size": o.size} for o in list_all(self, bucket_name, prefix)]

    def list_keys(self, bucket_name, prefix=None):
        return [o.key for o in list_all(self, bucket_name, prefix)]

    original_delete = OSSBackend.delete_objects

    def delete_objects(self, bucket_name, key_list):
        for start in range(0, len(key_list), 1000):
            original_delete(self, bucket_name, key_list[start:start + 1000])

    original_invoke = AliyunFunctionComputeBackend.invoke

    def invoke(self, runtime_name, memory, payload=None):
        for attempt in range(INVOKE_ATTEMPTS):
            try:
                return original_invoke(self, runtime_name, memory, payload)
            except Exception as exc:
                status = getattr(exc, "status_code", None)
                transient = status == 429 or (status is not None and status >= 500) or \
                    type(exc).__name__ in ("RetryError", "UnretryableException")
                if not transient:
                    raise
                delay = min(INVOKE_BACKOFF_S * 2 ** attempt, 2.0) * (0.5 + random.random())
                logger.debug("invoke answered %s; retrying in %.2f s", status, delay)
                time.sleep(delay)
        return None  # Lithops' invoker re-queues a call whose invoke returned None

    OSSBackend.list_objects = list_objects
    OSSBackend.list_keys = list_keys
    OSSBackend.delete_objects = delete_objects
    AliyunFunctionComputeBackend.invoke = invoke
    _PATCHED = True


INVOKE_ATTEMPTS = 6
INVOKE_BACKOFF_S = 0.1


def _new_executor(request: MapRequest):
    """A Lithops FunctionExecutor for the request; for aliyun_fc, with its function deployed."""
    import lithops

    if request.backend != "aliyun_fc":
        return lithops.FunctionExecutor(config=lithops_config(request), log_level=None)
    config, endpoints = aliyun_settings(request)
    _patch_lithops_aliyun()
    try:
        with _aliyun_endpoints(endpoints):
            executor = lithops.FunctionExecutor(config=config, log_level=None)
    except Exception as exc:
        raise (_auth_problem(exc, config) or exc) from None
    _plain_http(executor, endpoints)
    try:
        if request.package:
            deploy_package(executor, request)
    except Exception as exc:
        with contextlib.suppress(Exception):
            executor.job_monitor.stop()
        problem = _auth_problem(exc, config)
        if problem is not None:
            raise problem from None
        raise
    return executor


def _plain_http(executor, endpoints: AliyunEndpoints) -> None:
    """Tell Lithops' FC client that an ``http://`` endpoint override is plain HTTP.

    Lithops builds the client without a protocol, so every call says HTTPS
    and the tea SDK mounts its connection pool (40) for https:// only; calls
    to a plain-http endpoint (the sandbox) then go through requests' default
    pool of 10, and Lithops' 32 invoke threads make urllib3 print
    "Connection pool is full" into the cell.
    """
    if endpoints.fc and endpoints.fc.startswith("http://"):
        executor.compute_handler.backend.fc_client._protocol = "http"


class RuntimeStartProblem(InputProblem):
    """The deployed package cannot start Lithops' handler on FC (one line)."""


_START_ERRORS = ("ModuleNotFoundError", "ImportError", "SyntaxError", "AttributeError")


def _first_metadata(backend, function_name: str, runtime: str) -> dict | None:
    """One metadata invocation: the metadata, None if not ready, or a clear error.

    Lithops' ``_generate_runtime_meta`` retries any ``errorMessage`` 24 times,
    5 s apart, because a fresh zip function may not answer yet; a package
    whose handler cannot even be imported answers the same error every time,
    so the user would wait two minutes for a generic exception. An import
    failure is reported at once instead.
    """
    import io
    import json

    from alibabacloud_fc20230330 import models as fc_models
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as lithops_fc

    payload = json.dumps({"get_metadata": True, "log_level": logging.WARNING}).encode()
    try:
        res = backend.fc_client.invoke_function_with_options(
            function_name, fc_models.InvokeFunctionRequest(body=io.BytesIO(payload)),
            fc_models.InvokeFunctionHeaders(x_fc_invocation_type="Sync"),
            lithops_fc.FC_INVOKE_RUNTIME)
        meta = json.loads(lithops_fc._read_invoke_body(res))
    except Exception:
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("errorType") in _START_ERRORS:
        raise RuntimeStartProblem(
            f"runtime {runtime} cannot start on Function Compute: {meta['errorType']}: "
            f"{str(meta.get('errorMessage', ''))[:200]}; rebuild its package with "
            f"%%fc_runtime --rebuild") from None
    return meta if "preinstalls" in meta else None


def _package_digest(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def deploy_package(executor, request: MapRequest) -> bool:
    """Make sure FC runs ``request.package`` as the function for (runtime, memory).

    Checks FC itself on every map instead of trusting Lithops' runtime
    metadata cache (kept in memory and under ~/.lithops/cache by runtime name):
    after the function was deleted, or on another account or endpoint, that
    cache says "deployed" and Lithops invokes a function that does not exist,
    losing every call. The package's digest is kept in the function's
    description, so a changed package is redeployed. Returns True when it
    (re)deployed.
    """
    import base64

    from alibabacloud_fc20230330 import models as fc_models
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as lithops_fc
    from lithops.storage import storage as lithops_storage

    backend = executor.compute_handler.backend
    internal = executor.internal_storage
    name = backend._format_function_name(request.runtime, request.memory_mb)
    timeout = function_timeout_s(request)
    digest = _package_digest(request.package)
    marker = f"fc_magic package sha256:{digest[:32]}"
    try:
        current = backend._get_function(name)
    except Exception as exc:
        if not lithops_fc._is_not_found_error(exc):
            raise
        current = None
    # Lithops stops a task 5 s before the function's own timeout.
    needed = min(request.timeout_s + 5, function_timeout_s(request))
    fresh = not (current is not None and current.description == marker
                 and (current.timeout or 0) >= needed)
    if fresh:
        if current is not None:
            backend.fc_client.delete_function(name)
        size = os.path.getsize(request.package)
        oss_key = None
        if size <= INLINE_CODE_MAX_BYTES:
            with open(request.package, "rb") as f:
                code = fc_models.InputCodeLocation(
                    zip_file=base64.b64encode(f.read()).decode())
        else:
            oss_key = f"fc_magic/packages/{digest}.zip"
            with open(request.package, "rb") as f:
                internal.storage.put_object(internal.bucket, oss_key, f)
            code = fc_models.InputCodeLocation(oss_bucket_name=internal.bucket,
                                               oss_object_name=oss_key)
        logger.info("deploying %s (%d bytes, %s)", name, size,
                    "inline" if oss_key is None else "via OSS")
        body = fc_models.CreateFunctionInput(
            function_name=name, runtime=f"python{limits.python_version()}",
            handler="entry_point.main", code=code, memory_size=request.memory_mb,
            timeout=timeout, role=backend.role_arn, internet_access=True, description=marker)
        try:
            backend.fc_client.create_function(fc_models.CreateFunctionRequest(body=body))
        finally:
            if oss_key is not None:
                with contextlib.suppress(Exception):
                    internal.storage.delete_object(internal.bucket, oss_key)
    key = backend.get_runtime_key(request.runtime, request.memory_mb)
    if fresh or internal.get_runtime_meta(key) is None:
        meta = _first_metadata(backend, name, request.runtime)
        if meta is None:  # not answering yet: Lithops' own wait-and-retry loop
            meta = backend._generate_runtime_meta(
                name, max_attempts=lithops_fc.ZIP_METADATA_MAX_ATTEMPTS,
                retry_sleep=lithops_fc.ZIP_METADATA_RETRY_SLEEP)
        meta["runtime_timeout"] = current.timeout if not fresh else timeout
        internal.put_runtime_meta(key, meta)
        lithops_storage.RUNTIME_META_CACHE[internal._runtime_meta_refs(key)[1]] = meta
    return fresh
