"""Alibaba Cloud Function Compute 3.0 with OSS: configuration, credentials, endpoints, auth errors."""
from __future__ import annotations

import copy
import ipaddress
import logging
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .. import limits
from ..errors import InputProblem, ServiceUnavailable
from . import aliyun_credentials, lithops_fixes
from .request import MapRequest, merge_sections

logger = logging.getLogger(__name__)

#: The region as Alibaba Cloud's own tools read it from the environment.
_ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
CONFIG_HINT = ("in your Lithops config (~/.lithops/config, ./.lithops_config or "
               "$LITHOPS_CONFIG_FILE, or %config FCMagic.config_file)")
#: FC and OSS error codes that mean "these credentials are refused".
_AUTH_CODES = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidAccessKeyId.NotFound",
               "InvalidAccessKeyId.Inactive", "AccessDenied", "InvalidSecurityToken")


#: OSS endpoints when none is configured: Lithops' own have no scheme, and
#: oss2 then speaks plain HTTP to the internet.
OSS_PUBLIC_DEFAULT = "https://oss-{}.aliyuncs.com"
OSS_INTERNAL_DEFAULT = "https://oss-{}-internal.aliyuncs.com"


@dataclass(frozen=True)
class AliyunEndpoints:
    """Where the client and the workers reach FC and OSS (``{}`` stands for the region).

    ``fc`` None is Lithops' public FC endpoint (HTTPS); overrides are
    VPC-internal endpoints inside Alibaba Cloud, or the sandbox.
    """

    fc: str | None = None
    oss_public: str = OSS_PUBLIC_DEFAULT
    oss_internal: str = OSS_INTERNAL_DEFAULT


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_endpoint(url: str, setting: str) -> str:
    """``url`` made safe to hand Lithops: https (a bare host gets https://), or http to loopback.

    Lithops unpickles what it reads back from OSS (statuses, results), so a
    plain-HTTP endpoint lets anyone on the network path run code in this
    kernel. Only this machine (the sandbox) may be spoken to in plain HTTP.
    """
    if "://" in url:
        full = url
    else:  # a bare host: HTTPS, except to this machine (where HTTP was always meant)
        bare = urllib.parse.urlsplit(f"//{url}")
        full = f"{'http' if _loopback(bare.hostname) else 'https'}://{url}"
    parts = urllib.parse.urlsplit(full)
    if parts.scheme == "https" and parts.hostname:
        return full
    if parts.scheme == "http" and _loopback(parts.hostname):
        return full
    if parts.scheme == "http":
        raise InputProblem(f"{setting} {url!r} is plain HTTP to another machine: Lithops "
                           f"unpickles what comes back, so anyone on the way could run code "
                           f"in this kernel; use https://")
    raise InputProblem(f"{setting} {url!r} is not an https:// endpoint; fix {setting}")


class AliyunAuthError(InputProblem):
    """Alibaba Cloud refused the credentials (one line, never the secret)."""


def function_timeout_s(request: MapRequest) -> int:
    """The FC function's own timeout: above the task timeout, which Lithops enforces.

    FC bills run time, not the configured timeout, so a generous one costs
    nothing and lets one function serve maps with different --timeout.
    """
    return min(max(request.timeout_s + 30, 900), limits.TIMEOUT_MAX_S)


def _user_config(request: MapRequest) -> dict:
    from lithops.config import load_config

    try:
        return copy.deepcopy(load_config(request.config_file, log=False) or {})
    except FileNotFoundError:
        raise InputProblem(f"the Lithops config file {request.config_file!r} does not exist; "
                           f"fix %config FCMagic.config_file") from None


def credential_source(request: MapRequest) -> aliyun_credentials.CredentialSource:
    """Where this map's client credentials come from (`aliyun_credentials.resolve`)."""
    user = _user_config(request)
    section = {**(user.get("aliyun_fc") or {}), **(user.get("aliyun") or {})}
    return aliyun_credentials.resolve(section, request.profile)


def aliyun_settings(request: MapRequest) -> tuple[dict, AliyunEndpoints]:
    """(Lithops config, endpoint overrides) for an aliyun_fc map.

    The Lithops config as Lithops users keep it (file or $LITHOPS_CONFIG):
    sections ``aliyun`` (account_id, region, optionally access_key_id,
    access_key_secret, security_token), ``aliyun_fc`` (role_arn) and
    ``aliyun_oss`` (storage_bucket); fc_magic also reads ``endpoint`` in the
    last two. Credentials come from `credential_source` (FCMagic.profile,
    the Lithops config, or the default chain); the config carries the
    current ones because Lithops requires them, and `lithops_fixes` swaps
    Lithops' clients for ones that ask the source on every request. Raises
    `InputProblem` naming what is missing, never a value.
    """
    problem = limits.python_problem()
    if problem:
        raise InputProblem(problem)
    user = _user_config(request)
    aliyun = dict(user.get("aliyun") or {})
    fc = dict(user.get("aliyun_fc") or {})
    oss = dict(user.get("aliyun_oss") or {})
    if not aliyun.get("region") and not fc.get("region") and os.environ.get(_ENV_REGION):
        aliyun["region"] = os.environ[_ENV_REGION]
    if request.region:
        aliyun["region"] = request.region
        fc.pop("region", None)
        oss.pop("region", None)
    missing = [k for k in ("account_id", "region") if not (aliyun.get(k) or fc.get(k))]
    if missing:
        raise InputProblem(f"backend 'aliyun_fc' needs {', '.join(missing)} under 'aliyun:' "
                           f"{CONFIG_HINT}")
    if not fc.get("role_arn"):
        raise InputProblem(f"backend 'aliyun_fc' needs the RAM role FC runs as: role_arn "
                           f"under 'aliyun_fc:' {CONFIG_HINT}")
    current = aliyun_credentials.resolve({**fc, **aliyun}, request.profile).current()
    for section in (aliyun, fc, oss):
        for key in aliyun_credentials.LITHOPS_KEYS:
            section.pop(key, None)
    aliyun.update(access_key_id=current.access_key_id,
                  access_key_secret=current.access_key_secret)
    if current.security_token:
        aliyun["security_token"] = current.security_token
    endpoints = _endpoints(request, fc.pop("endpoint", None), oss.pop("endpoint", None))
    fc.update(runtime_memory=request.memory_mb, runtime_timeout=function_timeout_s(request))
    if request.runtime:
        fc["runtime"] = request.runtime
    section = {"backend": "aliyun_fc", "storage": "aliyun_oss"}
    for key in ("monitoring_interval", "execution_timeout"):
        if key in (user.get("lithops") or {}):
            section[key] = user["lithops"][key]
    config = {"lithops": section, "aliyun": aliyun, "aliyun_fc": fc, "aliyun_oss": oss}
    return merge_sections(config, request.extra_config), endpoints


def _endpoints(request: MapRequest, fc_config: str | None,
               oss_config: str | None) -> AliyunEndpoints:
    """The endpoints of a map: FCMagic's overrides, then the Lithops config's, then HTTPS defaults."""
    fc = oss = None
    if request.fc_endpoint:
        fc = secure_endpoint(request.fc_endpoint, "FCMagic.fc_endpoint")
    elif fc_config:
        fc = secure_endpoint(fc_config, "the Lithops config's aliyun_fc endpoint")
    if request.oss_endpoint:
        oss = secure_endpoint(request.oss_endpoint, "FCMagic.oss_endpoint")
    elif oss_config:
        oss = secure_endpoint(oss_config, "the Lithops config's aliyun_oss endpoint")
    if fc is not None and fc.startswith("https://"):
        fc = fc[len("https://"):]  # the FC SDK adds the scheme itself (HTTPS by default)
    if oss is None:
        return AliyunEndpoints(fc=fc)
    return AliyunEndpoints(fc=fc, oss_public=oss, oss_internal=oss)


def auth_problem(exc: BaseException, config: dict) -> AliyunAuthError | None:
    """Turn an FC/OSS 403 on the credentials into one clear line (None: not an auth error)."""
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    code = (getattr(exc, "code", None) or (getattr(exc, "details", None) or {}).get("Code")
            or "")
    if status != 403 and code not in _AUTH_CODES:
        return None
    service = "OSS" if hasattr(exc, "details") else "Function Compute"
    shown = aliyun_credentials.shown_key((config.get("aliyun") or {}).get("access_key_id"))
    return AliyunAuthError(f"{service} refused the AccessKey {shown} ({code or status}): check "
                           f"access_key_id and access_key_secret under 'aliyun:' {CONFIG_HINT}")


def unreachable(exc: BaseException) -> ServiceUnavailable | None:
    """One line for an FC/OSS endpoint that did not answer (None: some other error).

    The tea SDK wraps a refused connection or a read timeout in an
    UnretryableException around a non-API error; oss2 raises RequestError.
    """
    from Tea.exceptions import TeaException, UnretryableException

    if isinstance(exc, UnretryableException) and not isinstance(exc.inner_exception,
                                                                TeaException):
        service, cause = "Function Compute", exc.inner_exception
    elif type(exc).__name__ == "RequestError" and type(exc).__module__.startswith("oss2"):
        service, cause = "OSS", exc
    else:
        return None
    text = str(cause)
    why = ("timed out" if "timed out" in text.lower() else
           "connection refused" if "refused" in text.lower() else type(cause).__name__)
    return ServiceUnavailable(f"{service} did not answer ({why}); check the network and "
                              f"FCMagic.fc_endpoint / FCMagic.oss_endpoint, then run the map again")


class AliyunFCBackend:
    """Lithops' aliyun_fc compute and aliyun_oss storage, the runtime deployed as an FC function."""

    name = "aliyun_fc"
    target = "fc"

    def check(self, request: MapRequest) -> None:
        aliyun_settings(request)
        if not request.runtime or not (request.package or request.package_key):
            raise InputProblem("backend 'aliyun_fc' runs tasks in a runtime built for Function "
                               "Compute; define one with %%fc_runtime NAME and its packages")
        problem = limits.cpu_problem(request.cpu, request.memory_mb) if request.cpu else None
        if problem:
            raise InputProblem(f"{problem}; pass a valid --cpu or set %config FCMagic.cpu")
        if request.package and not os.path.isfile(request.package):
            raise InputProblem(f"the code package of runtime {request.runtime} is gone from "
                               f"the cache; run its %%fc_runtime cell again")

    def executor(self, request: MapRequest) -> Any:
        """An executor whose FC function runs ``request.package`` (deployed if FC lacks it)."""
        import lithops

        from .aliyun_deploy import deploy_package

        config, endpoints = aliyun_settings(request)
        source = credential_source(request)
        try:
            with lithops_fixes.aliyun_endpoints(endpoints.fc, endpoints.oss_public,
                                                endpoints.oss_internal, credentials=source):
                executor = lithops.FunctionExecutor(config=config, log_level=None)
        except Exception as exc:  # Lithops checks the bucket with the keys; sort a 403 out
            raise (auth_problem(exc, config) or unreachable(exc) or exc) from None
        lithops_fixes.page_oss_listings(executor)
        lithops_fixes.retry_throttled_invokes(executor)
        lithops_fixes.strip_invoke_credentials(executor)
        lithops_fixes.plain_http_pool(executor, endpoints.fc)
        lithops_fixes.remember_request_ids(executor)
        try:
            if request.package or request.package_key:
                deploy_package(executor, request, function_timeout_s(request),
                               lambda exc: auth_problem(exc, config) or unreachable(exc))
        except BaseException as exc:
            executor.job_monitor.stop()
            problem = (auth_problem(exc, config) or unreachable(exc)
                       if isinstance(exc, Exception) else None)
            if problem is not None:
                raise problem from None
            raise
        return executor

    def describe(self, request: MapRequest) -> str:
        from .aliyun_deploy import function_name, request_cpu

        where = request.region or "its configured region"
        if not request.runtime:
            return f"Function Compute ({where})"
        cpu = request_cpu(request)
        return (f"Function Compute ({where}), function "
                f"{function_name(request.runtime, request.memory_mb, cpu)} "
                f"({request.memory_mb} MB, {cpu:g} vCPU)")

    def note(self, request: MapRequest) -> str | None:
        """Which source the credentials came from: ``credentials: <where>, <kind>, AccessKey LTAI…xy``."""
        return credential_source(request).line()

    def clean(self, executor: Any, futures: list) -> None:
        """Delete the job's OSS data through the executor's own client (see `delete_job_data`)."""
        lithops_fixes.delete_job_data(executor, futures)

    def request_id(self, executor: Any, future: Any) -> str:
        return lithops_fixes.request_id_of(executor, future)

    def logs(self, executor: Any, request: MapRequest) -> str:
        """Where FC keeps this function's logs (its logConfig), or how to have it keep them."""
        if not request.runtime:
            return ""
        backend = executor.compute_handler.backend
        name = backend._format_function_name(request.runtime, request.memory_mb)
        try:
            function = backend._get_function(name)
        except Exception as exc:  # the tea SDK's error types vary; the receipt does without
            logger.debug("could not read the log config of %s: %s: %s", name,
                         type(exc).__name__, exc)
            return ""
        return logs_line(name, getattr(function, "log_config", None), request.region)


def logs_line(function: str, log_config: Any, region: str | None = None) -> str:
    """One line on FC's logs of ``function``: its SLS project and logstore and the query, or how to turn them on."""
    project = getattr(log_config, "project", None) or ""
    logstore = getattr(log_config, "logstore", None) or ""
    if project and logstore:
        where = f" ({region})" if region else ""
        return (f"FC logs: SLS project {project}, logstore {logstore}{where}; one task's lines: "
                f'__topic__: "FCLogs:{function}" and "<request id>"')
    return (f"FC keeps no logs of {function}: give it a log config (SLS project and logstore; "
            f"FC console > the function > Logging, or UpdateFunction logConfig) to find a "
            f"task's lines by its request id")


BACKEND = AliyunFCBackend()
