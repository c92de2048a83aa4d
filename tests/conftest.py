"""Shared fixtures: a real InteractiveShell with fc_magic loaded, isolated temp dirs."""
from __future__ import annotations

import os
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
    before = set(_shell.user_ns)
    yield _shell
    for name in set(_shell.user_ns) - before:
        del _shell.user_ns[name]
    # Cells a test stored in the history must not leak into the next test:
    # the display hook re-reads the last stored cell, and capture reads them all.
    history = _shell.history_manager
    history.input_hist_parsed[:] = [""]
    history.input_hist_raw[:] = [""]
    # As in a fresh kernel, In[n] is the n-th cell: capture's warnings name cells so.
    _shell.execution_count = 1


@pytest.fixture
def fc(ip):
    """The loaded FCMagic instance (its traits are the settings)."""
    return ip.magics_manager.registry["FCMagic"]


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
    import glob
    import shutil
    import subprocess

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
