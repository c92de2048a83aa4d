"""The map loop alone, driven by a scripted job: no Lithops, no processes, a fake clock."""
from __future__ import annotations

import pytest

from fc_magic import engine
from fc_magic.engine import MapRequest, run_map
from fc_magic.errors import ServiceUnavailable
from fc_magic.progress import CANCELLED, ERROR, SUCCESS
from fc_magic.results import TaskFailure, TaskStats


class ScriptedJob:
    """A job whose tasks settle by a script: ``settle[i]`` = the poll at which task i ends.

    A task with ``settle[i] is None`` never ends; ``fail`` holds the indices
    that end in an error; ``down`` the polls at which the service is down.
    """

    def __init__(self, request, settle, fail=(), down=(), storage_down=False):
        self.request = request
        self.settle = settle
        self.fail = set(fail)
        self.down = set(down)
        self.storage_down = storage_down
        self.polls = 0
        self.futures = []
        self.finished = self.cancelled = self.closed = False
        self.settled: set[int] = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    runtime = "/fake/python"

    def describe(self):
        return "a scripted job"

    def request_id(self, index):
        return f"req-{index}"

    def logs(self):
        return "logs: in the script"

    def submit(self, func, items):
        self.func = func
        self.futures = list(range(len(items)))

    def poll(self, pending):
        self.polls += 1
        if self.polls in self.down:
            raise ServiceUnavailable("the storage service stopped answering (test: down)")
        still, done, failed = [], 0, 0
        for i in pending:
            if self.settle[i] is not None and self.settle[i] <= self.polls:
                self.settled.add(i)
                if i in self.fail:
                    failed += 1
                else:
                    done += 1
            else:
                still.append(i)
        return engine_poll(still, done, failed, len(still))

    def check_storage(self):
        if self.storage_down:
            raise ServiceUnavailable("the storage service stopped answering (test: probe)")

    def outcome(self, index, item):
        if index not in self.settled:
            return None
        if index in self.fail:
            return TaskFailure(index, repr(item), "ValueError", "bad input"), TaskStats(index, 0.5)
        return self.func(item), TaskStats(index, 0.1, 30.0)

    def finish(self):
        self.finished = True

    def cancel(self):
        self.cancelled = True


def engine_poll(pending, done, failed, running):
    from fc_magic.backends.job import Poll

    return Poll(pending, done, failed, running)


class Clock:
    def __init__(self, step=1.0):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def _run(job, items, *, should_cancel=None, clock=None, snapshots=None):
    return run_map(lambda x: x * 10, items, job.request, poll_interval=0,
                   clock=clock or Clock(0.01), should_cancel=should_cancel,
                   on_snapshot=(snapshots.append if snapshots is not None else None),
                   job_factory=lambda request: job)


def test_every_outcome_in_input_order_and_the_job_is_finished_and_closed():
    snapshots = []
    job = ScriptedJob(MapRequest(), settle=[3, 1, 2, 1], fail=[2])
    result = _run(job, [0, 1, 2, 3], snapshots=snapshots)
    assert result.values[:2] == [0, 10] and result.values[3] == 30
    assert isinstance(result.values[2], TaskFailure) and result.values[2].index == 2
    assert (job.finished, job.cancelled, job.closed) == (True, False, True)
    assert result.where == "a scripted job" and result.runtime == "/fake/python"
    assert [s.peak_memory_mb for s in result.stats] == [30.0, 30.0, None, 30.0]


def test_snapshots_count_up_and_end_with_the_status():
    snapshots = []
    job = ScriptedJob(MapRequest(), settle=[1, 2, 3])
    _run(job, [1, 2, 3], snapshots=snapshots)
    assert [(s.done, s.failed) for s in snapshots] == [(0, 0), (1, 0), (2, 0), (3, 0), (3, 0)]
    assert snapshots[-1].status == SUCCESS
    failing = ScriptedJob(MapRequest(), settle=[1, 1], fail=[0])
    snapshots.clear()
    _run(failing, [1, 2], snapshots=snapshots)
    assert (snapshots[-1].status, snapshots[-1].failed, snapshots[-1].done) == (ERROR, 1, 1)


def test_cancel_keeps_what_arrived_and_marks_the_rest_cancelled():
    job = ScriptedJob(MapRequest(), settle=[1, None, None])
    snapshots = []
    result = _run(job, [1, 2, 3], should_cancel=lambda: job.polls >= 2, snapshots=snapshots)
    assert result.values[0] == 10
    assert [v.exc_type for v in result.values[1:]] == ["Cancelled", "Cancelled"]
    assert result.cancelled and not result.ok
    assert (job.cancelled, job.finished, job.closed) == (True, False, True)
    assert snapshots[-1].status == CANCELLED and snapshots[-1].failed == 0


def test_ctrl_c_in_a_poll_is_a_cancel():
    class Interrupted(ScriptedJob):
        def poll(self, pending):
            raise KeyboardInterrupt

    job = Interrupted(MapRequest(), settle=[1])
    result = _run(job, [1])
    assert result.cancelled and job.cancelled and result.values[0].exc_type == "Cancelled"
    assert result.values[0].request_id == "" and result.logs == ""  # never sent, nothing to find


def test_a_dead_service_ends_the_map_with_its_reason_not_every_timeout(monkeypatch):
    monkeypatch.setattr(engine, "PROBE_AFTER_S", 5.0)
    job = ScriptedJob(MapRequest(timeout_s=3600), settle=[1, None], storage_down=True)
    clock = Clock(1.0)
    result = _run(job, [1, 2], clock=clock)
    assert result.values[0] == 10
    lost = result.values[1]
    assert (lost.exc_type, lost.message) == (
        "ServiceUnavailable", "the storage service stopped answering (test: probe)")
    assert clock.now < 60, "given up after a few probes, not after the task timeout"
    assert job.finished


def test_a_stalled_map_gives_up_after_the_timeout_and_grace(monkeypatch):
    monkeypatch.setattr(engine, "STALL_GRACE_S", 10.0)
    job = ScriptedJob(MapRequest(timeout_s=5), settle=[None])
    clock = Clock(1.0)
    result = _run(job, ["x"], clock=clock)
    assert result.values[0].exc_type == "TaskLost"
    assert 15 <= clock.now <= 30
    # The lost task keeps the id its invocation got (its logs say why), and the map where they are.
    assert result.values[0].request_id == "req-0" and result.stats[0].request_id == "req-0"
    assert result.logs == "logs: in the script"


def test_a_poll_that_fails_once_is_forgiven():
    job = ScriptedJob(MapRequest(), settle=[3], down=[1])
    assert _run(job, [4]).values == [40]


def test_a_defect_in_the_job_is_raised_as_itself_and_the_job_still_closed():
    class Broken(ScriptedJob):
        def poll(self, pending):
            raise TypeError("unexpected keyword argument")

    job = Broken(MapRequest(), settle=[1])
    with pytest.raises(TypeError, match="unexpected keyword"):
        _run(job, [1])
    assert job.closed and not job.finished


class TimedJob(ScriptedJob):
    """20 tasks on 4 workers, 2 s each, after 3 s of start-up; each poll is 0.5 s later."""

    def __init__(self, request):
        super().__init__(request, settle=[None] * 20)
        self.t = 0.0

    def clock(self):
        return self.t

    def poll(self, pending):
        self.t += 0.5
        started = max(self.t - 3.0, 0.0)
        batches = int(started // 2.0)  # 4 tasks end every 2 s once work began
        finished = min(4 * batches, 20)
        newly = [i for i in pending if i < finished]
        self.settled.update(newly)
        still = [i for i in pending if i >= finished]
        return engine_poll(still, len(newly), 0, min(4, len(still)) if self.t > 3.0 else 0)


def test_the_first_eta_is_about_right_not_counting_the_start_up():
    """The average since the start says 20 s left after the first batch; 8 s is right."""
    from fc_magic.views.text import status_line

    job = TimedJob(MapRequest())
    snapshots = []
    run_map(lambda x: x, list(range(20)), job.request, poll_interval=0, clock=job.clock,
            on_snapshot=snapshots.append, job_factory=lambda request: job)
    first = next(s for s in snapshots if s.finished)
    assert (first.elapsed_s, first.finished) == (5.0, 4)
    true_left = 13.0 - first.elapsed_s  # the last batch ends at 3 + 5 x 2 s
    assert (first.total - first.finished) / first.rate == 20.0  # the naive figure
    assert abs(first.eta_s - true_left) <= 0.1 * true_left
    assert "ETA 8.0s" in status_line(first)
    # Later ETAs track the truth too, and the line says where the map runs from the start.
    for s in snapshots:
        if s.finished and s.eta_s is not None and s.finished < s.total:
            assert abs(s.eta_s - (13.0 - s.elapsed_s)) <= max(0.15 * (13.0 - s.elapsed_s), 1.0)
    assert all(s.where == "a scripted job" for s in snapshots)


def test_the_live_line_says_where_from_the_first_snapshot_in_a_terminal():
    import io

    from fc_magic.views.text import TextMapView

    stream = io.StringIO()
    view = TextMapView(stream, tty=True, columns=lambda: 200)
    job = ScriptedJob(MapRequest(), settle=[2, 3])
    run_map(
        lambda x: x, [1, 2], job.request, poll_interval=0, clock=Clock(0.01),
        on_snapshot=lambda s: (view.finish if s.final else view.draw)(s),
        job_factory=lambda request: job)
    frames = stream.getvalue().split("\r")[1:]
    assert frames[0].startswith("[....................] <lambda>: 0/2 done")
    assert "on a scripted job" in frames[0]
    assert "on a scripted job" not in frames[-1] and "[ok]" in frames[-1]
