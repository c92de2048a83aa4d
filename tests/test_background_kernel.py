"""Background maps in a real kernel, run cell by cell through nbclient as a notebook is.

- 200 slow tasks in the background while three other cells (one of them a
  foreground map) run and finish first; `%fc_wait` then gives the complete
  result, and the saved widget state of the map's own row reaches done.
- `r.cancel()` from a later cell stops a background map and keeps what arrived.
- Shutting the kernel down with a background map running leaves no process
  of the map and no job data behind.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from tests.test_views_kernel import child_env

pytestmark = pytest.mark.slow

SETUP = """\
%load_ext fc_magic
%config FCMagic.view = 'widget'
%config FCMagic.workers = 2
import json, os, time
def slow(x):
    time.sleep(0.1)
    return x * 3
def double(x):
    return 2 * x
"""


class Kernel:
    """A notebook whose cells are added and executed one at a time, like a user does."""

    def __init__(self, tmp: Path):
        import nbclient

        self.nb = nbformat.v4.new_notebook()
        self.client = nbclient.NotebookClient(self.nb, timeout=300, kernel_name="python3",
                                              store_widget_state=True)
        self.env = child_env(tmp)

    def run(self, source: str):
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return cell

    def json(self, source: str):
        """Run a cell that prints one JSON line; its value."""
        cell = self.run(source)
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        return json.loads(text.strip().splitlines()[-1])


def _live(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_other_cells_run_while_a_background_map_fills_in(tmp_path):
    k = Kernel(tmp_path)
    with k.client.setup_kernel(env=k.env):
        k.run(SETUP)
        k.run("r = %fc_map slow range(200) --background")
        # The cell returned while the map runs: 200 x 0.1 s on two workers is >= 10 s,
        # and each of these cells sees it unfinished.
        others = [
            k.json("print(json.dumps([sum(range(10**6)), r.done()]))"),
            k.json("q = %fc_map double range(6) --quiet\n"
                   "print(json.dumps([q.values, r.done()]))"),
            k.json("time.sleep(0.5)\nprint(json.dumps([r.progress['total'], r.done()]))"),
        ]
        assert others == [[499999500000, False], [[0, 2, 4, 6, 8, 10], False], [200, False]]
        k.run("%fc_wait r")
        assert k.json("print(json.dumps([r.done(), r.ok, r.values == [3 * x for x in "
                      "range(200)], r.progress['done']]))") == [True, True, True, 200]

        k.run("c = %fc_map slow range(400) -b --quiet")
        cancelled = k.json("while c.progress['done'] < 2: time.sleep(0.05)\n"
                           "c.cancel()\n"
                           "print(json.dumps([c.done(), c.cancelled, c.progress]))")
        done, was_cancelled, counts = cancelled
        assert done and was_cancelled
        assert counts["done"] >= 2 and counts["cancelled"] > 0 and counts["pending"] == 0
        k.client.set_widgets_metadata()  # what nbclient saves with an executed notebook
    # The background row, ended after its cell, became the receipt in its widget box, as
    # the saved notebook keeps it; the wait's cell shows the static receipt.
    states = k.nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    html = [s["state"].get("value", "") for s in states.values()
            if s["model_name"] == "HTMLModel"]
    receipts = [h for h in html if "fc-magic-receipt" in h and "slow: 200/200 done" in h]
    assert receipts, html
    wait = k.nb.cells[[c.source for c in k.nb.cells].index("%fc_wait r")]
    static = [o["data"]["text/html"] for o in wait.outputs if "text/html" in o.get("data", {})]
    assert any("fc-magic-receipt" in h and "200/200 done" in h for h in static), wait.outputs


def test_kernel_shutdown_with_a_background_map_leaves_no_process_or_job_data(tmp_path):
    k = Kernel(tmp_path)
    with k.client.setup_kernel(env=k.env):
        k.run(SETUP)
        k.run("s = %fc_map slow range(400) -b")
        seen = k.json(
            "import psutil\n"
            "while s.progress['done'] < 2: time.sleep(0.05)\n"
            "me = psutil.Process()\n"
            "kids = [(p.pid, p.create_time()) for p in me.children(recursive=True)]\n"
            "print(json.dumps([me.pid, me.create_time(), kids, s.done()]))")
        kernel_pid, kernel_created, children, finished = seen
        assert children and not finished  # the map's runner and workers are running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
            _live(kernel_pid, kernel_created) or any(_live(*c) for c in children)):
        time.sleep(0.2)
    assert not _live(kernel_pid, kernel_created)
    assert [pid for pid, created in children if _live(pid, created)] == []
    jobs = [p for p in tmp_path.glob("lithops-*/**/lithops.jobs/**/*") if p.is_file()]
    assert jobs == [], jobs[:5]
    assert os.listdir(tmp_path)  # the kernel did write there: the check above saw its folder
