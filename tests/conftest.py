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
            f"injected, {t.secret_scans} places scanned, secrets found = {t.secrets_found}, "
            f"{t.attacks_tried} attacks tried")


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
