"""The part of the Function Compute 3.0 API (2023-03-30) that Lithops calls.

Create/get/list/delete function and invoke (Sync and Async). CreateFunction
checks ``cpu`` and ``diskSize`` as FC 3.0 does (0.05..16 vCPU in steps of
0.05, vCPU : memory GB between 1:1 and 1:4, disk 512 or 10240 MB), answers
409 ``FunctionAlreadyExists`` for a taken name, and a new function is
``Pending`` for ``pending_s`` before it is ``Active`` (Sync calls meanwhile
get FC's 412). Code packages
arrive inline (base64 zip) or as an OSS code location in the sandbox's own
object store; each package is unpacked once, shared read-only by the
functions created from it (`code_store`). Errors are FC's JSON
bodies ``{"Code", "Message", "RequestId"}``. Invocation payloads are never
logged: Lithops puts the whole client config, AccessKey secret included,
in each one.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field

from .code_store import CodeStore
from .execution import Executor, FunctionSpec, Outcome
from .oss import ObjectStore, Reply

logger = logging.getLogger(__name__)

API = "/2023-03-30"
RUNTIMES = ("python3.9", "python3.10", "python3.12")
NAME_RE = re.compile(r"^[_a-zA-Z][-_a-zA-Z0-9]{0,63}$")
MAX_INLINE_ZIP = 100 * 2**20 * 4 // 3 + 4   # base64 of a 100 MB package
MAX_OSS_ZIP = 500 * 2**20
MAX_SYNC_PAYLOAD = 32 * 2**20
MAX_ASYNC_PAYLOAD = 128 * 2**10
CPU_STEP, CPU_MIN, CPU_MAX = 0.05, 0.05, 16.0
DISK_SIZES = (512, 10240)
#: A lifecycle hook's timeout when CreateFunction gives none (FC's LifecycleHook default).
INITIALIZER_DEFAULT_TIMEOUT_S = 3


def cpu_problem(cpu, memory_mb: int) -> str | None:
    """FC 3.0's cpu rules for a memory size, as its CreateFunction error says them."""
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)):
        return f"cpu {cpu!r} must be a number"
    steps = round(cpu / CPU_STEP)
    if abs(steps * CPU_STEP - cpu) > 1e-9 or not CPU_MIN <= cpu <= CPU_MAX:
        return f"cpu {cpu} must be a multiple of 0.05 between 0.05 and 16"
    gb = memory_mb / 1024
    if not cpu - 1e-9 <= gb <= 4 * cpu + 1e-9:
        return (f"the ratio of cpu ({cpu}) to memorySize ({memory_mb} MB) must be between "
                f"1:1 and 1:4 (vCPU:GB)")
    return None


def default_cpu(memory_mb: int) -> float:
    """The cpu of a function created without one: the least the 1:4 ratio allows."""
    steps = -(-round(memory_mb / 1024 / 4 / CPU_STEP, 9) // 1)
    return min(max(steps * CPU_STEP, CPU_MIN), CPU_MAX)
#: Request bodies: CreateFunction carries the inline package plus a little JSON.
MAX_CREATE_BODY = MAX_INLINE_ZIP + 2**20
MAX_OTHER_BODY = 2**20


def body_limit(method: str, parts: list[str], headers: dict) -> int:
    """The most an FC call's body may hold, known from its headers alone."""
    if parts == ["functions"] and method == "POST":
        return MAX_CREATE_BODY
    if parts[-1:] == ["invocations"]:
        if headers.get("x-fc-invocation-type", "Sync") == "Async":
            return MAX_ASYNC_PAYLOAD
        return MAX_SYNC_PAYLOAD
    return MAX_OTHER_BODY


def fc_error(status: int, code: str, message: str, request_id: str | None = None) -> Reply:
    rid = request_id or uuid.uuid4().hex
    body = json.dumps({"Code": code, "Message": message, "RequestId": rid}).encode()
    return Reply(status, {"Content-Type": "application/json", "x-fc-request-id": rid}, body)


def _json(status: int, data: dict) -> Reply:
    return Reply(status, {"Content-Type": "application/json",
                          "x-fc-request-id": uuid.uuid4().hex}, json.dumps(data).encode())


def _log_config(value) -> dict | Reply:
    """A function's logConfig as FC checks it: project and logstore both set, or neither."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return fc_error(400, "InvalidArgument", "logConfig must be an object")
    project, logstore = value.get("project") or "", value.get("logstore") or ""
    if not (isinstance(project, str) and isinstance(logstore, str)):
        return fc_error(400, "InvalidArgument", "logConfig.project and .logstore must be strings")
    if bool(project) != bool(logstore):
        return fc_error(400, "InvalidArgument", "logConfig needs both project and logstore, "
                        "or neither")
    return {k: v for k, v in value.items() if k in ("project", "logstore", "enableRequestMetrics",
                                                     "enableInstanceMetrics", "logBeginRule")}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class FunctionRecord:
    spec: FunctionSpec
    description: str
    code_size: int
    code_checksum: str
    created: float
    role: str
    cpu: float = 0.0
    disk_mb: int = 512
    #: When the function leaves Pending (time.time()).
    active_at: float = 0.0
    #: Where FC would ship the function's logs (SLS project and logstore); {} for none.
    log_config: dict = field(default_factory=dict)

    def view(self, account_id: str, region: str, state: tuple[str, str]) -> dict:
        s = self.spec
        return {"functionName": s.name, "functionId": s.uid,
                "functionArn": f"acs:fc:{region}:{account_id}:functions/{s.name}",
                "runtime": s.runtime, "handler": s.handler, "memorySize": s.memory_mb,
                "timeout": s.timeout_s, "description": self.description,
                "codeSize": self.code_size, "codeChecksum": self.code_checksum,
                "createdTime": _iso(self.created), "lastModifiedTime": _iso(self.created),
                "environmentVariables": s.env, "role": self.role, "internetAccess": True,
                "state": state[0], "stateReason": state[1],
                "lastUpdateStatus": "Successful",
                "instanceConcurrency": 1, "diskSize": self.disk_mb, "cpu": self.cpu,
                "logConfig": dict(self.log_config),
                "instanceLifecycleConfig": (
                    {"initializer": {"handler": s.initializer,
                                     "timeout": s.initializer_timeout_s}}
                    if s.initializer else {})}


def _json_object(body: bytes) -> dict | Reply:
    """A request body as the JSON object FC expects, or the 400 FC answers instead."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return fc_error(400, "InvalidArgument", "request body is not valid JSON")
    if not isinstance(data, dict):
        return fc_error(400, "InvalidArgument", "request body must be a JSON object")
    return data


class FunctionService:
    """Function registry plus invocation, on top of an `Executor`."""

    def __init__(self, store: ObjectStore, executor: Executor, code_root: str,
                 account_id: str, region: str, pending_s: float = 0.0):
        self.store = store
        #: Seconds a new function stays Pending (FC prepares it) before it is Active.
        self.pending_s = pending_s
        self.executor = executor
        self.code = CodeStore(code_root)
        self.account_id = account_id
        self.region = region
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionRecord] = {}
        self.invocations = 0
        #: Every invoke payload received, in memory only (never logged), when
        #: a test asks for them (`Sandbox(keep_payloads=True)`).
        self.payloads: list[bytes] | None = None

    def handle(self, method: str, parts: list[str], query: dict, headers: dict,
               body: bytes) -> Reply:
        # parts: path after /2023-03-30, split on "/"
        if parts == ["functions"]:
            if method == "POST":
                return self.create(body)
            if method == "GET":
                return self.list(query)
        elif len(parts) == 2 and parts[0] == "functions":
            if method == "GET":
                return self.get(parts[1])
            if method == "PUT":
                return self.update(parts[1], body)
            if method == "DELETE":
                return self.delete(parts[1])
        elif len(parts) == 3 and parts[0] == "functions" and parts[2] == "invocations":
            if method == "POST":
                return self.invoke(parts[1], headers, body)
        return fc_error(404, "NotFound", f"{method} {API}/{'/'.join(parts)} is not an API "
                        f"the sandbox serves")

    # ----------------------------------------------------------- management
    def create(self, body: bytes) -> Reply:
        data = _json_object(body)
        if isinstance(data, Reply):
            return data
        wrong = [f"{k} must be {what}" for k, kind, what in (
            ("functionName", str, "a string"), ("runtime", str, "a string"),
            ("handler", str, "a string"), ("description", str, "a string"),
            ("role", str, "a string"), ("code", dict, "an object"),
            ("environmentVariables", dict, "an object"))
            if data.get(k) is not None and not isinstance(data[k], kind)]
        code = data.get("code") if isinstance(data.get("code"), dict) else {}
        wrong += [f"code.{k} must be a string" for k in ("zipFile", "ossBucketName",
                                                         "ossObjectName")
                  if code.get(k) is not None and not isinstance(code[k], str)]
        if wrong:
            return fc_error(400, "InvalidArgument", "; ".join(wrong))
        name = data.get("functionName") or ""
        if not NAME_RE.fullmatch(name):
            return fc_error(400, "InvalidArgument", f"functionName {name!r} is invalid: 1 to "
                            "64 letters, digits, '_' or '-', not starting with a digit or '-'")
        runtime = data.get("runtime")
        if runtime not in RUNTIMES:
            return fc_error(400, "InvalidArgument", f"runtime {runtime!r} is not supported "
                            f"by the sandbox; use one of {', '.join(RUNTIMES)}")
        memory = data.get("memorySize", 512)
        if not isinstance(memory, int) or memory % 64 or not 128 <= memory <= 32768:
            return fc_error(400, "InvalidArgument", f"memorySize {memory} must be a multiple "
                            "of 64 between 128 and 32768")
        timeout = data.get("timeout", 3)
        if not isinstance(timeout, int) or not 1 <= timeout <= 86400:
            return fc_error(400, "InvalidArgument", f"timeout {timeout} must be 1..86400")
        cpu = data.get("cpu")
        cpu = default_cpu(memory) if cpu is None else cpu
        problem = cpu_problem(cpu, memory)
        if problem:
            return fc_error(400, "InvalidArgument", problem)
        disk = data.get("diskSize", 512)
        if disk not in DISK_SIZES or isinstance(disk, bool):
            return fc_error(400, "InvalidArgument", f"diskSize {disk} must be 512 or 10240")
        handler = data.get("handler") or ""
        if "." not in handler:
            return fc_error(400, "InvalidArgument", f"handler {handler!r} must be module.function")
        lifecycle = data.get("instanceLifecycleConfig")
        if lifecycle is not None and not isinstance(lifecycle, dict):
            return fc_error(400, "InvalidArgument", "instanceLifecycleConfig must be an object")
        hook = (lifecycle or {}).get("initializer")
        init_handler, init_timeout = "", INITIALIZER_DEFAULT_TIMEOUT_S
        if hook is not None:
            if not isinstance(hook, dict):
                return fc_error(400, "InvalidArgument",
                                "instanceLifecycleConfig.initializer must be an object")
            if hook.get("command"):
                return fc_error(400, "InvalidArgument", "the sandbox runs handler initializers "
                                "only (instanceLifecycleConfig.initializer.command is for "
                                "custom runtimes)")
            init_handler = hook.get("handler") or ""
            if not isinstance(init_handler, str) or (init_handler and "." not in init_handler):
                return fc_error(400, "InvalidArgument", f"initializer handler {init_handler!r} "
                                "must be module.function")
            init_timeout = hook.get("timeout", INITIALIZER_DEFAULT_TIMEOUT_S)
            if (not isinstance(init_timeout, int) or isinstance(init_timeout, bool)
                    or not 1 <= init_timeout <= 86400):
                return fc_error(400, "InvalidArgument", f"initializer timeout {init_timeout} "
                                "must be 1..86400 seconds")
        if code.get("zipFile"):
            if len(code["zipFile"]) > MAX_INLINE_ZIP:
                return fc_error(400, "CodeSizeExceeded", "inline code is limited to 100 MB; "
                                "use an OSS code location")
            try:
                package = base64.b64decode(code["zipFile"], validate=True)
            except (binascii.Error, ValueError):
                return fc_error(400, "InvalidArgument", "code.zipFile is not valid base64")
        elif code.get("ossBucketName") and code.get("ossObjectName"):
            size = self.store.object_size(code["ossBucketName"], code["ossObjectName"])
            if size is not None and size > MAX_OSS_ZIP:
                return fc_error(400, "CodeSizeExceeded", "code packages are limited to 500 MB")
            package = self.store.get_bytes(code["ossBucketName"], code["ossObjectName"])
            if package is None:
                return fc_error(400, "InvalidArgument", f"code location oss://"
                                f"{code['ossBucketName']}/{code['ossObjectName']} not found")
        else:
            return fc_error(400, "InvalidArgument", "code needs zipFile or ossBucketName "
                            "and ossObjectName")
        log_config = _log_config(data.get("logConfig"))
        if isinstance(log_config, Reply):
            return log_config
        with self._lock:
            if name in self._functions:
                return fc_error(409, "FunctionAlreadyExists",
                                f"function '{name}' already exists")
        uid = uuid.uuid4().hex
        try:
            code_dir, code_checksum = self.code.acquire(package)
        except (zipfile.BadZipFile, ValueError) as exc:
            return fc_error(400, "InvalidArgument", f"code package is not a valid zip: {exc}")
        env = {str(k): str(v) for k, v in (data.get("environmentVariables") or {}).items()}
        spec = FunctionSpec(uid=uid, name=name, handler=handler, runtime=runtime,
                            memory_mb=memory, timeout_s=timeout, code_dir=code_dir, env=env,
                            region=self.region, account_id=self.account_id,
                            role=data.get("role") or "", initializer=init_handler,
                            initializer_timeout_s=init_timeout)
        now = time.time()
        record = FunctionRecord(spec, data.get("description") or "", len(package),
                                code_checksum, now, data.get("role") or "",
                                cpu=float(cpu), disk_mb=disk, active_at=now + self.pending_s,
                                log_config=log_config)
        with self._lock:
            taken = name in self._functions
            if not taken:
                self._functions[name] = record
        if taken:
            self.code.release(code_dir)
            return fc_error(409, "FunctionAlreadyExists", f"function '{name}' already exists")
        logger.info("created function %s (%s, %d MB, %.2f vCPU, %d s, %d-byte package)",
                    name, runtime, memory, cpu, timeout, len(package))
        return _json(200, self._view(record))

    def _state(self, record: FunctionRecord) -> tuple[str, str]:
        state = self.executor.state(record.spec.runtime)
        if state[0] == "Active" and time.time() < record.active_at:
            return "Pending", "the function's instance environment is being prepared"
        return state

    def _view(self, record: FunctionRecord) -> dict:
        return record.view(self.account_id, self.region, self._state(record))

    def get(self, name: str) -> Reply:
        with self._lock:
            record = self._functions.get(name)
        if record is None:
            return fc_error(404, "FunctionNotFound", f"function '{name}' does not exist")
        return _json(200, self._view(record))

    def update(self, name: str, body: bytes) -> Reply:
        """UpdateFunction, for the log configuration only (what a user turns on in the console)."""
        data = _json_object(body)
        if isinstance(data, Reply):
            return data
        other = sorted(set(data) - {"logConfig"})
        if other:
            return fc_error(400, "InvalidArgument", f"the sandbox updates only logConfig, "
                            f"not {', '.join(other)}; delete and create the function instead")
        log_config = _log_config(data.get("logConfig"))
        if isinstance(log_config, Reply):
            return log_config
        with self._lock:
            record = self._functions.get(name)
            if record is None:
                return fc_error(404, "FunctionNotFound", f"function '{name}' does not exist")
            record.log_config = log_config
        return _json(200, self._view(record))

    def list(self, query: dict) -> Reply:
        prefix = query.get("prefix", "")
        try:
            limit = max(1, min(int(query.get("limit") or 20), 100))
        except ValueError:
            return fc_error(400, "InvalidArgument", "limit must be a number")
        start = query.get("nextToken", "")
        with self._lock:
            names = sorted(n for n in self._functions if n.startswith(prefix) and n >= start)
            page = [self._view(self._functions[n])
                    for n in names[:limit]]
        out = {"functions": page}
        if len(names) > limit:
            out["nextToken"] = names[limit]
        return _json(200, out)

    def delete(self, name: str) -> Reply:
        with self._lock:
            record = self._functions.pop(name, None)
        if record is None:
            return fc_error(404, "FunctionNotFound", f"function '{name}' does not exist")
        self.executor.drop_function(record.spec.uid)
        self.code.release(record.spec.code_dir)
        return Reply(204, {"x-fc-request-id": uuid.uuid4().hex})

    # ----------------------------------------------------------- invocation
    def invoke(self, name: str, headers: dict, body: bytes) -> Reply:
        with self._lock:
            record = self._functions.get(name)
        request_id = uuid.uuid4().hex
        if record is None:
            return fc_error(404, "FunctionNotFound", f"function '{name}' does not exist",
                            request_id)
        kind = headers.get("x-fc-invocation-type", "Sync")
        if kind not in ("Sync", "Async"):
            return fc_error(400, "InvalidArgument", f"x-fc-invocation-type {kind!r} must be "
                            "Sync or Async", request_id)
        state, reason = self._state(record)
        if state != "Active" and kind == "Sync":
            # As FC answers while a new function's environment is prepared.
            return fc_error(412 if state == "Pending" else 400,
                            "PreconditionFailed" if state == "Pending" else "FunctionNotReady",
                            f"function '{name}' is {state}: {reason}", request_id)
        limit = MAX_ASYNC_PAYLOAD if kind == "Async" else MAX_SYNC_PAYLOAD
        if len(body) > limit:
            return fc_error(413, "PayloadTooLarge", f"{kind} payload of {len(body)} bytes "
                            f"exceeds the {limit}-byte limit", request_id)
        self.invocations += 1
        if self.payloads is not None:
            self.payloads.append(bytes(body))
        future = self.executor.submit(record.spec, request_id, body)
        if kind == "Async":
            future.add_done_callback(lambda f, n=name: self._log_async(n, request_id, f))
            return Reply(202, {"x-fc-request-id": request_id})
        outcome: Outcome = future.result()
        return self._sync_reply(request_id, outcome)

    @staticmethod
    def _log_async(name: str, request_id: str, future) -> None:
        if future.cancelled():
            return
        outcome: Outcome = future.result()
        if outcome.error is not None:
            # The message only; the payload (which holds the secret) is never logged.
            logger.warning("async invocation %s of %s failed: %s", request_id, name,
                           str(outcome.error.get("errorMessage", ""))[:300])

    @staticmethod
    def _sync_reply(request_id: str, outcome: Outcome) -> Reply:
        headers = {"x-fc-request-id": request_id,
                   "x-fc-max-memory-usage": f"{outcome.max_memory_mb:.2f}",
                   "x-fc-invocation-duration": str(int(outcome.duration_ms))}
        if outcome.error is not None:
            headers["x-fc-error-type"] = "UnhandledInvocationError"
            headers["Content-Type"] = "application/json"
            return Reply(200, headers, json.dumps(outcome.error).encode())
        return Reply(200, headers, outcome.body)

    def close(self) -> None:
        self.code.close()
