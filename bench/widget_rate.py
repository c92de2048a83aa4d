"""How chatty is the map widget? A 10,000-task map on the localhost backend.

Every widget change is one comm message from the kernel to the browser, so
the view's cost for a frontend is messages per second. The view is fed
through the real `%fc_map` in an InteractiveShell whose comms count what
they would send (the comm package's hook), with `FCMagic.view = 'widget'`
and no progress delay. Rounds alternate with `--quiet` (no view at all) to
measure what the view costs the map itself.

Prints the map-time ratio (view / --quiet) and, LAST, the live update rate in
messages per second (goal <= 10): all comm messages the view sent while the
map ran, over the map's time, the final panel (failures, preview, figures,
slider: a fixed number of widgets whatever the task count) included. The
busiest second is printed too: that is where the final panel's burst shows.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402

TASKS = 10_000
#: Two rounds, alternating which side goes first; a 10,000-task map takes
#: about a minute and a half on the 2-core machine.
ROUNDS = 2


def tiny(x):
    return x + 7


class Counter:
    """Timestamps of every comm message the widgets send."""

    def __init__(self):
        self.sent: list[tuple[float, str]] = []

    def install(self) -> None:
        import comm
        from comm.base_comm import BaseComm

        counter = self

        class CountingComm(BaseComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                counter.sent.append((time.perf_counter(), msg_type))

        comm.create_comm = CountingComm


def main() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    counter = Counter()
    counter.install()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fc_magic")
    ip.run_cell("%config FCMagic.view = 'widget'\n%config FCMagic.progress_after = 0.0")
    ip.user_ns["tiny"] = tiny
    quiet, viewed, rates, peaks, counts = [], [], [], [], []
    with capture_output():
        ip.run_line_magic("fc_map", "tiny range(200) --quiet")  # warm: imports, runner copy
        for round_ in range(ROUNDS):
            def timed_quiet():
                start = time.perf_counter()
                ip.run_line_magic("fc_map", f"tiny range({TASKS}) --quiet")
                quiet.append(time.perf_counter() - start)

            # Alternate which side goes first, so drift on a shared machine
            # does not always land on the same side.
            if round_ % 2 == 0:
                timed_quiet()
            counter.sent.clear()
            start = time.perf_counter()
            result = ip.run_line_magic("fc_map", f"tiny range({TASKS})")
            took = time.perf_counter() - start
            viewed.append(took)
            assert result.ok and len(result.values) == TASKS
            if round_ % 2 == 1:
                timed_quiet()
            stamps = [t for t, _ in counter.sent]
            counts.append(len(stamps))
            rates.append(len(stamps) / took)
            # The busiest second: the live redraws plus, at the end, the final
            # panel (a fixed set of widgets whatever the task count).
            peaks.append(max(sum(1 for u in stamps if t <= u < t + 1.0) for t in stamps))
    q, v = statistics.median(quiet), statistics.median(viewed)
    print(f"tasks: {TASKS}, rounds: {ROUNDS}")
    print(f"map with --quiet: {q:.2f} s; with the widget view: {v:.2f} s (medians)")
    print(f"comm messages per map: {counts}; busiest second: {peaks} messages")
    emit("widget view map time (view / --quiet), 10,000 tasks", v, q, "<= 1.05")
    rate = max(rates)
    emit("widget comm messages per second over a 10,000-task map", rate, 10.0, "<= 10",
         unit="msg/s", ratio=rate)


if __name__ == "__main__":
    main()
