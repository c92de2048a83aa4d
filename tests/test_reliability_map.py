"""Faults during a map on the embedded backend: failures, killed workers,
interrupts, and what a map leaves behind."""
from __future__ import annotations

import _thread
import os
import threading
import time

import psutil
import pytest
from IPython.utils.capture import capture_output

from fc_magic.results import TaskFailure


def test_three_failures_of_a_hundred_keep_the_other_97(ip, cell, tally):
    cell("def flaky(x):\n    if x in (7, 42, 99):\n        raise RuntimeError(f'bad input {x}')\n"
         "    return x * 2")
    tally.faults_injected += 3
    with capture_output() as captured:
        result = ip.run_line_magic("fc_map", "flaky range(100) --out r")
    assert len(result) == 100
    assert [f.index for f in result.failures] == [7, 42, 99]
    assert result.results == [x * 2 for x in range(100) if x not in (7, 42, 99)]
    for failure in result.failures:
        assert failure.exc_type == "RuntimeError"
        assert f"bad input {failure.index}" in failure.traceback
        assert "in flaky" in failure.traceback
    assert "3 of 100 tasks failed" in captured.stdout


@pytest.mark.timeout(180)
def test_worker_killed_mid_task_is_a_failure_not_a_hang(ip, cell, tally):
    cell("import os, signal\n"
         "def dies_on_3(x):\n    if x == 3:\n        os.kill(os.getpid(), signal.SIGKILL)\n"
         "    return x")
    tally.faults_injected += 1
    result = ip.run_line_magic("fc_map", "dies_on_3 range(8) --quiet --timeout 30")
    assert isinstance(result.values[3], TaskFailure)
    assert [v for i, v in enumerate(result.values) if i != 3] == [0, 1, 2, 4, 5, 6, 7]


@pytest.mark.timeout(180)
def test_interrupt_mid_map_keeps_results_and_the_kernel_usable(ip, cell, fc, tally):
    fc.workers = 2
    cell("import time\ndef slow(x):\n    time.sleep(0.4)\n    return x")
    tally.faults_injected += 1
    timer = threading.Timer(2.5, _thread.interrupt_main)
    timer.start()
    try:
        with capture_output() as captured:
            result = ip.run_line_magic("fc_map", "slow range(40) --out partial")
    finally:
        timer.cancel()
    assert result is ip.user_ns["partial"]
    assert result.cancelled and not result.ok
    assert len(result) == 40
    done = [v for v in result.values if not isinstance(v, TaskFailure)]
    cancelled = [v for v in result.values if isinstance(v, TaskFailure)]
    assert done and cancelled
    assert all(result.values[v] == v for v in done)
    assert {f.exc_type for f in cancelled} == {"Cancelled"}
    assert "CANCELLED" in captured.stdout
    # the kernel is usable: the next map runs normally
    cell("def inc(x):\n    return x + 1")
    assert ip.run_line_magic("fc_map", "inc range(5) --quiet").values == [1, 2, 3, 4, 5]


@pytest.mark.timeout(180)
def test_a_map_leaves_no_processes_threads_handles_or_job_data(ip, cell):
    me = psutil.Process()
    cell("def ident(x):\n    return x")
    ip.run_line_magic("fc_map", "ident range(10) --quiet")  # warm: runner copy, imports
    storage = os.path.join(os.environ["TMPDIR"], "lithops-root", "storage", "lithops.jobs")

    def job_data():
        return set(os.listdir(storage)) if os.path.isdir(storage) else set()

    before = job_data()
    fds, threads = me.num_fds(), threading.active_count()
    for _ in range(3):
        ip.run_line_magic("fc_map", "ident range(30) --quiet")
    # Lithops' data cleaner is a short-lived child; wait (bounded) for it to go.
    deadline = time.monotonic() + 60
    while (me.children(recursive=True) or threading.active_count() > threads) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert me.children(recursive=True) == []
    assert threading.active_count() <= threads
    assert me.num_fds() <= fds
    assert job_data() - before == set()


class _FakeExecutor:
    """Stands in for a Lithops FunctionExecutor whose wait() raises ``error``."""

    def __init__(self, error):
        self.error = error
        self.stopped = False
        self.job_monitor = self

    def _clean_at_exit(self):
        pass

    def stop(self):
        self.stopped = True

    def wait(self, *args, **kwargs):
        raise self.error


class _FakeBackend:
    name, target = "fake", "local"

    def __init__(self, executor):
        self._executor = executor

    def executor(self, request):
        return self._executor


def _poll_error(error):
    """What LithopsJob.poll raises when Lithops' wait() raised ``error``."""
    from fc_magic.backends.job import LithopsJob
    from fc_magic.engine import MapRequest

    executor = _FakeExecutor(error)
    with LithopsJob(MapRequest(), backend=_FakeBackend(executor)) as job:
        with pytest.raises(BaseException) as caught:
            job.poll([])
    assert executor.stopped, "the job monitor is stopped on the way out"
    return caught.value


def test_an_error_raised_while_lithops_handles_ctrl_c_still_counts_as_a_cancel():
    # Lithops tidies up inside its KeyboardInterrupt handler; an error there
    # surfaces with the interrupt as its context, and must not be taken for
    # a storage failure (which would swallow the user's Ctrl-C).
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("cleanup failed")
    except RuntimeError as exc:
        hidden_interrupt = exc
    assert isinstance(_poll_error(hidden_interrupt), KeyboardInterrupt)


def test_a_network_error_is_a_service_error_but_a_defect_stays_itself():
    from fc_magic.errors import ServiceUnavailable

    down = _poll_error(ConnectionRefusedError("[Errno 111] Connection refused"))
    assert isinstance(down, ServiceUnavailable)
    assert str(down) == ("the storage service stopped answering "
                         "(builtins: connection refused)")
    # A programming error (say after a Lithops upgrade) is not "storage down".
    defect = _poll_error(TypeError("wait() got an unexpected keyword argument"))
    assert type(defect) is TypeError
