"""Run the package installer (uv when present, pip otherwise) and report its output.

uv installs for another Python and platform about ten times faster than pip
(``--target --python-version --python-platform --only-binary :all:``), but it
ignores pip's configuration: on a machine whose pip is pointed at extra
indexes, find-links folders, constraints or a CA bundle, uv would resolve
against plain PyPI and fail or pick other files. So the sources pip is
configured with are read once (``pip config list``, which includes ``PIP_*``
environment variables) and handed to uv explicitly, and a CA bundle pip knows
about becomes uv's ``SSL_CERT_FILE``.

Everything here runs in a subprocess with ``cwd`` set explicitly: the
kernel's working directory is never touched.
"""
from __future__ import annotations

import functools
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..inputs import InputProblem

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
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        for path in self.constraints:
            if os.path.exists(path):
                args += ["--constraint", path]
        if self.extra_index_urls or self.find_links:
            # pip takes the best version across every source; uv by default
            # stops at the first index that knows the name. Same result as pip:
            args += ["--index-strategy", "unsafe-best-match"]
        return args


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
                             capture_output=True, text=True, timeout=60, cwd=os.sep)
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


def installer_env(installer: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the kernel's path must not leak into a build
    if installer == "uv":
        cert = pip_sources().cert
        if "SSL_CERT_FILE" not in env and cert and os.path.exists(cert):
            env["SSL_CERT_FILE"] = cert
        env.setdefault("UV_NO_PROGRESS", "1")
    else:
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


@dataclass
class CommandLog:
    """Lines an installer printed, with a callback per line for live views."""

    on_line: Callable[[str], None] | None = None
    lines: deque = field(default_factory=lambda: deque(maxlen=LOG_KEEP))

    def add(self, line: str) -> None:
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)


def run(cmd: list[str], *, cwd: str, env: dict, log: CommandLog, what: str) -> None:
    """Run one installer command, streaming its output into ``log``.

    Raises `BuildFailed` naming the installer's most telling error line.
    """
    logger.debug("running %s", " ".join(cmd))
    log.add("$ " + " ".join(shlex.quote(c) for c in cmd))
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as exc:
        raise BuildFailed(f"{what}: cannot run {cmd[0]}: {exc}") from None
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            log.add(raw.rstrip("\n"))
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        raise BuildFailed(f"{what} failed: {error_line(list(log.lines))}", list(log.lines))


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
