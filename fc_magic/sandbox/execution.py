"""Function instances: processes of the function's Python running its handler.

Each instance is ``python -I -S _instance.py`` in the function's interpreter
(the client's own when the versions match, else pyenv's), started in a
session of its own, that imports only from the unpacked code package and a
cached base environment holding FC's preinstalled modules (oss2, requests).
Where the machine allows it (`isolation`), it also sees only those, its
Python, the system and a /tmp of its own: not the client's files.

Memory, as FC's cgroup enforces it, without a cgroup (this sandbox uses none:
see the README): each process may grow its address space by the function's
memory (plus a little for thread stacks) past what the instance had when it
became ready, and an allocation beyond that kills the process at once, as
FC's out-of-memory killer would (`_instance.kill_on_out_of_memory`); a
watchdog sums the proportional set size of the instance's whole process tree
and kills the largest process when the sum passes the function's memory; and
the kernel's own peaks (VmHWM of live processes, the instance's ru_maxrss
over reaped ones) are checked too, so a brief peak between two samples is
still seen. The instance adopts its orphans, so the tree includes processes
that started a session of their own; a timeout, a stop or an out-of-memory
end kills that whole tree. Instances stay warm and are reused; at most
``concurrency`` run at once, the rest queue.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import queue
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from . import _instance
from .isolation import BASE_MOUNT, CODE_MOUNT, Isolation, detect as detect_isolation, plan_for as isolation_plan

logger = logging.getLogger(__name__)

#: The least of FC's preinstalled modules: what Lithops' worker imports besides
#: its package. Used when the full list cannot be installed here.
BASE_PACKAGES = ("oss2", "requests")

#: Address space allowed on top of the function's memory: virtual reservations
#: (thread stacks, malloc arenas, mapped libraries) are not memory use, and the
#: watchdog enforces the real limit on resident memory.
ADDRESS_SPACE_HEADROOM_MB = 1024
#: Once the instance is ready: address space each process may add beyond the
#: function's memory (thread stacks and malloc arenas are reserved, not used).
ADDRESS_SPACE_SLACK_MB = 128
KILL_ROUNDS = 50

INSTANCE_START_TIMEOUT_S = 120.0
WATCH_INTERVAL_S = 0.2


class SandboxSetupError(RuntimeError):
    """The sandbox cannot run a function here (no such Python, base env failed)."""


def interpreter_for(runtime: str) -> str:
    """The Python that runs an FC runtime such as ``python3.12`` on this machine."""
    version = runtime.removeprefix("python")
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin",
                                          f"python{version}")),
                   key=lambda p: [int(x) for x in p.split("/")[-3].split(".") if x.isdigit()])
    if not found:
        raise SandboxSetupError(f"no Python {version} found for FC runtime {runtime!r}; "
                                f"install it (e.g. pyenv install {version})")
    return found[-1]


_base_lock = threading.Lock()


def fc_builtins(version: str) -> tuple[str, ...]:
    """FC's preinstalled distributions for a Python at FC's versions, from Alibaba's docs.

    The list fc_magic's pre-flight check trusts (`fc_magic.limits`, the one
    product module the sandbox reads: Function Compute's own facts), so a
    function the check lets through finds the same modules here as on FC.
    """
    from ..limits import fc_builtin_pins

    return fc_builtin_pins(version) or BASE_PACKAGES


def base_env(interpreter: str, cache_dir: str) -> str:
    """Build once (and cache) FC's preinstalled modules for an interpreter.

    The full documented list (about 270 MB, half a minute, once per Python);
    if it cannot be installed here, the few modules Lithops' worker needs.
    """
    version = subprocess.run([interpreter, "-I", "-c",
                              "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    problem = ""
    for packages in (fc_builtins(version), BASE_PACKAGES):
        key = hashlib.sha256(repr((version, packages)).encode()).hexdigest()[:12]
        target = os.path.join(cache_dir, f"base-py{version}-{key}")
        if os.path.isdir(target):
            return target
        with _base_lock:
            if os.path.isdir(target):
                return target
            problem = _install(interpreter, version, packages, cache_dir, target)
        if not problem:
            return target
        logger.warning("the sandbox base environment for Python %s could not get %d of "
                       "FC's preinstalled packages (%s); using %s only", version,
                       len(packages), problem[-200:], ", ".join(BASE_PACKAGES))
    raise SandboxSetupError(f"could not build the base environment for Python "
                            f"{version}: {problem[-500:]}")


def _install(interpreter: str, version: str, packages, cache_dir: str, target: str) -> str:
    """pip install into ``target`` atomically; the error text, or '' on success."""
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".base-", dir=cache_dir)
    logger.info("building the sandbox base environment for Python %s (%d packages)",
                version, len(packages))
    proc = subprocess.run([interpreter, "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "--no-input", "--target", tmp,
                           *packages], capture_output=True, text=True)
    if proc.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        return proc.stderr.strip() or f"pip exited with {proc.returncode}"
    try:
        os.rename(tmp, target)
    except OSError:  # another process published it first
        shutil.rmtree(tmp, ignore_errors=True)
    return ""


@dataclass
class FunctionSpec:
    """What an instance needs to know about its function."""

    uid: str                # changes when the function is re-created
    name: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    code_dir: str
    env: dict = field(default_factory=dict)
    region: str = "cn-hangzhou"
    account_id: str = "0"
    role: str = ""          # the function's RAM role ARN ("" : none)
    initializer: str = ""   # instanceLifecycleConfig.initializer handler ("" : none)
    initializer_timeout_s: int = 3


@dataclass
class Outcome:
    """How one invocation ended, in the terms FC reports it."""

    body: bytes = b""
    error: dict | None = None       # {"errorMessage", "errorType", ...}
    error_kind: str | None = None   # None | "Unhandled" (FC's x-fc-error-type)
    duration_ms: float = 0.0
    max_memory_mb: float = 0.0


class Instance:
    """One warm process serving invocations of one function, one at a time."""

    def __init__(self, spec: FunctionSpec, interpreter: str, base_dir: str, log_dir: str,
                 isolation: Isolation | None = None):
        self.spec = spec
        self.tmp = tempfile.mkdtemp(prefix="fc-instance-", dir=log_dir)
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        meta = {"name": spec.name, "handler": spec.handler, "initializer": spec.initializer,
                "memory": spec.memory_mb,
                "timeout": spec.timeout_s, "region": spec.region,
                "account_id": spec.account_id}
        # The instance's own /tmp (and home): a folder of its own, seen as /tmp
        # when isolated. The log stays beside it, out of the function's reach.
        own_tmp = os.path.join(self.tmp, "tmp")
        os.makedirs(own_tmp)
        command = [interpreter]
        if isolation is not None and isolation.available:
            # The real binary, not a venv's link to it: the venv is the client's.
            command = [*isolation.prefix, os.path.realpath(interpreter)]
            meta["isolate"] = isolation_plan(os.path.join(self.tmp, "root"), own_tmp,
                                             [(spec.code_dir, CODE_MOUNT),
                                              (base_dir, BASE_MOUNT)], interpreter)
            seen_tmp, seen_code, seen_base = "/tmp", CODE_MOUNT, BASE_MOUNT
        else:
            seen_tmp, seen_code, seen_base = own_tmp, spec.code_dir, base_dir
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": seen_tmp, "TMPDIR": seen_tmp,
               "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2",
               "FC_FUNCTION_NAME": spec.name, "FC_FUNCTION_HANDLER": spec.handler,
               "FC_FUNCTION_MEMORY_SIZE": str(spec.memory_mb), "FC_REGION": spec.region,
               "FC_ACCOUNT_ID": spec.account_id, "FC_RUNTIME": spec.runtime,
               "FC_INSTANCE_ID": os.path.basename(self.tmp), **spec.env}
        self.oom_marker = os.path.join(own_tmp, ".out-of-memory")
        meta["oom_marker"] = os.path.join(seen_tmp, ".out-of-memory")
        limit = (spec.memory_mb + ADDRESS_SPACE_HEADROOM_MB) * 2**20

        def limit_memory():
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.log_path = os.path.join(self.tmp, "instance.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "-I", "-S", _instance.__file__, seen_code, seen_base,
                 str(req_r), str(resp_w), json.dumps(meta)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=spec.code_dir,
                pass_fds=(req_r, resp_w), start_new_session=True, preexec_fn=limit_memory)
        os.close(req_r)
        os.close(resp_w)
        self._own_pids = bool(isolation is not None and isolation.own_pids)
        self.oom_killed = False
        self.max_memory_kb = 0
        self.last_used = time.monotonic()
        header, _ = self._read(INSTANCE_START_TIMEOUT_S)
        if header is None or not header.get("ready"):
            self.close()
            raise SandboxSetupError(f"instance of {spec.name} did not start: "
                                    f"{self.log_tail()}")
        #: FC runs the initializer once, before the instance's first invocation.
        self.initialized = not spec.initializer
        if self.initialized:
            self._limit_address_space()

    def _limit_address_space(self) -> None:
        """From now on, a process may grow by the function's memory, no more.

        Measured from the ready instance's own size (the interpreter and the
        handler's imports are not the function's memory use on FC either).
        """
        pid = self.instance_pid()
        ready_kb = _status_kb(pid, b"VmSize:")
        limit = (ready_kb // 1024 + self.spec.memory_mb + ADDRESS_SPACE_SLACK_MB) * 2**20
        try:
            soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
            if ready_kb and limit < soft:
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        except OSError as exc:  # the process is gone: the first invocation reports it
            logger.debug("could not lower the address-space limit: %s", exc)

    def instance_pid(self) -> int:
        """The instance's Python: the started process, or (PID namespace) its only child."""
        if not self._own_pids:
            return self.proc.pid
        table = _process_table()
        children = [pid for pid, (ppid, _) in table.items() if ppid == self.proc.pid]
        return children[0] if children else self.proc.pid

    def log_tail(self, n: int = 400) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    def _read(self, timeout: float):
        ready, _, _ = select.select([self._resp_r], [], [], max(timeout, 0))
        if not ready:
            return None, b""
        try:
            return _instance.read_frame(self._resp_r)
        except (EOFError, OSError, ValueError):
            return {"eof": True}, b""

    def invoke(self, request_id: str, event: bytes, credentials: dict | None = None) -> Outcome:
        """Run one invocation; ``credentials`` become its ``context.credentials`` (the role's)."""
        self.max_memory_kb = 0
        self.oom_killed = False
        if not self.initialized:
            failed = self._initialize(request_id, credentials)
            if failed is not None:
                return failed
        start = time.monotonic()
        header = {"request_id": request_id}
        if credentials:
            header["credentials"] = credentials
        try:
            _instance.write_frame(self._req_w, header, event)
            header, body = self._read(self.spec.timeout_s)
        except OSError:
            header, body = {"eof": True}, b""
        duration = (time.monotonic() - start) * 1000
        if header is not None and not header.get("eof"):
            # The kernel's peak for the instance and every process it reaped:
            # one process over the function's memory alone is over it for sure.
            peak = int(header.get("peak_rss_kb", 0))
            self.max_memory_kb = max(self.max_memory_kb, peak)
            if peak > self.spec.memory_mb * 1024:
                self.oom_killed = True
                header = {"eof": True}
        if os.path.exists(self.oom_marker):
            self.oom_killed = True
        mem = self.max_memory_kb / 1024
        self.last_used = time.monotonic()
        if header is None:
            self.close()
            return Outcome(error={"errorMessage": f"Function timed out after "
                                                  f"{self.spec.timeout_s} seconds "
                                                  f"(maxMemoryUsage: {mem:.2f}MB)"},
                           error_kind="Unhandled", duration_ms=duration, max_memory_mb=mem)
        if header.get("eof"):
            self.close()
            reason = (f"; the instance exceeded its memory limit of {self.spec.memory_mb}MB"
                      if self.oom_killed else "")
            return Outcome(error={"errorMessage": "Process exited unexpectedly before "
                                                  f"completing request (duration: "
                                                  f"{duration:.0f}ms, maxMemoryUsage: "
                                                  f"{mem:.2f}MB){reason}"},
                           error_kind="Unhandled", duration_ms=duration, max_memory_mb=mem)
        if "error" in header:
            return Outcome(error=header["error"], error_kind="Unhandled",
                           duration_ms=duration, max_memory_mb=mem)
        return Outcome(body=body, duration_ms=duration, max_memory_mb=mem)

    def _initialize(self, request_id: str, credentials: dict | None) -> Outcome | None:
        """Run the function's initializer hook (None: it succeeded).

        As FC does: once per instance, before its first invocation, within the
        hook's own timeout; a failure fails that invocation and the instance
        is discarded (the next invocation gets a new one). Once it ran, the
        address-space limit is set from the instance's size, as after start.
        """
        start = time.monotonic()
        header = {"request_id": request_id, "initialize": True}
        if credentials:
            header["credentials"] = credentials
        try:
            _instance.write_frame(self._req_w, header)
            reply, _ = self._read(self.spec.initializer_timeout_s)
        except OSError:
            reply = {"eof": True}
        duration = (time.monotonic() - start) * 1000
        if reply is not None and not reply.get("eof") and "error" not in reply:
            self.initialized = True
            self._limit_address_space()
            return None
        self.close()
        if reply is None:
            error = {"errorMessage": f"Function initialization timed out after "
                                     f"{self.spec.initializer_timeout_s} seconds",
                     "errorType": "InitializationError"}
        elif reply.get("eof"):
            error = {"errorMessage": "Process exited unexpectedly during initialization",
                     "errorType": "InitializationError"}
        else:
            error = dict(reply["error"])
        return Outcome(error=error, error_kind="Unhandled", duration_ms=duration)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for fd in (self._req_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._req_w = self._resp_r = -1
        kill_tree(self.proc.pid)
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def processes(self, table: dict[int, tuple[int, bytes]]) -> list[int]:
        """The instance and every live process under it."""
        if self.proc.poll() is not None:
            return []
        return [self.proc.pid] + _descendants(self.proc.pid, table)


def _process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, state letter) for every process."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def _descendants(root: int, table: dict[int, tuple[int, bytes]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, state) in table.items():
        if state != b"Z":  # a zombie holds no memory and cannot be killed
            children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kill_tree(root: int) -> None:
    """SIGKILL a process and everything under it, including new sessions.

    The root is stopped first, so it starts nothing new, and, being a child
    subreaper, keeps adopting the orphans of what is killed: each round
    kills every descendant seen, until none is left (bounded).
    """
    try:
        os.kill(root, signal.SIGSTOP)
    except ProcessLookupError:
        return
    for _ in range(KILL_ROUNDS):
        below = _descendants(root, _process_table())
        if not below:
            break
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    else:
        logger.warning("processes under instance %d kept appearing; killing it anyway", root)
    for kill in (os.killpg, os.kill):
        try:
            kill(root, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _status_kb(pid: int, field: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Executor:
    """Runs invocations on warm instances, at most ``concurrency`` at a time."""

    def __init__(self, concurrency: int, cache_dir: str, work_dir: str,
                 idle_timeout_s: float = 300.0,
                 role_credentials: Callable[[str], dict | None] | None = None,
                 isolate: bool = True):
        self.concurrency = concurrency
        #: role ARN -> temporary credentials for one invocation's context.credentials.
        self.role_credentials = role_credentials
        self.cache_dir = cache_dir
        self.work_dir = work_dir
        self.idle_timeout_s = idle_timeout_s
        self._queue: queue.Queue = queue.Queue()
        self._idle: dict[str, list[Instance]] = {}
        #: Threads closing the instances of deleted functions (joined by stop()).
        self._closers: list[threading.Thread] = []
        self._busy: set[Instance] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._interpreters: dict[str, Future] = {}
        #: Whether instances get a filesystem of their own (checked once per process).
        self.isolation = (detect_isolation() if isolate else
                          Isolation(False, "Sandbox(isolate=False)"))
        self._threads = [threading.Thread(target=self._serve, daemon=True,
                                          name=f"fc-sandbox-slot-{i}")
                         for i in range(concurrency)]
        self._watch = threading.Thread(target=self._watch_memory, daemon=True,
                                       name="fc-sandbox-memory")
        for t in self._threads:
            t.start()
        self._watch.start()

    def prepare(self, runtime: str) -> Future:
        """Start getting an FC runtime's interpreter and base env ready (once)."""
        with self._lock:
            future = self._interpreters.get(runtime)
            if future is not None:
                return future
            future = self._interpreters[runtime] = Future()

        def build() -> None:
            try:
                interpreter = interpreter_for(runtime)
                future.set_result((interpreter, base_env(interpreter, self.cache_dir)))
            except Exception as exc:
                future.set_exception(exc)

        threading.Thread(target=build, daemon=True, name=f"fc-sandbox-{runtime}").start()
        return future

    def state(self, runtime: str) -> tuple[str, str]:
        """FC's function state for a runtime: (Active|Pending|Failed, reason)."""
        future = self.prepare(runtime)
        if not future.done():
            return "Pending", "preparing the runtime environment"
        if future.exception() is not None:
            return "Failed", str(future.exception())
        return "Active", ""

    def environment(self, runtime: str) -> tuple[str, str]:
        """(interpreter, base env dir) for an FC runtime, waiting for it if needed."""
        return self.prepare(runtime).result()

    def submit(self, spec: FunctionSpec, request_id: str, event: bytes) -> Future:
        future: Future = Future()
        self._queue.put((spec, request_id, event, future))
        return future

    def pending(self) -> int:
        return self._queue.qsize()

    def _take_instance(self, spec: FunctionSpec) -> Instance:
        with self._lock:
            pool = self._idle.get(spec.uid, [])
            while pool:
                inst = pool.pop()
                if inst.alive:
                    self._busy.add(inst)
                    return inst
                inst.close()
            # Keep the number of idle processes bounded: close the stalest.
            idle = [i for p in self._idle.values() for i in p]
            stale = sorted(idle, key=lambda i: i.last_used)[:max(0, len(idle) - self.concurrency)]
            for inst in stale:
                self._idle[inst.spec.uid].remove(inst)
        for inst in stale:
            inst.close()
        interpreter, base = self.environment(spec.runtime)
        inst = Instance(spec, interpreter, base, self.work_dir, self.isolation)
        with self._lock:
            if not self._stopping.is_set():
                self._busy.add(inst)
                return inst
        inst.close()  # started while the sandbox stopped: stop() did not see it
        raise SandboxSetupError("the sandbox is stopping")

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._reap_idle()
                continue
            if item is None:
                return
            spec, request_id, event, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                inst = self._take_instance(spec)
            except Exception as exc:
                future.set_result(Outcome(error={"errorMessage": str(exc),
                                                 "errorType": type(exc).__name__},
                                          error_kind="Unhandled"))
                continue
            try:
                creds = (self.role_credentials(spec.role)
                         if self.role_credentials is not None and spec.role else None)
                outcome = inst.invoke(request_id, event, creds)
            except Exception as exc:  # never lose a slot thread
                inst.close()
                outcome = Outcome(error={"errorMessage": f"sandbox error: {exc}"},
                                  error_kind="Unhandled")
            with self._lock:
                self._busy.discard(inst)
                if inst.alive and not self._stopping.is_set():
                    self._idle.setdefault(spec.uid, []).append(inst)
            if not inst.alive:
                inst.close()
            future.set_result(outcome)

    def _reap_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [i for p in self._idle.values() for i in p
                   if now - i.last_used > self.idle_timeout_s]
            for inst in old:
                self._idle[inst.spec.uid].remove(inst)
        for inst in old:
            inst.close()

    def crash_instances_holding(self, name: str) -> int:
        """Kill every busy instance whose /tmp holds a file ``name``: a host failure.

        FC loses an instance (and the call it runs) when its host fails; the
        call then writes no result. A task asks for that by creating the file,
        and a test calls this. Returns how many instances were killed.
        """
        with self._lock:
            doomed = [inst for inst in self._busy
                      if os.path.exists(os.path.join(inst.tmp, "tmp", name))]
        for inst in doomed:
            kill_tree(inst.proc.pid)
        return len(doomed)

    def drop_function(self, uid: str) -> None:
        """Close the idle instances of a deleted or replaced function, in the background.

        FC answers DeleteFunction at once and reclaims instances later; a
        busy machine tearing down process trees must not hold the answer past
        the client's read timeout. `stop` waits for these closers.
        """
        with self._lock:
            instances = self._idle.pop(uid, [])
        for inst in instances:
            closer = threading.Thread(target=inst.close, name="fc-sandbox-drop", daemon=True)
            closer.start()
            self._closers.append(closer)

    def _watch_memory(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            with self._lock:
                busy = list(self._busy)
            if not busy:
                continue
            table = _process_table()
            for inst in busy:
                pids = inst.processes(table)
                sizes = {pid: _pss_kb(pid) for pid in pids}
                total = sum(sizes.values())
                limit = inst.spec.memory_mb * 1024
                # The kernel keeps each live process's peak: a spike shorter
                # than the sampling interval still shows there.
                peaks = {pid: _status_kb(pid, b"VmHWM:") for pid in pids}
                inst.max_memory_kb = max(inst.max_memory_kb, total, *peaks.values(), 0)
                over = [pid for pid, peak in peaks.items() if peak > limit]
                if total > limit and sizes:
                    # What FC's cgroup OOM killer does: kill the biggest process.
                    over.append(max(sizes, key=sizes.get))
                for victim in set(over):
                    inst.oom_killed = True
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except OSError:
                        pass

    def stop(self) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[3].cancel()
        with self._lock:
            instances = [i for p in self._idle.values() for i in p] + list(self._busy)
            self._idle.clear()
        for inst in instances:
            inst.close()
        for closer in self._closers:
            closer.join(timeout=30)
        # Slot threads see their instance gone and end; one that was starting
        # an instance closes it itself (see _take_instance).
        for t in self._threads:
            t.join(timeout=5)
