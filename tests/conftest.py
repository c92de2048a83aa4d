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
