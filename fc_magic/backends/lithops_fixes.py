"""Every workaround of a Lithops defect, in one place, each with its reason and its test.

Seen in Lithops 3.8.x. Each fix is applied to the executors fc_magic makes
(instance attributes, not Lithops' classes), so another Lithops user in the
same kernel keeps stock Lithops. A Lithops outside the tested range gives one
warning naming that range (`check_version`).

| fix | defect | test that fails without it |
|---|---|---|
| `page_oss_listings` | OSS listings stop at 1000 keys: a map of > ~330 tasks never ends | test_sandbox_map.py::test_listing_pages_past_1000_keys, ::test_a_map_of_1500_tasks_completes |
| `page_storage_listings` (object_input.py) | the same cut at 1000 keys in the listing of `%fc_map FUNC oss://bucket/prefix/` | test_object_input.py::test_1500_objects_under_a_prefix_are_1500_tasks_each_key_once |
| `object_handle.owned_blocks` (object_input.py) | Lithops' line-split chunks (`WrappedStreamingBodyPartition`) drop the last byte of an object with no final newline, cut a line running over 128 KB past the chunk end, and cannot stream (`read(n)`, `readline` on oss2) | test_object_input.py::test_chunks_on_line_boundaries_hold_every_line_once |
| `retry_throttled_invokes` | a 429/5xx invoke drops its call silently | test_sandbox_map.py::test_throttled_invoke_is_retried_not_raised |
| `aliyun_endpoints` | no endpoint setting; module constants are the only hook | every map in test_sandbox_map.py |
| `plain_http_pool` | a plain-http FC endpoint gets a 10-connection pool: "pool is full" in the cell | test_sandbox_map.py::test_injected_throttling_and_5xx_lose_no_result |
| `task_function` | parameters named obj/id/storage/... get Lithops' own meaning; a tuple item is spread and a dict taken as keywords; the items' data limit (4 MB) and per-task copies for a constant | test_map_magic.py::test_parameter_names_lithops_reserves_behave_like_map, test_map_forms.py::test_a_50_mb_constant_is_stored_once_per_map |
| `task_function`, `unpack_task_value` | what a task prints is lost in the worker's log | test_receipt.py::test_task_output_is_captured_bounded_and_escaped |
| `reduce_function`, two-stage reduce (job.py) | `map_reduce()` blocks until its reducer is spawned and reduces whatever finished; its reducer's parameter names get Lithops' meaning | test_map_reduce.py::test_a_failed_task_stops_the_reduce_unless_partial, ::test_the_reducer_runs_remotely_over_results_in_input_order |
| bare `_exception` (job.py `_failure_from_future`) | an interrupted `wait()` marks its futures failed with `Exception()` instead of exc info: reading them raised TypeError after a Ctrl-C | test_map_forms.py::test_futures_an_interrupted_wait_marked_failed_read_as_cancelled, test_views_kernel.py::test_kernel_interrupt_cancels_and_the_kernel_stays_usable (timing) |
| `one_executor_setup_at_a_time` | two executors set up at once in one process (a background map and another map) stage the localhost runner under the same `<runner>.<pid>.tmp` name: one fails with FileNotFoundError, or installs a runner the other was still writing | test_background.py::test_two_maps_started_together_in_threads_both_complete |
| `leave_session_to_ourselves` | a child process joins this process's Lithops session and reads its results | test_views_kernel.py::test_a_process_started_after_a_map_does_not_share_its_lithops_session |
| `reap_cleaner`, `forget_executor_at_exit` | a zombie cleaner per session; every executor alive until exit | test_reliability_map.py::test_a_map_leaves_no_processes_threads_handles_or_job_data |
| `quiet_lithops` | Lithops logs its own failure warnings into the cell | test_map_magic.py::test_failures_keep_other_results_and_show_remote_traceback |
| `private_temp_dir` | localhost job data and runner sit in a predictable folder others can read or plant | test_reliability_attacks.py::test_another_user_cannot_read_a_running_maps_data, ::test_a_folder_planted_by_another_user_is_refused_and_its_code_never_runs |
| `runner_sessions`, `kill_sessions` | a timed-out task ignoring SIGTERM, or a task's background process, outlives the map | test_reliability_attacks.py::test_a_task_that_ignores_sigterm_does_not_outlive_its_timeout, ::test_a_background_process_a_task_started_ends_with_the_map |
| `aliyun_endpoints` (HTTPS defaults) | Lithops' OSS endpoints have no scheme: oss2 speaks plain HTTP, and Lithops unpickles the answers | test_reliability_attacks.py::test_default_oss_endpoints_speak_https_so_a_proxy_cannot_rewrite_them |
| absolute runtime path (localhost.py) | a bare `python` on PATH makes every task die silently | test_map_magic.py::test_runtime_is_an_absolute_interpreter |
| `sized_function_names` | function names hash (runtime, memory) only: two vCPU settings at one memory share and keep replacing one function | test_deploy_once.py::test_three_memory_sizes_and_two_cpus_upload_the_package_once |
| `aliyun_endpoints` (credentials) | FC client and OSS auth take a static AccessKey pair: no STS token, no refresh | test_aliyun_credentials.py::test_sts_token_from_the_environment_runs_a_map |
| `delete_job_data` | the background cleaner gets the secret in a pickle file and cannot sign with a token | test_aliyun_credentials.py::test_sts_token_from_the_environment_runs_a_map |
| `strip_invoke_credentials` + `fc_entry_point` (the FC handler) | every invoke payload and every worker's `LITHOPS_CONFIG` carry the user's AccessKey secret and token | test_aliyun_credentials.py::test_no_user_secret_or_token_in_payloads_or_worker_environments |
| `fc_entry_point` (per-process OSS connections) | the worker forks the task process while its OSS client holds a pooled connection: parent and child interleave requests on one socket | test_aliyun_credentials.py::test_500_tasks_under_concurrency_have_no_task_errors |
| `remember_request_ids` | the invoker drops FC's request id, so a task killed before it wrote its status cannot be found in FC's logs | test_sandbox_map.py::test_failures_carry_fc_request_ids_and_the_receipt_says_where_the_logs_are |
| deploy check (aliyun_deploy.py) | stale "deployed" metadata after the function is gone loses every call | test_sandbox_map.py::test_deleted_function_is_redeployed_through_an_oss_code_location |
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import threading
import time
import types
import warnings
from typing import Any, Callable, Iterator

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .lithops_facts import TESTED_LITHOPS, lithops_version

logger = logging.getLogger(__name__)

_VERSION_CHECKED = False


def check_version() -> None:
    """Warn once per process when the installed Lithops is outside the tested range."""
    global _VERSION_CHECKED
    if _VERSION_CHECKED:
        return
    _VERSION_CHECKED = True
    tested = SpecifierSet(",".join(TESTED_LITHOPS))
    try:
        inside = Version(lithops_version()) in tested
    except InvalidVersion:
        inside = False
    if not inside:
        warnings.warn(f"fc_magic is tested with lithops{tested}, this kernel has "
                      f"{lithops_version()}; its Lithops workarounds may not fit it",
                      stacklevel=2)


# --------------------------------------------------------------------- all backends
@contextlib.contextmanager
def quiet_lithops() -> Iterator[None]:
    """Keep Lithops' own warnings ("There was an exception ...") out of the cell.

    fc_magic reports failures itself; a user who configured the lithops
    logger (a handler or a level of their own) keeps what they asked for.
    """
    lithops_logger = logging.getLogger("lithops")
    untouched = not lithops_logger.handlers and lithops_logger.level == logging.NOTSET
    if untouched:
        # Its monitor logs every failed storage poll with a traceback; the
        # map's own report says what matters, once.
        lithops_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        if untouched:
            lithops_logger.setLevel(logging.NOTSET)


TASK_MODULE = "fc_magic_task"
TASK_NAME = "__fc_magic_task__"
#: How a task calls FUNC with its item (`--star`, `--kwargs`); constants are keywords.
CALL_FORMS = {
    "item": "func(item, **constants)",
    "star": "func(*item, **constants)",
    "kwargs": "func(**item, **constants)",
}

#: The key of the dict a task returns: {OUTPUT_KEY: (value, output)}.
OUTPUT_KEY = "__fc_magic_output__"
#: Characters of a task's stdout+stderr kept (its tail); the rest is cut with a marker.
OUTPUT_LIMIT = 64 * 1024
#: The wrapper the worker runs. It imports only the standard library: the
#: worker has no fc_magic. Output is captured at the Python level (print,
#: sys.stdout/sys.stderr writes, logging to them), bounded to its tail, and
#: travels back with the value, or on the exception when the function raised.
_TASK_SOURCE = f"""
import io as _io
import sys as _sys


class _Tail(_io.TextIOBase):
    def __init__(self, limit):
        self.limit, self.parts, self.size, self.cut = limit, [], 0, 0

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * self.limit:
            self._trim()
        return len(text)

    def _trim(self):
        whole = "".join(self.parts)
        keep = whole[-self.limit:]
        self.cut += len(whole) - len(keep)
        self.parts, self.size = [keep], len(keep)

    def text(self):
        if self.size > self.limit:
            self._trim()
        whole = "".join(self.parts)
        if self.cut:
            whole = ("[fc_magic: the first %d characters of this task's output were cut; "
                     "the last %d are kept]\\n" % (self.cut, self.limit)) + whole
        return whole


def {TASK_NAME}(item):
    tail = _Tail({OUTPUT_LIMIT})
    saved = _sys.stdout, _sys.stderr
    _sys.stdout = _sys.stderr = tail
    try:
        value = _CALL_FORM_
    except BaseException as exc:
        _sys.stdout, _sys.stderr = saved
        try:
            exc.{OUTPUT_KEY} = tail.text()
        except Exception:
            pass
        raise
    _sys.stdout, _sys.stderr = saved
    return {{"{OUTPUT_KEY}": (value, tail.text())}}
"""


def task_function(func: Callable, call: str = "item",
                  constants: dict[str, Any] | None = None) -> Callable:
    """Wrap ``func`` so Lithops calls it exactly like ``map()`` would, its output captured.

    Lithops gives some parameter names a meaning of its own: ``obj`` turns
    the map into a storage partitioner, and ``id``, ``storage``, ``ibm_cos``
    and ``rabbitmq`` are overwritten by the worker. ``def f(id)`` would get
    the call id instead of the item, and ``len`` (parameter ``obj``) fails
    with "No objects found". The wrapper has one neutral parameter. It lives
    in a module that cannot be imported, so cloudpickle ships it by value and
    the worker never needs fc_magic installed.

    Lithops also drops what a task prints (it goes to the worker's log). The
    wrapper captures the task's stdout and stderr, keeps the last
    `OUTPUT_LIMIT` characters with a marker saying what was cut, and returns
    ``{OUTPUT_KEY: (value, output)}``; a raised exception carries the output
    as its ``OUTPUT_KEY`` attribute (exceptions pickle their ``__dict__``).
    `unpack_task_value` and `task_output_of` read them back.

    ``call`` spreads the item (`CALL_FORMS`); ``constants`` are keyword
    arguments every call gets. They sit in the wrapper's globals, so they are
    pickled with the function: Lithops stores the function once per job, not
    once per task, and its per-job data limit (the items) never sees them.
    """
    source = _TASK_SOURCE.replace("_CALL_FORM_", CALL_FORMS[call])
    namespace = {"__name__": TASK_MODULE, "func": func, "constants": dict(constants or {})}
    exec(compile(source, f"<{TASK_MODULE}>", "exec"), namespace)
    task = namespace[TASK_NAME]
    task.__name__ = task.__qualname__ = getattr(func, "__name__", "task")
    return task


def unpack_task_value(value: Any) -> tuple[Any, str]:
    """(the function's value, its output) from what `task_function`'s wrapper returned."""
    if isinstance(value, dict) and len(value) == 1 and OUTPUT_KEY in value:
        packed = value[OUTPUT_KEY]
        return packed[0], packed[1]
    return value, ""


def task_output_of(exc: BaseException | None) -> str:
    """The output a failed task printed before it raised ('' when it did not travel)."""
    output = getattr(exc, OUTPUT_KEY, "")
    return output if isinstance(output, str) else ""


REDUCE_NAME = "__fc_magic_reduce__"


def reduce_function(reducer: Callable) -> Callable:
    """Wrap a `--reduce` function for Lithops' reduce job, as `task_function` wraps FUNC.

    Lithops hands the reduce job's first parameter the list of map results
    (read from storage on the worker) and gives parameter names such as
    ``obj`` or ``id`` its own meaning; the wrapper's one neutral parameter
    keeps ``G(results)`` exactly what the user wrote. Each result is what
    `task_function`'s wrapper returned, so it is unpacked to FUNC's own value
    on the worker (which has no fc_magic to import) before G sees it.
    """
    namespace = {"__name__": TASK_MODULE, "reducer": reducer}
    source = (f"def _value(packed):\n"
              f"    if isinstance(packed, dict) and len(packed) == 1 and {OUTPUT_KEY!r} in packed:\n"
              f"        return packed[{OUTPUT_KEY!r}][0]\n"
              f"    return packed\n"
              f"def {REDUCE_NAME}(results):\n"
              f"    return reducer([_value(r) for r in results])\n")
    exec(compile(source, f"<{TASK_MODULE}>", "exec"), namespace)
    wrapper = namespace[REDUCE_NAME]
    wrapper.__name__ = wrapper.__qualname__ = getattr(reducer, "__name__", "reduce")
    return wrapper


_SETUP_LOCK = threading.Lock()


@contextlib.contextmanager
def one_executor_setup_at_a_time() -> Iterator[None]:
    """Create Lithops executors one after another in this process.

    Each new localhost executor installs its runner script by copying it to
    ``<runner>.<pid>.tmp`` and renaming that over the runner. The staging
    name is per process, not per thread: two maps starting together (a
    background map and a foreground one) write the same file, and one's
    rename fails with FileNotFoundError, or moves a half-written runner into
    place. Setting up takes milliseconds once the package is copied.
    """
    with _SETUP_LOCK:
        yield


def forget_executor_at_exit(executor: Any) -> None:
    """Lithops registers every executor with atexit; a long session would keep each alive."""
    atexit.unregister(executor._clean_at_exit)


#: Environment variables through which Lithops hands its session to child processes.
_SESSION_VARIABLES = ("__LITHOPS_SESSION_ID", "__LITHOPS_TOTAL_EXECUTORS")


def leave_session_to_ourselves() -> None:
    """Keep Lithops' session out of the environment of processes we start.

    Lithops exports its session id and executor count so that a process
    spawned from this one "joins the session". A kernel, `fc-magic run` or
    any script started after a map then numbers its executors exactly like
    this process does and, sharing the job folder, one reads the other's job
    results: the next map here silently returned the child's values. This
    process keeps counting in `lithops.utils`; children start their own.
    """
    for name in _SESSION_VARIABLES:
        os.environ.pop(name, None)


def reap_cleaner() -> None:
    """Wait for Lithops' background data cleaner in a daemon thread.

    Lithops starts the cleaner with Popen and only polls it when it starts
    the next one, so the last cleaner of a session stays a zombie child of
    the kernel. A thread that waits on it reaps it the moment it exits.
    """
    from lithops import FunctionExecutor

    process = getattr(FunctionExecutor, "_cleaner_process", None)
    if process is not None and process.poll() is None:
        try:
            threading.Thread(target=process.wait, name="fc_magic-reap-cleaner",
                             daemon=True).start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            logger.debug("the process is ending: Lithops' cleaner is left to init to reap")


# --------------------------------------------------------------------- local processes and files
def lithops_temp_dir() -> str:
    """The folder Lithops keeps localhost job data, runner and logs in (as Lithops computes it)."""
    import tempfile

    return os.path.join(os.path.realpath(tempfile.gettempdir()),
                        f"lithops-{os.getenv('USER', 'root')}")


def private_temp_dir(path: str | None = None) -> str:
    """Make Lithops' job folder private to this user, or refuse a folder someone else controls.

    Lithops keeps localhost job data (pickled inputs, results) and the runner
    it executes in ``$TMPDIR/lithops-$USER``, a name anyone can predict, and
    creates it with the default umask. Another local user could then read a
    map's inputs, or create the folder first and have their code run inside
    the map. The folder is created 0700 here; an existing one must be a real
    directory owned by this user and writable by nobody else (then it is
    tightened to 0700). Anything else is one `InputProblem` naming the fix.
    """
    import stat

    from ..errors import InputProblem

    path = path or lithops_temp_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    fix = f"remove it (rm -rf {path}) or set TMPDIR to a folder of your own"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InputProblem(f"Lithops' job folder {path} is not a plain folder; {fix}")
    if info.st_uid != os.getuid():
        raise InputProblem(f"Lithops' job folder {path} belongs to another user, who could "
                           f"read this map's data or run code in it; {fix}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InputProblem(f"Lithops' job folder {path} is writable by other users, who could "
                           f"have planted code in it; {fix}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path



def runner_sessions(executor: Any) -> set[int]:
    """Session ids of this executor's localhost job runners (empty on other backends)."""
    env = getattr(executor.compute_handler, "env", None)  # the localhost handler's
    return {p.pid for p in getattr(env, "jobs", {}).values()}


def kill_sessions(sessions: set[int]) -> int:
    """Kill every process still in ``sessions``; returns how many were killed.

    Lithops starts each localhost job's runner in a session of its own, but on
    a task timeout it only sends SIGTERM (a task that ignores it keeps
    running), and on cancel it kills the runner's group only while the runner
    itself is alive: a background process a task started outlives the map.
    So at the end of a map every process left in those sessions is killed.
    Sessions are taken before Lithops' own cancel forgets its runners.
    """
    import signal

    import psutil

    killed = 0
    if not sessions:
        return killed
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) in sessions:
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
        except (ProcessLookupError, PermissionError):
            continue
    if killed:
        logger.debug("killed %d process(es) left behind by the map's tasks", killed)
    return killed


# --------------------------------------------------------------------- aliyun
_ENDPOINT_LOCK = threading.Lock()


@contextlib.contextmanager
def aliyun_endpoints(fc: str | None, oss_public: str, oss_internal: str,
                     credentials: Any = None) -> Iterator[None]:
    """Point Lithops' aliyun backends at these endpoints while an executor is built.

    Lithops 3.8 computes the endpoints from account id and region inside
    ``load_config`` and has no setting for them; the module constants it
    formats (``{}`` is the region) are the narrowest place to change them.
    Its own OSS defaults carry no scheme, so oss2 would speak plain HTTP:
    fc_magic always passes ``https://`` ones. The lock is held for the whole
    build, so two threads building executors never see each other's
    endpoints; the workers get the computed values in their payload.

    ``credentials`` (an `aliyun_credentials.CredentialSource`): Lithops 3.8
    builds its FC client and its OSS auth from a static AccessKey pair
    (``oss2.Auth``: no security token, no refresh), and checks the bucket
    while the executor is built. With a source, the executor's clients are
    built to ask it on every request (a token refreshed before it expires).
    """
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as fc_module
    from lithops.serverless.backends.aliyun_fc import config as fc_config
    from lithops.storage.backends.aliyun_oss import aliyun_oss as oss_module
    from lithops.storage.backends.aliyun_oss import config as oss_config

    def literal(url: str) -> str:  # keep the braces of a literal URL from str.format
        return url.replace("{}", "\0").replace("{", "{{").replace("}", "}}").replace("\0", "{}")

    with _ENDPOINT_LOCK:
        saved = (fc_config.ENDPOINT, oss_config.PUBLIC_ENDPOINT, oss_config.INTERNAL_ENDPOINT)
        saved_clients = (fc_module._init_fc3_client, oss_module.oss2)
        try:
            if fc:
                fc_config.ENDPOINT = literal(fc)
            oss_config.PUBLIC_ENDPOINT = literal(oss_public)
            oss_config.INTERNAL_ENDPOINT = literal(oss_internal)
            if credentials is not None:
                fc_module._init_fc3_client = _fc_client_factory(credentials)
                oss_module.oss2 = _oss2_with_provider(credentials)
            yield
        finally:
            fc_config.ENDPOINT, oss_config.PUBLIC_ENDPOINT, oss_config.INTERNAL_ENDPOINT = saved
            fc_module._init_fc3_client, oss_module.oss2 = saved_clients


def _fc_client_factory(credentials: Any) -> Callable:
    """Lithops' ``_init_fc3_client``, with a client that asks ``credentials`` on every call."""
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_fc20230330.client import Client as FC3Client
    from alibabacloud_tea_openapi import models as open_api_models

    def init_fc3_client(_access_key_id, _access_key_secret, region, endpoint):
        return FC3Client(open_api_models.Config(
            credential=CredentialClient(provider=credentials.provider), region_id=region,
            endpoint=endpoint))

    return init_fc3_client


def _oss2_with_provider(credentials: Any) -> Any:
    """oss2 as Lithops' OSS backend sees it, whose ``Auth`` signs with ``credentials``' current ones.

    ``oss2.ProviderAuth`` asks its provider on every request and sends the
    security token when there is one.
    """
    import oss2

    shim = types.ModuleType("oss2")
    shim.__dict__.update(vars(oss2))
    shim.Auth = lambda _key_id, _secret: oss2.ProviderAuth(credentials)
    return shim


def delete_job_data(executor: Any, futures: list) -> None:
    """Delete a map's job data here, through the executor's own storage client.

    Lithops' background cleaner is a new process given the storage config in
    a pickle file: the AccessKey secret on disk, and a client that cannot
    sign with a security token (so STS credentials left the data behind).
    """
    import oss2
    from lithops.constants import JOBS_PREFIX

    internal = executor.internal_storage
    prefixes = {f"{JOBS_PREFIX}/{f.job_key}/" for f in futures}
    # The localhost runner's job description sits beside the job's folder; a
    # job cancelled before its runner took it would leave it behind.
    prefixes |= {f"{JOBS_PREFIX}/{f.job_key}-job.json" for f in futures}
    prefixes.add(f"{JOBS_PREFIX}/{executor.executor_id}/")
    for prefix in sorted(prefixes):
        try:
            keys = internal.storage.list_keys(internal.bucket, prefix)
            if keys:
                internal.storage.delete_objects(internal.bucket, keys)
        except (oss2.exceptions.OssError, OSError) as exc:  # data left costs storage only
            logger.debug("could not delete job data under %s: %s", prefix, type(exc).__name__)


def sized_function_names(executor: Any, cpu: float,
                         name: Callable[[str, int, float, str], str]) -> None:
    """Name this executor's FC functions after (runtime, memory, vCPU), not (runtime, memory).

    Lithops 3.8 derives the function it creates and invokes from runtime and
    memory alone; fc_magic creates each function with an explicit vCPU, so a
    second vCPU setting at the same memory would land on the first one's
    function. The executor is made per map, with one vCPU value.
    """
    backend = executor.compute_handler.backend
    stock = type(backend)._format_function_name

    def format_name(runtime_name, runtime_memory, version=None):
        if version is None:
            version = stock.__defaults__[0] if stock.__defaults__ else lithops_version()
        return name(runtime_name, int(runtime_memory), cpu, version)

    backend._format_function_name = format_name


def page_oss_listings(executor: Any) -> None:
    """Make this executor's OSS listings follow ``NextMarker`` past 1000 keys.

    ``aliyun_oss.list_objects/list_keys`` make ONE ListObjects call of at
    most 1000 keys, and job completion is detected by listing the job's
    prefix (about 3 keys per task): a map of more than ~330 tasks is never
    seen as finished. ``delete_objects`` then sends at most 1000 keys per
    batch, OSS's limit.
    """
    page_storage_listings(executor.internal_storage.storage)


def page_storage_listings(storage: Any) -> None:
    """`page_oss_listings` for a Lithops ``Storage`` of aliyun_oss (object-map listings too)."""
    import oss2
    from lithops.storage.utils import StorageNoSuchKeyError

    handler = storage.storage_handler

    def list_all(self, bucket_name, prefix=None):
        bucket = self._connect_bucket(bucket_name)
        try:
            return list(oss2.ObjectIterator(bucket, prefix=prefix or "", max_keys=1000))
        except (oss2.exceptions.NoSuchKey, oss2.exceptions.NoSuchBucket):
            raise StorageNoSuchKeyError(bucket_name, prefix or "") from None

    def list_objects(self, bucket_name, prefix=None, match_pattern=None):
        return [{"Key": o.key, "Size": o.size} for o in list_all(self, bucket_name, prefix)]

    def list_keys(self, bucket_name, prefix=None):
        return [o.key for o in list_all(self, bucket_name, prefix)]

    delete_batch = handler.delete_objects

    def delete_objects(self, bucket_name, key_list):
        for start in range(0, len(key_list), 1000):
            delete_batch(bucket_name, key_list[start:start + 1000])

    for name, method in (("list_objects", list_objects), ("list_keys", list_keys),
                         ("delete_objects", delete_objects)):
        setattr(handler, name, types.MethodType(method, handler))


INVOKE_ATTEMPTS = 6
INVOKE_BACKOFF_S = 0.1


def _transient(exc: BaseException) -> bool:
    """A throttled (429) or server-side (5xx) answer, or the SDK giving up on the network."""
    status = getattr(exc, "status_code", None)
    return (status == 429 or (status is not None and status >= 500)
            or type(exc).__name__ in ("RetryError", "UnretryableException"))


def retry_throttled_invokes(executor: Any) -> None:
    """Retry this executor's throttled invokes instead of dropping their calls.

    ``aliyun_fc.invoke`` lets a throttled (429) or transient 5xx answer
    escape as an exception in an invoker thread nobody waits on, so that call
    is silently never run and the map never completes. Retried with backoff,
    then None is returned, which makes Lithops' invoker re-queue the call.
    """
    backend = executor.compute_handler.backend
    original = backend.invoke

    def invoke(runtime_name, memory, payload=None):
        for attempt in range(INVOKE_ATTEMPTS):
            try:
                return original(runtime_name, memory, payload)
            except Exception as exc:  # the tea SDK's error types vary; _transient sorts them
                if not _transient(exc):
                    raise
                delay = min(INVOKE_BACKOFF_S * 2 ** attempt, 2.0) * (0.5 + random.random())
                logger.debug("invoke answered %s; retrying in %.2f s",
                             getattr(exc, "status_code", type(exc).__name__), delay)
                time.sleep(delay)
        return None  # Lithops' invoker re-queues a call whose invoke returned None

    backend.invoke = invoke


#: Where `remember_request_ids` keeps an executor's invoke answers: (job_key, call_id) -> id.
REQUEST_IDS = "_fc_magic_request_ids"


def remember_request_ids(executor: Any) -> None:
    """Keep the ``x-fc-request-id`` FC answered each invoke with, per call.

    Lithops' invoker only logs it. The worker reports the same id in the
    call's status (Lithops' FC entry point exports ``context.request_id`` as
    its activation id), but a task killed by a timeout or out of memory writes
    no status: then this is the only way to its logs.
    """
    backend = executor.compute_handler.backend
    original = backend.invoke
    ids: dict[tuple[str, str], str] = {}
    setattr(executor, REQUEST_IDS, ids)

    def invoke(runtime_name, memory, payload=None):
        request_id = original(runtime_name, memory, payload)
        if request_id and isinstance(payload, dict):
            for call_id in payload.get("call_ids") or ():
                ids[(payload.get("job_key"), call_id)] = str(request_id)
        return request_id

    backend.invoke = invoke


def request_id_of(executor: Any, future: Any) -> str:
    """FC's request id for a task: the worker's own report, else the invoke's answer."""
    reported = getattr(future, "activation_id", None)
    if reported:
        return str(reported)
    ids = getattr(executor, REQUEST_IDS, None) or {}
    return ids.get((getattr(future, "job_key", None), getattr(future, "call_id", None)), "")


#: Credentials in a Lithops config section (what the workers must never get).
CREDENTIAL_KEYS = ("access_key_id", "access_key_secret", "security_token")


def without_credentials(config: dict) -> dict:
    """A copy of a Lithops config with no credentials in any section."""
    return {name: ({k: v for k, v in section.items() if k not in CREDENTIAL_KEYS}
                   if isinstance(section, dict) else section)
            for name, section in config.items()}


def strip_invoke_credentials(executor: Any) -> None:
    """Send this executor's invokes without the user's AccessKey secret or token.

    Lithops puts its whole config, the user's key pair included, in every
    invoke payload; its worker then exports it to the user's function as
    ``LITHOPS_CONFIG``. fc_magic's FC handler (`fc_entry_point`) signs OSS with
    the function's role (FC's ``context.credentials``), so the payload needs none.
    """
    backend = executor.compute_handler.backend
    original = backend.invoke
    stripped: dict[int, tuple[dict, dict]] = {}  # id(config) -> (config, its copy)

    def invoke(runtime_name, memory, payload=None):
        config = (payload or {}).get("config")
        if isinstance(config, dict):
            held = stripped.get(id(config))
            if held is None or held[0] is not config:
                held = stripped[id(config)] = (config, without_credentials(config))
            payload = {**payload, "config": held[1]}
        return original(runtime_name, memory, payload)

    backend.invoke = invoke


def plain_http_pool(executor: Any, fc_endpoint: str | None) -> None:
    """Tell Lithops' FC client that an ``http://`` endpoint override is plain HTTP.

    Lithops builds the client without a protocol, so every call says HTTPS
    and the tea SDK mounts its connection pool (40) for https:// only; calls
    to a plain-http endpoint (the sandbox) then go through requests' default
    pool of 10, and Lithops' 32 invoke threads make urllib3 print
    "Connection pool is full" into the cell.
    """
    if fc_endpoint and fc_endpoint.startswith("http://"):
        executor.compute_handler.backend.fc_client._protocol = "http"
