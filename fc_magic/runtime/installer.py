"""Run the package installer (uv when present, pip otherwise) and report its output.

uv installs for another Python and platform about ten times faster than pip
(``--target --python-version --python-platform --only-binary :all:``), but it
ignores pip's configuration: on a machine whose pip is pointed at extra
indexes, find-links folders, constraints or a CA bundle, uv would resolve
against plain PyPI and fail or pick other files. So the sources pip is
configured with are read once (``pip config list``, which includes ``PIP_*``
environment variables) and handed to uv explicitly, and a CA bundle pip knows
about becomes uv's ``SSL_CERT_FILE``.

Index URLs may hold a password (``https://user:token@host/simple``), so they
reach uv through its environment (``UV_INDEX_URL``...), never its command
line, which every local user can read in ``ps``; and every command line and
installer line that is logged or shown goes through `fc_magic.redact`. The
installer's environment is an allow-list (`installer_env`): a requirement
line or a package's build script never sees cloud credentials.

Everything here runs in a subprocess with ``cwd`` set explicitly: the
kernel's working directory is never touched. The installer runs in its own
session (process group), killed as a whole on every way out of `run`.
"""
from __future__ import annotations

import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..ansi import strip_ansi
from ..inputs import InputProblem
from ..redact import redact

logger = logging.getLogger(__name__)

#: How many trailing installer lines are kept for error reports.
LOG_KEEP = 400


class BuildFailed(InputProblem):
    """A runtime could not be built; the message is the installer's relevant line."""

    def __init__(self, message: str, log: Sequence[str] = ()):
        super().__init__(message)
        self.log = list(log)


@dataclass(frozen=True)
class Sources:
    """Where packages come from, as pip is configured on this machine."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    cert: str | None = None

    def uv_args(self) -> list[str]:
        """Command-line options for uv: local paths only, nothing that can hold a password."""
        args: list[str] = []
        for link in self.find_links:
            if not _is_url(link) and "," in link:  # UV_FIND_LINKS is comma-separated
                args += ["--find-links", link]
        for path in self.constraints:
            if os.path.exists(path):
                args += ["--constraint", path]
        return args

    def uv_env(self) -> dict[str, str]:
        """uv's environment for the same sources: index URLs may carry credentials."""
        env: dict[str, str] = {}
        if self.index_url:
            env["UV_INDEX_URL"] = self.index_url
        if self.extra_index_urls:
            env["UV_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        links = [link for link in self.find_links if _is_url(link) or "," not in link]
        if links:
            env["UV_FIND_LINKS"] = ",".join(links)
        if self.extra_index_urls or self.find_links:
            # pip takes the best version across every source; uv by default
            # stops at the first index that knows the name. Same result as pip:
            env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
        return env


def _is_url(text: str) -> bool:
    return "://" in text


def _split(value: str) -> list[str]:
    return [part for part in value.replace("\n", " ").split(" ") if part]


def parse_pip_config(text: str) -> Sources:
    """Read ``pip config list`` output (``scope.key='value'`` lines) into `Sources`.

    Later lines win for single values (pip lists files from the widest scope
    to the narrowest and the environment last).
    """
    index_url = cert = None
    extra: list[str] = []
    links: list[str] = []
    constraints: list[str] = []
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        option = key.strip().rsplit(".", 1)[-1]
        try:
            value = " ".join(shlex.split(raw.strip()))
        except ValueError:
            value = raw.strip().strip("'\"")
        if option == "index-url":
            index_url = value
        elif option == "extra-index-url":
            extra += [v for v in _split(value) if v not in extra]
        elif option == "find-links":
            links += [v for v in _split(value) if v not in links]
        elif option == "constraint":
            constraints += [v for v in _split(value) if v not in constraints]
        elif option == "cert":
            cert = value
    return Sources(index_url, tuple(extra), tuple(links), tuple(constraints), cert)


@functools.lru_cache(maxsize=1)
def pip_sources() -> Sources:
    """The package sources pip uses here (empty when pip is absent)."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=60, cwd=os.sep,
                             env=allowed_env())
    except (OSError, subprocess.SubprocessError):
        return Sources()
    return parse_pip_config(out.stdout) if out.returncode == 0 else Sources()


def find_uv() -> str | None:
    """The uv binary: the `uv` Python package's, else one on PATH."""
    try:
        import uv  # the PyPI package ships the binary and knows where it is
        path = uv.find_uv_bin()
        if path and os.path.exists(path):
            return path
    except (ImportError, FileNotFoundError):
        pass
    return shutil.which("uv")


def choose_installer(preference: str = "auto") -> str:
    """'uv' or 'pip'; ``FC_MAGIC_INSTALLER`` overrides 'auto'."""
    preference = os.environ.get("FC_MAGIC_INSTALLER", preference) if preference == "auto" \
        else preference
    if preference not in ("auto", "uv", "pip"):
        raise InputProblem(f"installer {preference!r} is unknown; use 'uv', 'pip' or 'auto'")
    if preference in ("auto", "uv") and find_uv():
        return "uv"
    if preference == "uv":
        raise InputProblem("uv is not installed; pip install uv, or use the pip installer")
    return "pip"


#: What an installer may see of the kernel's environment: how to find and reach
#: package sources. Installers expand ``${VAR}`` in requirement files and run
#: packages' build scripts, so anything else (cloud AccessKeys, STS tokens,
#: ``LITHOPS_CONFIG``...) stays out. The installers' own settings pass whole.
ENV_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "TMPDIR", "TEMP", "TMP", "LD_LIBRARY_PATH", "SYSTEMROOT", "COMSPEC", "PATHEXT",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CONFIG_DIRS", "NETRC",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
})
ENV_ALLOWED_PREFIXES = ("PIP_", "UV_")


def allowed_env() -> dict:
    """The kernel's environment cut down to `ENV_ALLOWED` and the installers' own settings."""
    return {name: value for name, value in os.environ.items()
            if name in ENV_ALLOWED or name.startswith(ENV_ALLOWED_PREFIXES)}


def installer_env(installer: str) -> dict:
    """The installer's environment: the allow-list above, plus pip's sources for uv."""
    env = allowed_env()
    if installer == "uv":
        sources = pip_sources()
        env.update(sources.uv_env())
        if "SSL_CERT_FILE" not in env and sources.cert and os.path.exists(sources.cert):
            env["SSL_CERT_FILE"] = sources.cert
        env.setdefault("UV_NO_PROGRESS", "1")
    else:
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


@dataclass
class CommandLog:
    """Lines an installer printed, with a callback per line for live views."""

    on_line: Callable[[str], None] | None = None
    #: Called with the process group id of each installer command as it starts.
    on_process: Callable[[int], None] | None = None
    lines: deque = field(default_factory=lambda: deque(maxlen=LOG_KEEP))

    def add(self, line: str) -> None:
        # Installers echo index URLs (credentials included) and may colour their errors.
        line = redact(strip_ansi(line))
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)


def run(cmd: list[str], *, cwd: str, env: dict, log: CommandLog, what: str) -> None:
    """Run one installer command, streaming its output into ``log``.

    Raises `BuildFailed` naming the installer's most telling error line. The
    installer gets a session of its own: its whole process group (build
    backends included) is killed when the build ends any other way, and
    ``log.on_process(pgid)`` lets the builder record it for a later clean-up
    should this process itself be killed.
    """
    shown = redact(" ".join(shlex.quote(c) for c in cmd))
    logger.debug("running %s", shown)
    log.add("$ " + shown)
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
    except OSError as exc:
        raise BuildFailed(redact(f"{what}: cannot run {cmd[0]}: {exc}")) from None
    assert proc.stdout is not None
    try:
        if log.on_process is not None:
            log.on_process(proc.pid)
        for raw in proc.stdout:
            log.add(raw.rstrip("\n"))
        if hasattr(os, "waitid"):  # ended but not reaped: its group id cannot be reused yet
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    finally:
        kill_group(proc.pid)  # what it started must not outlive it (a no-op when all ended)
        code = proc.wait()
        proc.stdout.close()
    if code != 0:
        raise BuildFailed(f"{what} failed: {error_line(list(log.lines))}", list(log.lines))


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group ``pgid`` (gone already: nothing to do)."""
    if not hasattr(os, "killpg"):
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError as exc:  # a reused group id of another user: not ours
        logger.debug("not killing process group %s: %s", pgid, exc)


def error_line(lines: Sequence[str]) -> str:
    """The line of an installer's output that says what went wrong.

    uv: ``cause: Because foo was not found ...`` (or its ``error:`` line);
    pip: the last ``ERROR:`` line ("No matching distribution found for foo").
    """
    cleaned = [line.strip().lstrip("×╰─▶ ").strip() for line in lines if line.strip()]
    for prefix in ("cause:", "because"):
        for line in cleaned:
            if line.lower().startswith(prefix):
                return line.split(":", 1)[1].strip() if prefix == "cause:" else line
    for line in reversed(cleaned):
        if line.startswith("ERROR:") and "No matching distribution" in line:
            return line[len("ERROR:"):].strip()
    for line in reversed(cleaned):
        if line.startswith(("ERROR:", "error:")):
            return line.split(":", 1)[1].strip()
    return cleaned[-1] if cleaned else "the installer printed nothing"
