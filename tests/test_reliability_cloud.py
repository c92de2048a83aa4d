"""The aliyun_fc path under faults, and the AccessKey secret under scrutiny.

One sandbox with a known fake secret: the aliyun notebook is executed
against it and every place a secret could leak is scanned (cell outputs,
the saved .ipynb, widget state, every log record of every logger, the text
of every exception, MapResult reprs, the sandbox's own log). A second
sandbox is stopped in the middle of a map: the map must end on its own with
a one-line reason naming the service, keeping the results that arrived.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic.sandbox import Sandbox

from conftest import aliyun_notebook, assert_no_secret

#: Random-looking, so that none of its 6-character pieces occurs by chance in
#: ordinary output (a run of digits or a word would, and the scan looks for pieces).
KNOWN_SECRET = "q7WvZ3kTn9XbR2mYf8LpH4sJd6GcE1aU"


class RecordEverything(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record):
        self.texts.append(self.format(record))


@pytest.fixture(scope="module")
def xdg(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("xdg"))


def _config(sandbox: Sandbox, tmp_path: Path) -> str:
    path = tmp_path / "lithops.yaml"
    path.write_text(sandbox.config_yaml())
    return str(path)


def _aliyun(fc, config_file: str, xdg: str):
    fc.backend = "aliyun_fc"
    fc.config_file = config_file
    fc.cache_dir = os.path.join(xdg, "fc_magic")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_secret_appears_nowhere(ip, fc, cell, tmp_path, xdg, lithops_cache, tally):
    import ipywidgets

    from fc_magic.notebooks import execute

    records = RecordEverything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    places: dict[str, str] = {}
    try:
        with Sandbox(concurrency=2, access_key_secret=KNOWN_SECRET) as sandbox:
            config_file = _config(sandbox, tmp_path)
            assert KNOWN_SECRET in Path(config_file).read_text()  # it is really configured
            _aliyun(fc, config_file, xdg)
            fc.view = "widget"
            with capture_output() as shown:
                cell("%%fc_runtime demo\nhumanize\n")
                cell("def add_seven(x):\n    return x + 7\ndef inverse(x):\n    return 1 / x")
                ok = cell("%fc_map add_seven range(6)")
                bad = cell("%fc_map inverse range(-2, 3)")
                cell("%config FCMagic")
                cell("%fc_runtime")
                cell("%fc_memory")
            places["cell outputs"] = shown.stdout + shown.stderr + json.dumps(
                [o.data for o in shown.outputs], default=str)
            places["MapResult reprs"] = (repr(ok) + ok._repr_html_() + repr(bad)
                                         + bad._repr_html_() + repr(bad.failures))
            places["remote tracebacks"] = "".join(f.traceback for f in bad.failures)
            places["widget state"] = json.dumps(ipywidgets.Widget.get_manager_state(),
                                                default=str)
            assert ok.values == [x + 7 for x in range(6)] and len(bad.failures) == 1

            # A refused key: the exception text itself.
            wrong = tmp_path / "wrong.yaml"
            wrong.write_text(Path(config_file).read_text().replace(KNOWN_SECRET,
                                                                   KNOWN_SECRET[::-1]))
            fc.config_file = str(wrong)
            with pytest.raises(UsageError) as refused:
                cell("%fc_map add_seven range(2)")
            places["exception text"] = str(refused.value) + repr(refused.value)
            fc.config_file = config_file

            # The notebook, executed in a kernel, and its saved copy.
            out = tmp_path / "aliyun_fc.executed.ipynb"
            home = tmp_path / "home"
            home.mkdir()
            execute(aliyun_notebook(sandbox, config_file, tmp_path), out, timeout=300,
                    env={"LITHOPS_CONFIG_FILE": config_file, "XDG_CACHE_HOME": xdg,
                         "HOME": str(home)})
            places["saved notebook"] = out.read_text()
            sandbox_log = os.path.join(sandbox.work_dir)
            places["sandbox files"] = "".join(
                p.read_text(errors="replace") for p in Path(sandbox_log).rglob("*.log"))
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
    places["log records"] = "\n".join(records.texts)
    assert records.texts, "nothing was logged: the scan would prove nothing"
    wrong_secret = KNOWN_SECRET[::-1]
    for where, text in places.items():
        assert_no_secret(text, KNOWN_SECRET, wrong_secret, where=where, tally=tally)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sandbox_stopped_mid_map_ends_with_a_clear_reason(ip, fc, cell, tmp_path, xdg,
                                                          lithops_cache, tally):
    sandbox = Sandbox(concurrency=2).start()
    try:
        _aliyun(fc, _config(sandbox, tmp_path), xdg)
        with capture_output():
            cell("%%fc_runtime demo\nhumanize\n")
        cell("import time\ndef slow(x):\n    time.sleep(1)\n    return x")
        tally.faults_injected += 1
        threading.Timer(6.0, sandbox.stop).start()
        # --timeout 300: waiting out the tasks' timeout would take over 6 minutes.
        with capture_output():
            result = cell("%fc_map slow range(30) --timeout 300 --quiet")
    finally:
        sandbox.stop()
    lost = [f for f in result.failures if f.exc_type == "ServiceUnavailable"]
    assert lost, result.failures
    assert lost[0].message.startswith("the storage service stopped answering")
    assert "\n" not in lost[0].message
    assert len(result) == 30
    assert all(v == i for i, v in enumerate(result.values) if not hasattr(v, "exc_type"))
