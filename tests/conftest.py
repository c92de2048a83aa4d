"""Shared fixtures: a real InteractiveShell with fc_magic loaded, isolated temp dirs."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

# Lithops derives its temp folders from the temp dir at import time; a test
# session gets its own so that runs never share runner files or job data.
_SESSION_TMP = tempfile.mkdtemp(prefix="fc_magic_tests_")
os.environ["TMPDIR"] = _SESSION_TMP
tempfile.tempdir = None

import pytest  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402


class Tally:
    """Counts the reliability suite reports at the end of the run."""

    def __init__(self):
        self.inputs_tried = 0
        self.faults_injected = 0
        self.secrets_found = 0
        self.secret_scans = 0
        self.attacks_tried = 0


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter):
    t = _TALLY
    if t.inputs_tried or t.faults_injected or t.secret_scans or t.attacks_tried:
        terminalreporter.write_line(
            f"reliability: {t.inputs_tried} bad inputs tried, {t.faults_injected} faults "
            f"injected, {t.attacks_tried} attacks tried, {t.secret_scans} places scanned, "
            f"secrets found = {t.secrets_found}")


class FakeClock:
    """A clock tests move by hand (``clock.now += 0.5``): views and loops take ``clock=``."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def lithops_cache(tmp_path_factory):
    """Lithops' ~/.lithops/cache for runtime metadata, private to one test module.

    Lithops keeps "this runtime is deployed" there by runtime name; modules that
    deploy must not see each other's (or the user's) deployments.
    """
    from lithops.storage import storage

    saved = storage.CACHE_DIR
    storage.CACHE_DIR = str(tmp_path_factory.mktemp("lithops-cache"))
    yield storage.CACHE_DIR
    storage.CACHE_DIR = saved


#: A secret leaks if any run of this many of its characters shows (a message that
#: shows "the last 8 characters" of a key leaks it as surely as the whole key).
SECRET_PART = 6


def secret_parts_in(text: str, secret: str, part: int = SECRET_PART) -> list[tuple[int, int]]:
    """Where pieces of ``secret`` of ``part``+ characters appear in ``text``.

    Every such piece contains a window of exactly ``part`` characters, so the
    windows are what is searched. The answer names the leaked stretches of the
    secret as (start, end) offsets, merged, never the characters themselves
    (so a failing test does not print the secret either).
    """
    if len(secret) < part:
        raise ValueError(f"a secret shorter than {part} characters cannot be scanned for parts")
    hits = [i for i in range(len(secret) - part + 1) if secret[i:i + part] in text]
    spans: list[tuple[int, int]] = []
    for i in hits:
        if spans and i <= spans[-1][1]:
            spans[-1] = (spans[-1][0], i + part)
        else:
            spans.append((i, i + part))
    return spans


def assert_no_secret(text: str, *secrets: str, where: str, tally: Tally | None = None) -> None:
    """Fail if ``text`` holds any piece (SECRET_PART+ characters) of any of ``secrets``.

    The one scan every secret test uses; each call counts as one place scanned.
    """
    found = {n: spans for n, s in enumerate(secrets) if (spans := secret_parts_in(text, s))}
    if tally is not None:
        tally.secret_scans += 1
        tally.secrets_found += sum(len(spans) for spans in found.values())
    assert not found, (f"{where} shows part of a secret: "
                       + "; ".join(f"secret #{n + 1} characters {spans}"
                                   for n, spans in found.items()))


@pytest.fixture(scope="module")
def config_file(sandbox, tmp_path_factory) -> str:
    """A Lithops config file for the module's own `sandbox` fixture (keys, endpoints, bucket)."""
    path = tmp_path_factory.mktemp("lithops-config") / "config.yaml"
    path.write_text(sandbox.config_yaml())
    return str(path)


#: What `aliyun_notebook` seeds under the user's prefix: (key, lines); 60,001 lines in
#: 14 B, 1.2 MB and 2.5 MB objects, that is 1 + 2 + 3 chunks of 1 MB.
DEMO_OBJECTS = (("a.log", 1), ("b.log", 20_000), ("c.log", 40_000))


def aliyun_notebook(sandbox, config_file: str, folder) -> str:
    """notebooks/aliyun_fc.ipynb as a user runs it against ``sandbox``: their bucket named.

    Its objects-as-input cell reads text files the user put under a prefix of
    their bucket: they are seeded here (`DEMO_OBJECTS`). Returns the copy's path.
    """
    import yaml

    bucket = yaml.safe_load(open(config_file).read())["aliyun_oss"]["storage_bucket"]
    sandbox.store.handle("PUT", bucket, "", {}, {}, b"")  # the user's bucket exists
    for key, lines in DEMO_OBJECTS:
        body = "".join(f"{key} line {i} {'x' * (i % 90)}\n" for i in range(lines)).encode()
        sandbox.store.handle("PUT", bucket, f"fc-magic-demo/{key}", {}, {}, body)
    source = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "notebooks", "aliyun_fc.ipynb")
    notebook = os.path.join(str(folder), "aliyun_fc.ipynb")
    with open(source, encoding="utf-8") as f, open(notebook, "w", encoding="utf-8") as out:
        out.write(f.read().replace("YOUR-BUCKET", bucket))
    return notebook


@pytest.fixture(scope="session")
def _shell():
    return InteractiveShell.instance()


@pytest.fixture
def ip(_shell, tmp_path):
    """A shell with a fresh FCMagic (default settings) and a clean namespace."""
    if "FCMagic" in _shell.magics_manager.registry:
        _shell.run_line_magic("unload_ext", "fc_magic")
    # %config writes into the shell's config, which a new FCMagic inherits.
    _shell.config.pop("FCMagic", None)
    _shell.run_line_magic("load_ext", "fc_magic")
    magic = _shell.magics_manager.registry["FCMagic"]
    magic.cache_dir = str(tmp_path / "cache")
    magic.view = "text"
    magic.progress_after = 0.0
    _fresh_history(_shell)
    before = set(_shell.user_ns)
    yield _shell
    for name in set(_shell.user_ns) - before:
        del _shell.user_ns[name]
    _fresh_history(_shell)


def _fresh_history(shell) -> None:
    """The history of a shell that has run no cell: In[n] is again the n-th cell.

    Cells a test stored in the history must not leak into the next test (the
    display hook re-reads the last stored cell, and capture reads them all),
    and the execution count must restart with them, as in a new kernel.
    """
    history = shell.history_manager
    history.input_hist_parsed[:] = [""]
    history.input_hist_raw[:] = [""]
    # As in a fresh kernel, In[n] is the n-th cell: capture's warnings name cells so.
    shell.execution_count = 1


@pytest.fixture
def fc(ip):
    """The loaded FCMagic instance (its traits are the settings)."""
    return ip.magics_manager.registry["FCMagic"]


@pytest.fixture
def fake_build(monkeypatch):
    """ensure_runtime without a build: the kernel's own interpreter as the runtime.

    Returns the requirement sets the builder was asked for, in order.
    """
    import sys

    import fc_magic.runtime as runtime_pkg
    from fc_magic.runtime import RuntimeEntry

    asked = []

    def ensure(name, reqs, *, target, cache_dir, rebuild=False, on_snapshot=None, **kwargs):
        asked.append(reqs)
        return RuntimeEntry(name=name, key=reqs.key, target=target,
                            deploy_name=f"{name}-{reqs.key[:8]}", path=cache_dir,
                            interpreter=sys.executable, package=None,
                            requirements=tuple(reqs.lines()), python=reqs.python,
                            manifest={})
    monkeypatch.setattr(runtime_pkg, "ensure_runtime", ensure)
    return asked


@pytest.fixture
def cell(ip):
    """Run a cell and re-raise its error, as jupysql's testing shell does."""
    def run(source: str):
        result = ip.run_cell(source)
        if result.error_before_exec is not None:
            raise result.error_before_exec
        if result.error_in_exec is not None:
            raise result.error_in_exec
        return result.result
    return run


def find_python(version: str) -> tuple[str | None, str]:
    """(interpreter, how it was found) for Python `version` ("3.10"), as the Makefile looks.

    PYTHON310= (the version without its dot) first, then a `python3.10` on PATH
    that really runs, then $(pyenv root)/versions/3.10*/bin/python3.10. The
    interpreter is None when there is none; the text then says where it looked.
    """

    def runs(candidate: str) -> bool:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.returncode == 0 and out.stdout.strip() == version

    variable = "PYTHON" + version.replace(".", "")
    if os.environ.get(variable):
        found = os.environ[variable]
        return (found, f"{variable}={found}") if runs(found) else \
            (None, f"{variable}={found} is not a working Python {version}")
    on_path = shutil.which(f"python{version}")
    if on_path and runs(on_path):
        return on_path, f"python{version} on PATH"
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        root = ""
    root = root or os.path.expanduser("~/.pyenv")
    for candidate in sorted(glob.glob(os.path.join(root, "versions", f"{version}*", "bin",
                                                   f"python{version}")), reverse=True):
        if runs(candidate):
            return candidate, f"pyenv's {candidate}"
    return None, (f"no Python {version}: set {variable}=/path/to/python{version}, put a "
                  f"python{version} on PATH, or `pyenv install {version}`")


def install_distribution(site, name: str, files) -> None:
    """A real installed distribution (dist-info with METADATA and RECORD) under `site`.

    The listed files are created empty, so its modules import; importlib.metadata
    reads it like any wheel-installed distribution.
    """
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    for rel in files:
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        record.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def python_or_skip(version: str) -> str:
    """find_python(version), or skip the test saying what was looked for."""
    python, how = find_python(version)
    if python is None:
        pytest.skip(f"{how}: the package cannot be run under FC's Python {version}")
    return python


class FileAccess:
    """Records every file opened, stat'ed or listed under ``root`` while installed.

    The work a code path does on disk, counted: ``watch_files(monkeypatch, root)``
    installs it over open/os.open/os.stat/os.lstat/os.scandir/os.listdir.
    """

    def __init__(self, root: str):
        self.root = os.path.abspath(root) + os.sep
        self.opened: list[str] = []
        self.stated: list[str] = []
        self.listed: list[str] = []

    def under(self, path) -> str | None:
        if isinstance(path, int):
            return None
        try:
            # abspath, not realpath: realpath itself calls the os.lstat being watched.
            full = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        return full[len(self.root):] if (full + os.sep).startswith(self.root) else None

    def clear(self) -> None:
        self.opened.clear()
        self.stated.clear()
        self.listed.clear()

    def touched(self) -> list[str]:
        return self.opened + self.stated + self.listed


def watch_files(monkeypatch, root: str) -> FileAccess:
    import builtins
    import io

    seen = FileAccess(root)

    def wrap(original, into):
        def recorded(path=".", *args, **kwargs):
            rel = seen.under(path)
            if rel is not None:
                into.append(rel)
            return original(path, *args, **kwargs)
        return recorded

    monkeypatch.setattr(builtins, "open", wrap(builtins.open, seen.opened))
    monkeypatch.setattr(io, "open", wrap(io.open, seen.opened))
    monkeypatch.setattr(os, "open", wrap(os.open, seen.opened))
    monkeypatch.setattr(os, "stat", wrap(os.stat, seen.stated))
    monkeypatch.setattr(os, "lstat", wrap(os.lstat, seen.stated))
    monkeypatch.setattr(os, "scandir", wrap(os.scandir, seen.listed))
    monkeypatch.setattr(os, "listdir", wrap(os.listdir, seen.listed))
    return seen
