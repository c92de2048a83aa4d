"""One function instance: the program the sandbox runs with ``python -I -S``.

Standard library only: it runs in the function's own Python, isolated from the
client's site-packages. It puts the unpacked code package and the base
environment (FC's preinstalled modules) on ``sys.path``, imports the handler
once, then serves invocations read from one pipe and answers on another, so
whatever the function prints goes to the instance log, not into the protocol.

Frame: 4-byte big-endian header length, JSON header, then ``header["size"]``
bytes of body.

The instance adopts every process its function leaves behind (a child
subreaper), so the sandbox finds the whole tree under it, even processes that
started a session of their own. An allocation over the function's memory
(the sandbox sets the address-space limit) kills the process that made it,
as FC's out-of-memory killer does, instead of raising MemoryError, in this
process and in the children it forks (Python 3.12+: ``sys.monitoring``).

Isolation (when the sandbox found the machine allows it, see
`fc_magic.sandbox.isolation`): started by ``unshare --mount``, the instance
first builds a root of its own in a tmpfs (the system's /usr and /etc
read-only, a minimal /dev, a fresh /proc, its own /tmp, its code package, the
base environment and its Python, each read-only at its own path), pivots into
it and detaches the old root, so the client's home, caches and work folders
are not there at all, as on FC.
"""
import json
import os
import resource
import signal
import site
import struct
import sys
import traceback

PR_SET_CHILD_SUBREAPER = 36

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
#: pivot_root(2) by machine; elsewhere chroot(2) into the same root.
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
#: Top-level system folders an instance sees (read-only), or their symlinks.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

HEAD = struct.Struct("!I")


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    (size,) = HEAD.unpack(_read_exact(fd, HEAD.size))
    header = json.loads(_read_exact(fd, size))
    return header, _read_exact(fd, header.get("size", 0))


def write_frame(fd, header, body=b""):
    header = dict(header, size=len(body))
    raw = json.dumps(header).encode()
    data = HEAD.pack(len(raw)) + raw + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Credentials:
    """The function role's temporary credentials, as FC hands them to one invocation."""

    def __init__(self, given=None):
        given = given or {}
        self.access_key_id = given.get("AccessKeyId")
        self.access_key_secret = given.get("AccessKeySecret")
        self.security_token = given.get("SecurityToken")
        self.expiration = given.get("Expiration")


class FunctionMeta:
    def __init__(self, meta):
        self.name = meta["name"]
        self.handler = meta["handler"]
        self.memory = meta["memory"]
        self.timeout = meta["timeout"]


class Context:
    """What FC's Python runtime passes as ``context`` (the fields handlers use)."""

    def __init__(self, request_id, meta, credentials=None):
        self.request_id = request_id
        self.credentials = Credentials(credentials)
        self.function = FunctionMeta(meta)
        self.region = meta["region"]
        self.account_id = meta["account_id"]
        self.service = None


class _Mounts:
    def __init__(self):
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)

    def mount(self, source, target, fstype, flags, data=None):
        enc = (lambda v: v.encode() if isinstance(v, str) else v)
        if self.libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")

    def bind(self, source, target, read_only):
        self.mount(source, target, None, MS_BIND | MS_REC)
        if not read_only:
            return
        # Every mount under the bound tree (Docker binds /etc/hosts, ...), not
        # just its top, or the instance could write to the machine's files.
        for point in self.mounts_under(target):
            self.mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)

    @staticmethod
    def mounts_under(target):
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == target or point.startswith(target.rstrip("/") + "/"):
                    points.append(point)
        return points


def isolate(plan):
    """Pivot into a root holding only what an FC instance has (see the module docstring).

    ``plan``: {"root": an empty folder to build it in, "tmp": the instance's
    own folder (its /tmp), "read_only": [[folder, where the instance sees it]]}.
    """
    m = _Mounts()
    m.mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = plan["root"]
    m.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")

    def inside(path):
        return os.path.join(root, path.lstrip("/"))

    for name in SYSTEM_DIRS:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), inside(host))
        elif os.path.isdir(host):
            os.makedirs(inside(host))
            m.bind(host, inside(host), read_only=True)
    os.makedirs(inside("/tmp"))
    m.bind(plan["tmp"], inside("/tmp"), read_only=False)
    for source, target in plan["read_only"]:
        if os.path.isdir(source) and not os.path.ismount(inside(target)):
            os.makedirs(inside(target), exist_ok=True)
            m.bind(source, inside(target), read_only=True)
    os.makedirs(inside("/proc"))
    m.mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = inside("/dev")
    os.makedirs(dev)
    m.mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755")
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            open(os.path.join(dev, name), "w").close()
            m.bind("/dev/" + name, os.path.join(dev, name), read_only=False)
    os.makedirs(os.path.join(dev, "shm"))
    m.mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    # As on FC, only /tmp is writable: the root's own folders are read-only too.
    m.mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is not None and m.libc.syscall(number, b".", b".") == 0:
        # The old root is stacked under the new one: detach it entirely.
        if m.libc.umount2(b".", MNT_DETACH) != 0:
            raise OSError("could not detach the old root")
    else:
        os.chroot(".")
    os.chdir("/")


def probe(plan, hidden):
    """Isolate, then say whether ``hidden`` is gone and /tmp is writable (the sandbox's check)."""
    isolate(plan)
    with open("/tmp/.probe", "w") as f:
        f.write("ok")
    print(json.dumps({"hidden": not os.path.exists(hidden),
                      "python": os.path.exists(sys.executable)}))


def become_subreaper():
    """Orphans of the function's processes are re-parented here, not to init."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass  # not Linux: timeouts still kill the process group


def kill_on_out_of_memory(marker):
    """A failed allocation (a MemoryError with no message) kills the process.

    Under the sandbox's address-space limit that is an allocation beyond the
    function's memory: FC's OOM killer ends the process there, so does this.
    The marker file tells the sandbox why the process died.
    """
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return  # Python < 3.12: the allocation fails with MemoryError instead

    def on_raise(code, offset, exc):
        if type(exc) is MemoryError and not exc.args:
            try:
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                pass
            if os.getpid() == 1:
                # PID 1 of its own namespace (isolated): its own SIGKILL is ignored.
                os._exit(128 + signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    for tool in (5, 4, 3):
        try:
            monitoring.use_tool_id(tool, "fc-sandbox-oom")
        except ValueError:
            continue
        monitoring.register_callback(tool, monitoring.events.RAISE, on_raise)
        monitoring.set_events(tool, monitoring.events.RAISE)
        return


def peak_rss_kb():
    """The largest resident size this process or any child it reaped ever had.

    This process's own peak is VmHWM: RUSAGE_SELF would also count the
    sandbox's process it was forked from, whose peak survives the exec.
    """
    own = 0
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    own = int(line.split()[1])
    except OSError:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main():
    if sys.argv[1] == "--probe":
        probe(json.loads(sys.argv[2]), sys.argv[3])
        return
    meta = json.loads(sys.argv[5])
    if meta.get("isolate"):
        isolate(meta["isolate"])
    code_dir, base_dir, req_fd, resp_fd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    become_subreaper()
    kill_on_out_of_memory(meta["oom_marker"])
    sys.path[0:0] = [code_dir, base_dir]
    for folder in (code_dir, base_dir):
        site.addsitedir(folder)  # .pth files, without the client's site-packages
    os.chdir(code_dir)
    handler = initializer = None
    load_error = None
    try:
        handler = _load(meta["handler"])
        if meta.get("initializer"):
            initializer = _load(meta["initializer"])
    except BaseException as exc:  # reported on every invocation, as FC does
        load_error = exc, traceback.format_exc()
    write_frame(resp_fd, {"ready": True})
    while True:
        try:
            header, event = read_frame(req_fd)
        except EOFError:
            return
        reply = {"request_id": header["request_id"]}
        body = b""
        if header.get("initialize") and load_error is None:
            # FC's initializer hook: ``initializer(context)``, once, before the first call.
            try:
                initializer(Context(header["request_id"], meta, header.get("credentials")))
                reply["initialized"] = True
            except BaseException as exc:
                reply["error"] = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                  "stackTrace": traceback.format_exc().splitlines()}
        elif load_error is not None:
            exc, text = load_error
            reply["error"] = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                              "stackTrace": text.splitlines()}
        else:
            try:
                result = handler(event, Context(header["request_id"], meta,
                                                header.get("credentials")))
                if isinstance(result, bytes):
                    body = result
                elif isinstance(result, str):
                    body = result.encode()
                elif result is not None:
                    body = json.dumps(result).encode()
            except BaseException as exc:
                reply["error"] = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                  "stackTrace": traceback.format_exc().splitlines()}
        sys.stdout.flush()
        sys.stderr.flush()
        reap_orphans()
        reply["peak_rss_kb"] = peak_rss_kb()
        write_frame(resp_fd, reply, body)


def _load(dotted):
    """The function ``module.function`` names, imported from the code package."""
    module_name, _, func_name = dotted.rpartition(".")
    module = __import__(module_name, fromlist=[func_name])
    return getattr(module, func_name)


def reap_orphans():
    """Collect adopted processes that have ended (their peaks count in RUSAGE_CHILDREN)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    main()
