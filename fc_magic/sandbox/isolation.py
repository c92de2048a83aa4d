"""Whether function instances get a filesystem of their own here, and what it holds.

On FC an instance sees its code (read-only), its own /tmp, the system and
FC's base environment: never the client's home, its ``~/.lithops``, its
Lithops config or its caches. The sandbox gives each instance that view with
a mount namespace (``unshare --mount``, then `_instance.isolate` pivots into
a tmpfs root) when the machine allows it: Linux, the ``unshare`` command, and
the right to mount (root, or CAP_SYS_ADMIN). `detect` checks that once per
process by isolating a probe and looking for a file it must not see. Where
the machine offers nothing, instances run as before (they see the client's
files) and the sandbox says so once in its log.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

from . import _instance

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0
#: Where an isolated instance sees its code package (as on FC) and the base environment.
CODE_MOUNT = "/code"
BASE_MOUNT = "/opt/fc-base-env"
#: Set to "0" to run instances without isolation even where the machine allows it.
ENV_SWITCH = "FC_SANDBOX_ISOLATION"


@dataclass(frozen=True)
class Isolation:
    """What the machine offers: a command prefix that gives an instance its own mounts."""

    available: bool
    reason: str                  # why not, or how
    prefix: tuple[str, ...] = ()
    #: The instance is PID 1 of a PID namespace of its own: the process the
    #: sandbox starts is ``unshare``, the instance its only child.
    own_pids: bool = False


_found: Isolation | None = None
_lock = threading.Lock()


def detect() -> Isolation:
    """Once per process: can instances be isolated here? (the probe takes ~50 ms)."""
    global _found
    with _lock:
        if _found is None:
            _found = _detect()
            if _found.available:
                logger.info("sandbox instances are isolated: %s", _found.reason)
            else:
                logger.warning("sandbox instances are NOT isolated from the client's files "
                               "(%s): a task can read and write them, unlike on FC",
                               _found.reason)
        return _found


def _detect() -> Isolation:
    if os.environ.get(ENV_SWITCH) == "0":
        return Isolation(False, f"{ENV_SWITCH}=0")
    if not sys.platform.startswith("linux"):
        return Isolation(False, f"mount namespaces need Linux, not {sys.platform}")
    unshare = shutil.which("unshare")
    if unshare is None:
        return Isolation(False, "no `unshare` command (util-linux)")
    mounts = (unshare, "--mount", "--propagation", "private")
    # With a PID namespace too, /proc shows the instance's processes only (not
    # the client's, whose /proc/PID/environ may hold its AccessKey).
    found = _probe(mounts + ("--pid", "--kill-child"))
    if found is None:
        return Isolation(True, "a mount and a PID namespace per instance "
                               "(unshare --mount --pid)", mounts + ("--pid", "--kill-child"),
                         own_pids=True)
    logger.debug("no PID namespace for instances: %s", found)
    found = _probe(mounts)
    if found is None:
        return Isolation(True, "a mount namespace per instance (unshare --mount); /proc "
                               "shows the machine's processes", mounts)
    return Isolation(False, found)


def _probe(prefix: tuple[str, ...]) -> str | None:
    """None if an instance started with ``prefix`` is isolated, else why not."""
    with tempfile.TemporaryDirectory(prefix="fc-isolation-probe-") as work:
        hidden = os.path.join(work, "client-file")
        with open(hidden, "w") as f:
            f.write("the client's")
        plan = plan_for(os.path.join(work, "root"), os.path.join(work, "tmp"),
                        [], os.path.realpath(sys.executable))
        try:
            proc = subprocess.run([*prefix, os.path.realpath(sys.executable), "-I", "-S",
                                   _instance.__file__, "--probe", json.dumps(plan), hidden],
                                  capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the isolation probe failed: {type(exc).__name__}"
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return f"a namespace is not allowed here: {last[-160:]}"
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return "the isolation probe gave no answer"
        if not (answer.get("hidden") and answer.get("python")):
            return f"the isolation probe saw the wrong files: {answer}"
        if not os.path.exists(os.path.join(work, "tmp", ".probe")):
            return "the isolated probe could not write its /tmp"
    return None


def python_prefix(interpreter: str) -> str:
    """The installation an interpreter runs from (its bin/ folder's parent)."""
    return os.path.dirname(os.path.dirname(os.path.realpath(interpreter)))


def plan_for(root: str, tmp: str, read_only: list[tuple[str, str]], interpreter: str) -> dict:
    """What `_instance.isolate` builds: [folder, where the instance sees it] besides the system.

    The interpreter's installation stays at its own path (its prefix is
    compiled in).
    """
    os.makedirs(root, exist_ok=True)
    os.makedirs(tmp, exist_ok=True)
    prefix = python_prefix(interpreter)
    return {"root": root, "tmp": tmp,
            "read_only": [*[list(pair) for pair in read_only], [prefix, prefix]]}
