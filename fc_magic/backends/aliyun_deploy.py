"""Deploying a runtime as the FC function Lithops invokes: from its package in OSS, checked against FC."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import uuid
from typing import Any, Callable

from .. import limits
from ..digest import file_sha256
from ..errors import InputProblem, ServiceUnavailable
from .aliyun_store import CHECKED_ROLES, RuntimeStore, SharedRuntime, package_key
from .request import MapRequest

logger = logging.getLogger(__name__)

#: fc_magic's instance initializer in every package (`fc_entry_point.initializer`).
INITIALIZER = "entry_point.initializer"
#: Its hook timeout: preloading stops starting imports well before (PRELOAD_BUDGET_S).
INITIALIZER_TIMEOUT_S = 300
#: Errors a freshly created function answers while it is not ready yet.
_START_ERRORS = ("ModuleNotFoundError", "ImportError", "SyntaxError", "AttributeError")
#: HTTP statuses of a metadata call that mean "not ready yet, ask again".
_NOT_READY = (404, 409, 412, 429, 500, 502, 503, 504)


class RuntimeStartProblem(InputProblem):
    """The deployed package cannot start Lithops' handler on FC (one line)."""


class FunctionRoleProblem(InputProblem):
    """The function's RAM role is missing or cannot use the bucket (one line, at deploy)."""


#: The function role's minimal RAM policy (the README gives it in full).
ROLE_POLICY = ("oss:GetObject, oss:PutObject, oss:DeleteObject on "
               "acs:oss:*:*:{bucket}/lithops.jobs/* and oss:ListObjects on acs:oss:*:*:{bucket}")
#: The metadata invocation's key asking for the role check: fc_entry_point.ROLE_CHECK
#: (not importable here: that module imports Lithops' handler, present only on FC).
ROLE_CHECK_KEY = "fc_magic_role_check"
#: Where the deploy-time role check writes (inside the prefix that policy covers).
ROLE_CHECK_PREFIX = "lithops.jobs/fc_magic-role-check/"


def role_problem(role_arn: str | None, bucket: str, detail: str) -> FunctionRoleProblem:
    role = f"role_arn {role_arn}" if role_arn else "no role_arn"
    return FunctionRoleProblem(
        f"the FC function cannot use bucket {bucket} with {role} ({detail[:160]}); set "
        f"role_arn under 'aliyun_fc:' to a role FC (fc.aliyuncs.com) may assume whose policy "
        f"allows {ROLE_POLICY.format(bucket=bucket)} (README: Minimal RAM policies)")


def first_metadata(backend: Any, function_name: str, runtime: str,
                   role_check: dict | None = None) -> dict | None:
    """One metadata invocation: the metadata, None if not ready, or a clear error.

    Lithops' ``_generate_runtime_meta`` retries any ``errorMessage`` 24 times,
    5 s apart, because a fresh zip function may not answer yet; a package
    whose handler cannot even be imported answers the same error every time,
    and an endpoint that does not answer at all never will, so the user would
    wait two minutes for a generic exception. Both are reported at once.
    ``role_check`` ({"bucket", "endpoint", "key"}) has fc_magic's handler try
    the function's role on the bucket first; a role that cannot is
    `FunctionRoleProblem`, before any task runs.
    """
    from alibabacloud_fc20230330 import models as fc_models
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as lithops_fc
    from Tea.exceptions import TeaException, UnretryableException

    ask = {"get_metadata": True, "log_level": logging.WARNING}
    if role_check is not None:
        ask[ROLE_CHECK_KEY] = role_check
    payload = json.dumps(ask).encode()
    try:
        res = backend.fc_client.invoke_function_with_options(
            function_name, fc_models.InvokeFunctionRequest(body=io.BytesIO(payload)),
            fc_models.InvokeFunctionHeaders(x_fc_invocation_type="Sync"),
            lithops_fc.FC_INVOKE_RUNTIME)
        meta = json.loads(lithops_fc._read_invoke_body(res))
    except UnretryableException as exc:
        if isinstance(exc.inner_exception, TeaException):
            return None
        raise ServiceUnavailable(f"Function Compute did not answer "
                                 f"({type(exc.inner_exception).__name__}); check the network "
                                 f"and FCMagic.fc_endpoint") from None
    except TeaException as exc:
        status = getattr(exc, "statusCode", None)
        if status in _NOT_READY:
            logger.debug("metadata of %s not ready (%s)", function_name, status)
            return None
        raise
    except ValueError as exc:  # a body that is not JSON yet
        logger.debug("metadata of %s not JSON yet: %s", function_name, exc)
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("errorType") == "RoleProblem" and role_check is not None:
        raise role_problem(getattr(backend, "role_arn", None), role_check["bucket"],
                           str(meta.get("errorMessage", ""))) from None
    if meta.get("errorType") in _START_ERRORS:
        raise RuntimeStartProblem(
            f"runtime {runtime} cannot start on Function Compute: {meta['errorType']}: "
            f"{str(meta.get('errorMessage', ''))[:200]}; rebuild its package with "
            f"%%fc_runtime --rebuild") from None
    return meta if "preinstalls" in meta else None


def function_name(runtime: str, memory_mb: int, cpu: float, version: str | None = None) -> str:
    """The FC function of (runtime, memory, vCPU): Lithops' format, its hash over all three.

    Lithops names a function after (runtime, memory) only, so two vCPU
    settings at one memory size would share (and keep replacing) one
    function. Same shape and length as Lithops' own name, so the runtime-name
    limit (`requirements.check_runtime_name`) is unchanged.
    """
    from .lithops_facts import lithops_version

    version = version or lithops_version()
    digest = hashlib.sha1(f"{runtime}-{memory_mb}-{cpu:.2f}-{version}".encode()).hexdigest()
    return f"lithops-worker-{runtime}-v{version.replace('.', '-')}-{digest[:10]}"


def request_cpu(request: MapRequest) -> float:
    """The vCPU a request's function gets: its own, or the least FC allows for its memory."""
    return request.cpu or limits.default_cpu(request.memory_mb)


def _marker(key: str, sha256: str) -> str:
    """The function description that says which runtime package it runs."""
    return f"fc_magic runtime {key} sha256:{sha256[:16]}"


def marker_digest(description: str | None) -> str | None:
    """The package digest (16 hex) a function's description names (None: not ours)."""
    parts = (description or "").split()
    if len(parts) == 4 and parts[:2] == ["fc_magic", "runtime"] and parts[3].startswith("sha256:"):
        return parts[3][len("sha256:"):]
    return None


#: Where a package that differs from the team cache's object under its key is staged.
STAGED_PREFIX = "fc_magic/packages/"


def _stage(internal: Any, package: str, digest: str) -> str:
    """Upload ``package`` under its digest (once) and return the object key."""
    from lithops.storage.utils import StorageNoSuchKeyError

    key = f"{STAGED_PREFIX}{digest}.zip"
    try:
        internal.storage.head_object(internal.bucket, key)
    except StorageNoSuchKeyError:
        with open(package, "rb") as f:
            internal.storage.put_object(internal.bucket, key, f)
    return key


def marker_key(description: str | None) -> str | None:
    """The runtime key a function's description names (None: not a function fc_magic made)."""
    parts = (description or "").split()
    if len(parts) == 4 and parts[:2] == ["fc_magic", "runtime"]:
        return parts[2]
    return None


def shared_package(store: RuntimeStore, request: MapRequest) -> tuple[SharedRuntime, bool]:
    """(the runtime's package in OSS, whether this call uploaded it): published once per key."""
    key = request.package_key or file_sha256(request.package)
    if request.package and os.path.isfile(request.package):
        return store.publish(key, request.package, request.package_manifest,
                             sha256=request.package_manifest.get("package_sha256"))
    shared = store.lookup(key)
    if shared is None:
        raise InputProblem(f"the package of runtime {request.runtime} is neither in the local "
                           f"cache nor in the team cache (oss://{store.bucket_name}/"
                           f"{package_key(key)}); run its %%fc_runtime cell again with "
                           f"--rebuild")
    return shared, False


def wait_active(backend: Any, name: str, timeout_s: float = 180.0,
                clock=time.monotonic, sleep=time.sleep) -> Any:
    """The function once FC says it is Active (FC 3.0: Pending first); Failed is one line."""
    delay = 0.05
    deadline = clock() + timeout_s
    while True:
        function = backend._get_function(name)
        state = getattr(function, "state", None)
        if state in (None, "", "Active"):
            return function
        if state == "Failed":
            raise RuntimeStartProblem(
                f"Function Compute could not prepare function {name}: "
                f"{str(getattr(function, 'state_reason', '') or '')[:200]}")
        if clock() > deadline:
            raise ServiceUnavailable(f"function {name} is still {state} after {timeout_s:.0f} "
                                     f"s; try the map again later")
        sleep(delay)
        delay = min(delay * 2, 1.0)


def _is_conflict(exc: BaseException) -> bool:
    return getattr(exc, "statusCode", None) == 409 or \
        getattr(exc, "code", None) == "FunctionAlreadyExists"


def deploy_package(executor: Any, request: MapRequest, function_timeout: int,
                   translate: Callable[[BaseException], BaseException | None] = lambda e: None
                   ) -> bool:
    """Make sure FC runs the runtime's package as the function for (runtime, memory, vCPU).

    Checks FC itself on every map instead of trusting Lithops' runtime
    metadata cache (kept in memory and under ~/.lithops/cache by runtime name):
    after the function was deleted, or on another account or endpoint, that
    cache says "deployed" and Lithops invokes a function that does not exist,
    losing every call. The package lives once in OSS under its content key
    (`aliyun_store`); every size's function is created from that object, so a
    new size costs one CreateFunction and no upload. The key is kept in the
    function's description, so another package is redeployed. A 409 means
    another kernel created it at the same moment: its function is used once
    its description names the same key. Returns True when it (re)deployed.

    When the package's metadata is in the bucket already and the function's
    role was seen working there (a team-cache hit, a new size), nothing
    needs the function before the first invocation: FC creates it while
    Lithops serializes and uploads the job (`_invoke_once_created`), and an
    error creating it (``translate``d, as the caller does its own) is raised
    from the map instead.
    """
    from alibabacloud_fc20230330 import models as fc_models
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as lithops_fc
    from lithops.storage import storage as lithops_storage

    from . import lithops_fixes
    from .aliyun_store import store_for_storage

    cpu = request_cpu(request)
    lithops_fixes.sized_function_names(executor, cpu, function_name)
    backend = executor.compute_handler.backend
    internal = executor.internal_storage
    name = backend._format_function_name(request.runtime, request.memory_mb)
    local = (file_sha256(request.package)
             if request.package and os.path.isfile(request.package) else None)
    key = request.package_key or local
    current = _get(backend, name, lithops_fc)
    # Lithops stops a task 5 s before the function's own timeout.
    needed = min(request.timeout_s + 5, function_timeout)
    fresh = not (current is not None and marker_key(current.description) == key
                 and (local is None or marker_digest(current.description) == local[:16])
                 and (current.timeout or 0) >= needed)
    store = store_for_storage(internal.storage, internal.bucket)
    if fresh:
        shared, uploaded = shared_package(store, request)
        object_key, sha256 = shared.object_key, shared.sha256
        if local is not None and shared.sha256 != local:
            # The bucket holds other bytes under this key (a rebuild that came out
            # different, a changed local package): FC runs exactly the local
            # package, staged under its own digest; the team's object is left alone.
            object_key, sha256 = _stage(internal, request.package, local), local
            uploaded = True
        logger.info("deploying %s from oss://%s/%s (%s)", name, store.bucket_name, object_key,
                    "uploaded now" if uploaded else "no upload")
        body = fc_models.CreateFunctionInput(
            function_name=name, runtime=f"python{limits.python_version()}",
            handler="entry_point.main",
            code=fc_models.InputCodeLocation(oss_bucket_name=store.bucket_name,
                                             oss_object_name=object_key),
            memory_size=request.memory_mb, cpu=cpu, disk_size=limits.DISK_MB,
            timeout=function_timeout, role=backend.role_arn, internet_access=True,
            description=_marker(key, sha256),
            # Each instance imports the runtime's declared modules once (fc_entry_point).
            instance_lifecycle_config=fc_models.InstanceLifecycleConfig(
                initializer=fc_models.LifecycleHook(handler=INITIALIZER,
                                                    timeout=INITIALIZER_TIMEOUT_S)))

        def create() -> Any:
            existing = current
            for attempt in (1, 2):
                if existing is not None:
                    backend.fc_client.delete_function(name)
                try:
                    backend.fc_client.create_function(
                        fc_models.CreateFunctionRequest(body=body))
                    break
                except Exception as exc:  # the tea SDK's error types
                    if not _is_conflict(exc) or attempt == 2:
                        raise
                    existing = _get(backend, name, lithops_fc)
                    if existing is not None and marker_key(existing.description) == key \
                            and (existing.timeout or 0) >= needed:
                        logger.info("%s was deployed by someone else meanwhile; using it", name)
                        break
            return wait_active(backend, name)
    runtime_key = backend.get_runtime_key(request.runtime, request.memory_mb)
    needs_meta = fresh or internal.get_runtime_meta(runtime_key) is None
    meta, checked, known = None, [], True
    if needs_meta:
        # The metadata (Python, FC's preinstalled modules) is the package's on FC's
        # runtime, whatever the size or machine: asked of a function once per key.
        # The role check rides on that invocation, so a new function whose role
        # was not yet seen to work on the bucket asks again (one invocation).
        running = sha256 if fresh else marker_digest(current.description) or ""
        meta = store.runtime_meta(key, running)
        checked = list(meta.pop(CHECKED_ROLES, None) or ()) if meta is not None else []
        role = ((getattr(executor, "config", None) or {}).get("aliyun_fc") or {}).get(
            "role_arn", "")
        known = meta is not None and not (fresh and role not in checked)
    if fresh and known:
        _invoke_once_created(executor, create, translate)
    elif fresh:
        current = create()
    store.touch(key)
    if request.machine:
        store.publish_names(request.machine, request.runtime_names, unless_written=True)
    if needs_meta:
        if not known:
            role_check = _role_check(executor, internal.bucket, name)
            meta = first_metadata(backend, name, request.runtime, role_check)
            if meta is None:  # not answering yet: Lithops' own wait-and-retry loop
                meta = backend._generate_runtime_meta(
                    name, max_attempts=lithops_fc.ZIP_METADATA_MAX_ATTEMPTS,
                    retry_sleep=lithops_fc.ZIP_METADATA_RETRY_SLEEP)
            elif role_check is not None and role:
                checked.append(role)
            if fresh:
                store.publish_runtime_meta(key, sha256, meta, checked)
        meta["runtime_timeout"] = (function_timeout if fresh or current is None
                                   else current.timeout)
        internal.put_runtime_meta(runtime_key, meta)
        lithops_storage.RUNTIME_META_CACHE[internal._runtime_meta_refs(runtime_key)[1]] = meta
    return fresh


def _invoke_once_created(executor: Any, create: Callable[[], Any],
                         translate: Callable[[BaseException], BaseException | None]) -> None:
    """Create the function in a thread; the executor's first invocation waits for it.

    Lithops builds the job (pickles FUNC and the data, uploads them) after
    the deploy and before it invokes; FC's CreateFunction and the wait for
    Active (FC fetches and prepares the package) take as long or longer. A
    failed create deletes the job's uploaded data and is raised, translated,
    from the map in the caller's thread (`deployed`).
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="fc_magic-deploy")
    executor._fc_magic_creating = (pool.submit(create), translate)
    pool.shutdown(wait=False)
    invoker = executor.invoker
    run_job = invoker.run_job

    def run_job_once_created(job):
        deployed(executor, job_uploaded=True)
        invoker.run_job = run_job
        return run_job(job)

    invoker.run_job = run_job_once_created


def deployed(executor: Any, job_uploaded: bool = False) -> None:
    """Wait until the executor's function exists (a no-op unless it is being created).

    Raises what creating it raised (``translate``d); with ``job_uploaded``
    the job data Lithops uploaded meanwhile is deleted first.
    """
    from . import lithops_fixes

    creating = getattr(executor, "_fc_magic_creating", None)
    if creating is None:
        return
    created, translate = creating
    try:
        created.result()
    except BaseException as exc:
        if job_uploaded:
            lithops_fixes.delete_job_data(executor, [])
        problem = translate(exc) if isinstance(exc, Exception) else None
        if problem is not None:
            raise problem from None
        raise
    executor._fc_magic_creating = None


def _role_check(executor: Any, bucket: str, name: str) -> dict | None:
    """What the handler needs to try the role on the bucket: the endpoint the workers use."""
    oss = (getattr(executor, "config", None) or {}).get("aliyun_oss") or {}
    endpoint = oss.get("internal_endpoint")
    if not endpoint:
        logger.debug("no internal OSS endpoint in the executor's config: no role check")
        return None
    # A key of its own per check: two kernels deploying at once must not
    # delete each other's probe between its write and its read.
    return {"bucket": bucket, "endpoint": endpoint,
            "key": f"{ROLE_CHECK_PREFIX}{name}/{uuid.uuid4().hex}"}


def _get(backend: Any, name: str, lithops_fc: Any) -> Any:
    """The function called ``name``, or None."""
    try:
        return backend._get_function(name)
    except Exception as exc:  # the tea SDK's error types; Lithops' own test sorts them
        if not lithops_fc._is_not_found_error(exc):
            raise
        return None
