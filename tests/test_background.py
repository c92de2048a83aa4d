"""Background maps (`%fc_map ... --background`, `%fc_wait`) in a real InteractiveShell.

The kernel-level behaviour (other cells run meanwhile, shutdown) is in
test_background_kernel.py; here: the MapResult's life, cancel, interrupts, errors.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic import background
from fc_magic.results import PENDING, MapResult, TaskFailure


@pytest.fixture
def slow(cell):
    cell("import time\ndef slow(x):\n    time.sleep(0.1)\n    return x * 2")


def test_background_map_returns_at_once_and_fills_in(ip, cell):
    # A background map learns of finished tasks about once a second (background.py):
    # tasks that take >= 10 s in all on two workers fill in over several rounds.
    cell("import time\ndef slow(x):\n    time.sleep(0.5)\n    return x * 2")
    started = time.monotonic()
    r = ip.run_line_magic("fc_map", "slow range(40) --background --out r")
    assert time.monotonic() - started < 5  # returned before the tasks could have run
    assert isinstance(r, MapResult) and ip.user_ns["r"] is r
    assert not r.done() and not r.ok
    assert r.values.count(PENDING) > 0 and "running in the background" in repr(r)
    seen_partial = False
    while not r.done():
        counts = r.progress
        assert counts["total"] == 40
        if 0 < counts["done"] < 40 and 0 < len(r.results) < 40:
            seen_partial = True
        time.sleep(0.05)
    assert seen_partial  # values arrived while others were still running
    assert r.wait(0) and r.ok and r.values == [x * 2 for x in range(40)]
    assert r.progress == {"total": 40, "done": 40, "failed": 0, "cancelled": 0,
                          "running": 0, "pending": 0}
    assert background.running() == []


def test_fc_wait_blocks_until_done_and_prints_one_final_line(ip, cell, slow):
    r1 = ip.run_line_magic("fc_map", "slow range(12) -b --out a")
    r2 = ip.run_line_magic("fc_map", "slow range(6) -b --out b")
    with capture_output() as captured:
        waited = ip.run_line_magic("fc_wait", "a b")
    assert waited == [r1, r2] and r1.done() and r2.done() and r1.ok and r2.ok
    finals = [line for line in captured.stdout.splitlines() if "[ok]" in line]
    assert len(finals) == 2 and "12/12 done" in finals[0] and "6/6 done" in finals[1]


def test_cancel_stops_the_map_and_keeps_what_arrived(ip, cell, slow):
    r = ip.run_line_magic("fc_map", "slow range(300) -b -q")
    while r.progress["done"] < 2:
        time.sleep(0.05)
    r.cancel()
    assert r.done() and r.cancelled and not r.ok
    counts = r.progress
    assert counts["done"] >= 2 and counts["cancelled"] > 0 and counts["pending"] == 0
    assert counts["done"] + counts["cancelled"] == 300
    assert PENDING not in r.values
    assert all(v == i * 2 for i, v in enumerate(r.values) if not isinstance(v, TaskFailure))


def test_an_interrupt_stops_the_wait_not_the_map(ip, cell, slow):
    r = ip.run_line_magic("fc_map", "slow range(30) -b -q")
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        r.wait()
    assert not r.done()
    assert r.wait(120) and r.ok and r.values == [x * 2 for x in range(30)]


def test_fc_wait_mistakes_are_one_line_usage_errors(ip, cell):
    cell("x = 3")
    for line, expected in (("x", "'x' is not a MapResult"),
                           ("nothing_here", "'nothing_here' is not a MapResult"),
                           ("1a", "not a valid Python name")):
        with pytest.raises(UsageError) as info:
            ip.run_line_magic("fc_wait", line)
        assert str(info.value).startswith("%fc_wait: ") and expected in str(info.value)
        assert "\n" not in str(info.value)


def test_fc_wait_timeout_leaves_the_map_running(ip, cell, slow):
    r = ip.run_line_magic("fc_map", "slow range(60) -b -q --out r")
    with pytest.raises(UsageError, match="not finished after 0.3 s"):
        ip.run_line_magic("fc_wait", "r --timeout 0.3")
    assert not r.done()
    r.cancel()


def test_unloading_the_extension_cancels_running_maps(ip, cell, slow):
    r = ip.run_line_magic("fc_map", "slow range(300) -b -q")
    ip.run_line_magic("unload_ext", "fc_magic")
    assert r.done() and r.cancelled and background.running() == []


def test_two_maps_started_together_in_threads_both_complete(ip, cell, fc):
    """Maps set up at the same moment in one process (background + foreground, or two
    background maps) each get a working localhost runner (lithops_fixes table)."""
    from fc_magic.backends.job import LithopsJob
    from fc_magic.engine import MapRequest

    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def set_up() -> None:
        barrier.wait()
        try:
            with LithopsJob(MapRequest(backend="localhost", workers=1)):
                pass
        except Exception as exc:  # collected: the assertion names what went wrong
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=set_up) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    # And through the magics: two background maps and a foreground one at once.
    cell("def triple(x):\n    return 3 * x")
    cell("a = %fc_map triple range(30) -b --quiet\nb = %fc_map triple range(20) -b --quiet")
    q = ip.run_line_magic("fc_map", "triple range(5) --quiet")
    a, b = ip.user_ns["a"], ip.user_ns["b"]
    assert a.wait(60) and b.wait(60)
    assert q.values == [0, 3, 6, 9, 12]
    assert a.values == [3 * x for x in range(30)] and b.values == [3 * x for x in range(20)]
