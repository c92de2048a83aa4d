"""%fc_map against plain Lithops on the same 200 tiny tasks, in one run.

Both sides use the same localhost (v1) configuration and build a fresh
FunctionExecutor per map; rounds alternate so machine noise hits both.
Prints the median time of each and, last, the ratio fc_magic / Lithops
(goal <= 1.05).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TMPDIR", tempfile.mkdtemp(prefix="fc_magic_bench_"))
tempfile.tempdir = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import emit  # noqa: E402

TASKS, ROUNDS = 200, 5


def tiny(x):
    return x + 7


def plain_lithops() -> float:
    import lithops

    config = {"lithops": {"backend": "localhost", "storage": "localhost"},
              "localhost": {"runtime": sys.executable, "version": 1}}
    start = time.perf_counter()
    executor = lithops.FunctionExecutor(config=config, log_level=None)
    values = executor.get_result(executor.map(tiny, range(TASKS)), show_progressbar=False)
    elapsed = time.perf_counter() - start
    assert values == [x + 7 for x in range(TASKS)]
    return elapsed


def through_magic(ip) -> float:
    start = time.perf_counter()
    result = ip.run_line_magic("fc_map", f"tiny range({TASKS})")
    elapsed = time.perf_counter() - start
    assert result.values == [x + 7 for x in range(TASKS)]
    return elapsed


def main() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fc_magic")
    ip.run_line_magic("config", "FCMagic.view = 'text'")
    ip.user_ns["tiny"] = tiny
    magic, plain = [], []
    with capture_output():
        plain_lithops(), through_magic(ip)  # warm both: runner copy, imports
        for _ in range(ROUNDS):
            plain.append(plain_lithops())
            magic.append(through_magic(ip))
    m, p = statistics.median(magic), statistics.median(plain)
    print(f"tasks: {TASKS}, rounds: {ROUNDS}")
    print(f"fc_magic %fc_map: {m:.3f} s (median)")
    print(f"plain Lithops map + get_result: {p:.3f} s (median)")
    emit("map overhead, 200 tiny tasks (fc_magic / Lithops)", m, p, "<= 1.05")


if __name__ == "__main__":
    main()
