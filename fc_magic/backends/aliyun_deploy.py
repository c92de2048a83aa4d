"""Deploying a runtime's code package as the FC function Lithops invokes, checked against FC itself."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from typing import Any

from .. import limits
from ..errors import InputProblem, ServiceUnavailable
from .request import MapRequest

logger = logging.getLogger(__name__)

#: Errors a freshly created function answers while it is not ready yet.
_START_ERRORS = ("ModuleNotFoundError", "ImportError", "SyntaxError", "AttributeError")
#: HTTP statuses of a metadata call that mean "not ready yet, ask again".
_NOT_READY = (404, 409, 412, 429, 500, 502, 503, 504)


class RuntimeStartProblem(InputProblem):
    """The deployed package cannot start Lithops' handler on FC (one line)."""


def package_digest(path: str) -> str:
    """sha256 of a code package, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def first_metadata(backend: Any, function_name: str, runtime: str) -> dict | None:
    """One metadata invocation: the metadata, None if not ready, or a clear error.

    Lithops' ``_generate_runtime_meta`` retries any ``errorMessage`` 24 times,
    5 s apart, because a fresh zip function may not answer yet; a package
    whose handler cannot even be imported answers the same error every time,
    and an endpoint that does not answer at all never will, so the user would
    wait two minutes for a generic exception. Both are reported at once.
    """
    from alibabacloud_fc20230330 import models as fc_models
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as lithops_fc
    from Tea.exceptions import TeaException, UnretryableException

    payload = json.dumps({"get_metadata": True, "log_level": logging.WARNING}).encode()
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
    if meta.get("errorType") in _START_ERRORS:
        raise RuntimeStartProblem(
            f"runtime {runtime} cannot start on Function Compute: {meta['errorType']}: "
            f"{str(meta.get('errorMessage', ''))[:200]}; rebuild its package with "
            f"%%fc_runtime --rebuild") from None
    return meta if "preinstalls" in meta else None


def _code_location(internal: Any, package: str, digest: str) -> tuple[Any, str | None]:
    """(CreateFunction code, OSS key to delete after) for a package: inline up to 100 MB."""
    import base64

    from alibabacloud_fc20230330 import models as fc_models

    if os.path.getsize(package) <= limits.CODE_INLINE_MAX_BYTES:
        with open(package, "rb") as f:
            return fc_models.InputCodeLocation(zip_file=base64.b64encode(f.read()).decode()), None
    oss_key = f"fc_magic/packages/{digest}.zip"
    with open(package, "rb") as f:
        internal.storage.put_object(internal.bucket, oss_key, f)
    return fc_models.InputCodeLocation(oss_bucket_name=internal.bucket,
                                       oss_object_name=oss_key), oss_key


def deploy_package(executor: Any, request: MapRequest, function_timeout: int) -> bool:
    """Make sure FC runs ``request.package`` as the function for (runtime, memory).

    Checks FC itself on every map instead of trusting Lithops' runtime
    metadata cache (kept in memory and under ~/.lithops/cache by runtime name):
    after the function was deleted, or on another account or endpoint, that
    cache says "deployed" and Lithops invokes a function that does not exist,
    losing every call. The package's digest is kept in the function's
    description, so a changed package is redeployed. Returns True when it
    (re)deployed.
    """
    from alibabacloud_fc20230330 import models as fc_models
    from lithops.serverless.backends.aliyun_fc import aliyun_fc as lithops_fc
    from lithops.storage import storage as lithops_storage

    backend = executor.compute_handler.backend
    internal = executor.internal_storage
    name = backend._format_function_name(request.runtime, request.memory_mb)
    digest = package_digest(request.package)
    marker = f"fc_magic package sha256:{digest[:32]}"
    try:
        current = backend._get_function(name)
    except Exception as exc:  # the tea SDK's error types; Lithops' own test sorts them
        if not lithops_fc._is_not_found_error(exc):
            raise
        current = None
    # Lithops stops a task 5 s before the function's own timeout.
    needed = min(request.timeout_s + 5, function_timeout)
    fresh = not (current is not None and current.description == marker
                 and (current.timeout or 0) >= needed)
    if fresh:
        if current is not None:
            backend.fc_client.delete_function(name)
        code, oss_key = _code_location(internal, request.package, digest)
        logger.info("deploying %s (%d bytes, %s)", name, os.path.getsize(request.package),
                    "inline" if oss_key is None else "via OSS")
        body = fc_models.CreateFunctionInput(
            function_name=name, runtime=f"python{limits.python_version()}",
            handler="entry_point.main", code=code, memory_size=request.memory_mb,
            timeout=function_timeout, role=backend.role_arn, internet_access=True,
            description=marker)
        try:
            backend.fc_client.create_function(fc_models.CreateFunctionRequest(body=body))
        finally:
            if oss_key is not None:  # FC copied it; a leftover only costs storage
                try:
                    internal.storage.delete_object(internal.bucket, oss_key)
                except Exception as exc:  # oss2's and Lithops' error types vary
                    logger.warning("could not delete the staged package %s: %s", oss_key,
                                   type(exc).__name__)
    key = backend.get_runtime_key(request.runtime, request.memory_mb)
    if fresh or internal.get_runtime_meta(key) is None:
        meta = first_metadata(backend, name, request.runtime)
        if meta is None:  # not answering yet: Lithops' own wait-and-retry loop
            meta = backend._generate_runtime_meta(
                name, max_attempts=lithops_fc.ZIP_METADATA_MAX_ATTEMPTS,
                retry_sleep=lithops_fc.ZIP_METADATA_RETRY_SLEEP)
        meta["runtime_timeout"] = current.timeout if not fresh else function_timeout
        internal.put_runtime_meta(key, meta)
        lithops_storage.RUNTIME_META_CACHE[internal._runtime_meta_refs(key)[1]] = meta
    return fresh
