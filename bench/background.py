"""Background maps in a real kernel: how responsive the kernel stays, and what it costs the map.

Driven over the Jupyter protocol as a frontend would (jupyter_client):
1. the round-trip time of a trivial cell, median of many, with no map running
   and while a 5,000-task `%fc_map ... --background` runs (goal <= 1.2);
2. the same 5,000-task map in the foreground against in the background, waited
   for with `r.wait()` (goal <= 1.05).
Prints both ratios; the last line is the responsiveness figure.
"""
from __future__ import annotations

import os
import queue
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import emit  # noqa: E402

#: One foreground/background pair: a 5,000-task map takes minutes on a loaded 2-core machine.
TASKS, SAMPLES = 5000, 60
#: BENCH_ROUNDS=0 measures only the responsiveness (the map-time pairs take minutes).
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))

SETUP = """\
%load_ext fc_magic
%config FCMagic.workers = 2
def tiny(x):
    return x + 7
"""


class Kernel:
    def __init__(self):
        from jupyter_client import KernelManager

        env = {k: v for k, v in os.environ.items() if not k.startswith("__LITHOPS_")}
        env["TMPDIR"] = tempfile.mkdtemp(prefix="fc_magic_bench_bg_")
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 600) -> float:
        """Execute a cell; seconds from request to its reply."""
        start = time.perf_counter()
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.kc.get_shell_msg(timeout=0.05)
            except queue.Empty:
                reply = None
            self._drain()
            if reply is not None and reply["parent_header"].get("msg_id") == msg_id:
                elapsed = time.perf_counter() - start
                content = reply["content"]
                if content["status"] != "ok":
                    raise RuntimeError(f"{code!r}: {content.get('ename')}: {content.get('evalue')}")
                return elapsed
            if time.monotonic() > deadline:
                raise RuntimeError(f"no reply to {code!r}")

    def value(self, expression: str) -> str:
        msg_id = self.kc.execute("", user_expressions={"v": expression})
        while True:
            reply = self.kc.get_shell_msg(timeout=60)
            self._drain()
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["user_expressions"]["v"]["data"]["text/plain"]

    def _drain(self) -> None:
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0)
            except queue.Empty:
                return

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def trivial_cells(k: Kernel, until_done: str | None = None) -> list[float]:
    times = []
    for _ in range(SAMPLES):
        times.append(k.run("x = 1 + 1"))
        if until_done is not None and k.value(f"{until_done}.done()") == "True":
            break
        time.sleep(0.05)  # a user types between cells
    return times


def main() -> None:
    k = Kernel()
    try:
        k.run(SETUP)
        k.run("%fc_map tiny range(200) --quiet")  # warm: runner copy, imports
        idle = trivial_cells(k)
        k.run(f"r = %fc_map tiny range({TASKS}) --background")
        busy = trivial_cells(k, until_done="r")
        assert len(busy) >= 5, f"the map ended after {len(busy)} cells: too quick to measure"
        k.run("r.wait()")
        assert k.value("r.ok and r.values == [x + 7 for x in range(%d)]" % TASKS) == "True"
        fore, back = [], []
        for _ in range(ROUNDS):
            fore.append(k.run(f"f = %fc_map tiny range({TASKS}) --quiet"))
            back.append(k.run(f"b = %fc_map tiny range({TASKS}) --background --quiet\n"
                              "b.wait()"))
    finally:
        k.close()
    i, b = statistics.median(idle), statistics.median(busy)
    print(f"trivial cell: {i * 1000:.1f} ms idle ({len(idle)} cells), {b * 1000:.1f} ms during "
          f"a {TASKS}-task background map ({len(busy)} cells) (medians)")
    if ROUNDS:
        fg, bg = statistics.median(fore), statistics.median(back)
        print(f"{TASKS}-task map: {fg:.2f} s foreground, {bg:.2f} s background "
              f"(medians of {ROUNDS})")
        emit(f"map time, {TASKS} tasks (background / foreground)", bg, fg, "<= 1.05")
    emit(f"kernel cell time during a {TASKS}-task background map (busy / idle)", b, i, "<= 1.2")


if __name__ == "__main__":
    main()
