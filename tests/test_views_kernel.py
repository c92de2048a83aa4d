"""The map view in a real ipykernel, driven over the Jupyter protocol as a frontend would.

- The cancel button works *while the cell runs*: the frontend's click is a
  comm message that a busy kernel would normally handle only after the cell.
- The kernel interrupt (Ctrl-C, the stop button) cancels the same way and
  the kernel stays usable.
- A 10,000-task map adds a bounded amount to the saved notebook.
"""
from __future__ import annotations

import os
import queue
import re
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

SETUP = """\
%load_ext fc_magic
%config FCMagic.view = 'widget'
%config FCMagic.progress_after = 0.0
%config FCMagic.workers = 2
import time
def slow(x):
    time.sleep(0.25)
    return x
"""


def child_env(tmp: Path) -> dict:
    """The environment for a kernel this test process starts.

    Lithops exports its session id and executor count (``__LITHOPS_*``) so a
    spawned process "joins the session": a kernel started after this process
    ran maps would number its executors like ours, and with a shared TMPDIR
    the two would read each other's job data. The kernel gets its own.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("__LITHOPS_")}
    env["TMPDIR"] = str(tmp)
    return env


class Frontend:
    """Just enough of a Jupyter frontend: execute cells, read iopub, send comm messages."""

    def __init__(self, tmp: Path):
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=child_env(tmp))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.iopub: list[dict] = []

    def execute(self, code: str) -> str:
        return self.kc.execute(code)

    def reply(self, msg_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain(0)
            try:
                msg = self.kc.get_shell_msg(timeout=0.2)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                self.drain(0)
                return msg
        raise AssertionError(f"no reply to {msg_id} in {timeout} s")

    def drain(self, timeout: float) -> None:
        while True:
            try:
                self.iopub.append(self.kc.get_iopub_msg(timeout=timeout))
            except queue.Empty:
                return

    def wait_iopub(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for msg in self.iopub[seen:]:
                if predicate(msg):
                    return msg
            seen = len(self.iopub)
            self.drain(0.1)
        raise AssertionError("expected iopub message did not come")

    def value(self, expression: str):
        msg_id = self.kc.execute("", user_expressions={"v": expression})
        reply = self.reply(msg_id)
        data = reply["content"]["user_expressions"]["v"]
        assert data["status"] == "ok", data
        return data["data"]["text/plain"]

    def click(self, comm_id: str) -> None:
        msg = self.kc.session.msg("comm_msg", {
            "comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}})
        self.kc.shell_channel.send(msg)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _opened(msg, model: str, **state) -> bool:
    if msg["msg_type"] != "comm_open":
        return False
    s = msg["content"]["data"].get("state", {})
    return s.get("_model_name") == model and all(s.get(k) == v for k, v in state.items())


def _bar(msg) -> dict[str, str] | None:
    """What a redraw of the live row's stacked bar says (its data-* attributes), else None."""
    if msg["msg_type"] != "comm_msg":
        return None
    value = msg["content"]["data"].get("state", {}).get("value")
    if not isinstance(value, str) or "fc-magic-bar" not in value:
        return None
    return dict(re.findall(r"data-(\w+)='([^']*)'", value))


def _progress(msg, at_least: int) -> bool:
    bar = _bar(msg)
    return bar is not None and int(bar["done"]) + int(bar["failed"]) >= at_least


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    fe = Frontend(tmp_path_factory.mktemp("kernel_tmp"))
    reply = fe.reply(fe.execute(SETUP))
    assert reply["content"]["status"] == "ok", reply["content"]
    yield fe
    fe.close()


def test_cancel_button_is_seen_while_the_cell_runs(frontend):
    msg_id = frontend.execute("r = %fc_map slow range(400)")  # ~50 s if nobody cancels

    def this_map(m) -> bool:  # the kernel is shared: earlier maps opened Cancel buttons too
        return m["parent_header"].get("msg_id") == msg_id

    button = frontend.wait_iopub(
        lambda m: this_map(m) and _opened(m, "ButtonModel", description="Cancel"))
    frontend.wait_iopub(lambda m: this_map(m) and _progress(m, 4))
    frontend.click(button["content"]["comm_id"])
    reply = frontend.reply(msg_id, timeout=40)
    assert reply["content"]["status"] == "ok"
    assert frontend.value("r.cancelled") == "True"
    done = int(frontend.value("len(r.results)"))
    assert 4 <= done < 200 and frontend.value("len(r.values)") == "400"
    assert frontend.value("r.failures[-1].exc_type") == "'Cancelled'"
    # The bar ended orange (cancelled), and stayed.
    bars = [_bar(m) for m in frontend.iopub if this_map(m) and _bar(m)]
    assert bars[-1]["status"] == "cancelled"


def test_kernel_interrupt_cancels_and_the_kernel_stays_usable(frontend):
    msg_id = frontend.execute("r2 = %fc_map slow range(400)")
    frontend.wait_iopub(lambda m: _progress(m, 4) and m["parent_header"].get("msg_id") == msg_id)
    frontend.km.interrupt_kernel()
    reply = frontend.reply(msg_id, timeout=40)
    content = reply["content"]
    assert content["status"] == "ok", (content.get("ename"), content.get("evalue"),
                                       "".join(content.get("traceback", []))[-3000:])
    assert frontend.value("r2.cancelled") == "True"
    assert int(frontend.value("len(r2.results)")) < 400
    again = frontend.reply(frontend.execute("r3 = %fc_map slow range(3) --quiet"))
    assert again["content"]["status"] == "ok"  # the kernel still runs maps
    assert frontend.value("r3.values") == "[0, 1, 2]"


SIZE_CELL = """\
from fc_magic.views import MapDisplay
from fc_magic.progress import MapSnapshot, SUCCESS
from fc_magic.results import MapResult, TaskFailure, TaskStats
n = {n}
clock = [0.0]
d = MapDisplay("widget", progress_after=0.0, clock=lambda: clock[0])
for i in range(n):
    clock[0] = i * 20.0 / n     # a 20-second map, one snapshot per task
    d.on_snapshot(MapSnapshot(total=n, done=i, running=4, elapsed_s=clock[0], label="score"))
d.on_snapshot(MapSnapshot(total=n, done=n - n // 10, failed=n // 10, elapsed_s=20.0, status="error"))
values = [TaskFailure(i, repr(i), "ValueError", "bad", "Traceback ...\\nValueError: bad")
          if i % 10 == 0 else i * 2 for i in range(n)]
d.show_result(MapResult(values=values, inputs=list(range(n)),
              stats=[TaskStats(i, 0.5 + i / n, 100 + i / n) for i in range(n)],
              memory_mb=1024, function="score"), on_retry=lambda: None)
"""


def _saved_size(tmp_path: Path, n: int) -> tuple[int, int]:
    from fc_magic.notebooks import execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SIZE_CELL.format(n=n))])
    src, out = tmp_path / f"size{n}.ipynb", tmp_path / f"size{n}.out.ipynb"
    nbformat.write(nb, src)
    execute(src, out, timeout=120)
    saved = nbformat.read(out, as_version=4)
    outputs = saved.cells[0].outputs
    print(f"saved notebook of a {n}-task map: {out.stat().st_size:,} bytes")
    return out.stat().st_size, len(outputs)


def test_a_10000_task_map_adds_a_bounded_amount_to_the_saved_notebook(tmp_path):
    small, small_outputs = _saved_size(tmp_path, 10)
    big, big_outputs = _saved_size(tmp_path, 10_000)
    # The live row's display, replaced in place by the receipt; then the live controls.
    assert big_outputs == small_outputs == 2
    # The receipt plus the controls' widget state: the same few kB, not one entry per update.
    assert big - small < 12_000, (small, big)
    assert big < 60_000


CHILD_MAP = """\
from fc_magic import engine
def negate(x):
    return -x
print(engine.run_map(negate, list(range(5)), engine.MapRequest()).values)
"""


def test_a_process_started_after_a_map_does_not_share_its_lithops_session(ip, cell):
    """Kernels and scripts started from a kernel that ran maps (as these tests start
    kernels) must not number their Lithops executors like it: with a shared TMPDIR
    the next map here would silently return the child's results."""
    import subprocess
    import sys

    cell("def plus_one(x):\n    return x + 1")
    assert ip.run_line_magic("fc_map", "plus_one range(5) --quiet").values == [1, 2, 3, 4, 5]
    child = subprocess.run([sys.executable, "-c", CHILD_MAP], capture_output=True, text=True,
                           timeout=120)  # same environment, same TMPDIR
    assert child.stdout.strip().splitlines()[-1] == "[0, -1, -2, -3, -4]", child.stderr[-2000:]
    assert ip.run_line_magic("fc_map", "plus_one range(5) --quiet").values == [1, 2, 3, 4, 5]
