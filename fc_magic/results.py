"""What a map returns: plain data, no Lithops and no IPython.

A `MapResult` keeps every position of the input: a failed task leaves a
`TaskFailure` in its slot instead of dropping the other results, so one bad
input never costs the user the rest of a long map.
"""
from __future__ import annotations

import html
import reprlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 6


def short_repr(value: Any, limit: int = 60) -> str:
    """A repr bounded in length, safe on objects whose repr itself fails."""
    try:
        text = _short.repr(value)
    except Exception as exc:  # a user's __repr__ may raise
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: `TaskFailure.exc_type` of a task cancelled before it finished.
CANCELLED_TASK = "Cancelled"


class _Slot:
    """A marker in `MapResult.values` for a task whose value is not here (one per kind).

    One instance per text, kept through pickling, so ``value is PENDING`` holds
    in a copy of a result too.
    """

    _instances: dict[str, _Slot] = {}

    def __new__(cls, text: str):
        if text not in cls._instances:
            slot = super().__new__(cls)
            slot.text = text
            cls._instances[text] = slot
        return cls._instances[text]

    def __repr__(self) -> str:
        return self.text

    def __reduce__(self):
        return (_Slot, (self.text,))


#: What `MapResult.values` holds for a background map's unfinished tasks.
PENDING = _Slot("<pending>")
#: What `MapResult.values` holds for a `--reduce` map's successful tasks: their
#: values went to the reducer on a worker and never came back to the notebook.
REDUCED = _Slot("<reduced remotely>")


@dataclass
class TaskStats:
    """Per-task figures taken from Lithops' call stats (None where unknown)."""

    index: int
    duration_s: float | None = None
    peak_memory_mb: float | None = None
    #: Function Compute's request id of the invocation that ran it ('' elsewhere).
    request_id: str = ""


@dataclass
class TaskFailure:
    """A task whose function raised (or was lost) on the worker.

    It stands in the failed task's slot of `MapResult.values`, so code that
    walks the values can tell it apart with `isinstance(v, TaskFailure)`.
    """

    index: int
    input_repr: str
    exc_type: str
    message: str
    traceback: str = ""
    #: Function Compute's request id of the invocation (find its logs by it); '' elsewhere.
    request_id: str = ""

    @property
    def cancelled(self) -> bool:
        """True for a task the user cancelled before it finished (not a failure of its own)."""
        return self.exc_type == CANCELLED_TASK

    def __repr__(self) -> str:
        request = f" (FC request {self.request_id})" if self.request_id else ""
        return (f"<TaskFailure #{self.index} {self.exc_type}: "
                f"{short_repr(self.message, 80)}{request}>")

    def short_traceback(self, max_lines: int = 12) -> str:
        """The tail of the remote traceback: the frames nearest the error."""
        lines = self.traceback.rstrip().splitlines()
        if len(lines) <= max_lines:
            return "\n".join(lines)
        return "\n".join(["  ..."] + lines[-max_lines:])


class RemoteTaskError(Exception):
    """Raised by `MapResult.raise_for_failures()`: the user's function failed remotely.

    Like ipyparallel's RemoteError it renders short: the remote traceback of
    the first failure, not the client-side frames that merely collected it.
    """

    def __init__(self, failures: list[TaskFailure], total: int):
        self.failures = failures
        self.total = total
        first = failures[0]
        super().__init__(f"{len(failures)} of {total} tasks failed; first: "
                         f"#{first.index} {first.exc_type}: {first.message}")

    def _render_traceback_(self) -> list[str]:
        first = self.failures[0]
        head = f"RemoteTaskError: {len(self.failures)} of {self.total} tasks failed"
        return [head, f"first failure, task #{first.index} (input {first.input_repr}):",
                first.short_traceback()]


@dataclass
class MapResult:
    """Results of one `%fc_map`, in input order, with failures kept in place."""

    values: list[Any]
    inputs: list[Any] = field(repr=False, default_factory=list)
    stats: list[TaskStats] = field(default_factory=list)
    elapsed_s: float = 0.0
    backend: str = "localhost"
    runtime: str = ""
    memory_mb: int = 0
    #: The vCPU chosen for it (None: the least FC allows for memory_mb).
    cpu: float | None = None
    function: str = ""
    cancelled: bool = False
    #: Where it ran, in a few words (the backend's own description).
    where: str = ""
    #: Each task's captured stdout and stderr (its tail), in input order ('' for none).
    outputs: list[str] = field(default_factory=list, repr=False)
    #: Where the backend keeps the tasks' logs, or how to have it keep them (one line; '' for none).
    logs: str = ""
    #: Set by a view that showed this result's receipt: True while that cell is
    #: still the one running, so Out[] does not repeat the receipt's preview.
    receipt_shown: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    #: `--reduce G`: G(list of the results in input order), run remotely; a TaskFailure
    #: if G raised; None when it did not run (a task failed, without --reduce-partial).
    reduced: Any = None
    #: The reducer's name when the map had one ("" otherwise).
    reducer: str = ""
    #: A background map's runner (done/wait/cancel/progress); None once a map is foreground.
    _runner: Any = field(default=None, repr=False, compare=False)

    # -- a map that may still be running (`%fc_map ... --background`)
    def done(self) -> bool:
        """True once every task has settled (always, for a map that ran in the foreground)."""
        return self._runner is None or self._runner.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the map ends, or ``timeout`` seconds; True if it ended.

        An interrupt (the kernel's stop button) stops the wait, not the map.
        """
        return self._runner is None or self._runner.wait(timeout)

    def cancel(self) -> None:
        """Stop a background map: calls not sent are not sent, results that arrived stay."""
        if self._runner is not None:
            self._runner.cancel()

    @property
    def progress(self) -> dict[str, int]:
        """Counts: total, done, failed, cancelled, running, pending (live while a
        background map runs)."""
        if self._runner is not None and not self._runner.done():
            return self._runner.progress()
        failed = len(self.failures_not_cancelled)
        cancelled = len(self.failures) - failed
        return {"total": len(self.values), "done": self.succeeded, "failed": failed,
                "cancelled": cancelled, "running": 0, "pending": 0}

    @property
    def failures(self) -> list[TaskFailure]:
        return [v for v in self.values if isinstance(v, TaskFailure)]

    @property
    def failures_not_cancelled(self) -> list[TaskFailure]:
        """Tasks that failed on their own (raised, were lost or killed), not by a cancel."""
        return [f for f in self.failures if not f.cancelled]

    @property
    def ok(self) -> bool:
        return (self.done() and not self.cancelled and not self.failures
                and not (self.reducer and (self.reduced is None
                                            or isinstance(self.reduced, TaskFailure))))

    @property
    def succeeded(self) -> int:
        """How many tasks returned a value (here, or kept remote for the reducer)."""
        return sum(1 for v in self.values if not isinstance(v, TaskFailure) and v is not PENDING)

    @property
    def results(self) -> list[Any]:
        """The successful values only, in input order."""
        return [v for v in self.values
                if not isinstance(v, TaskFailure) and v is not PENDING and v is not REDUCED]

    def output(self, index: int) -> str:
        """What task ``index`` printed (stdout and stderr, the last 64 kB), '' for nothing."""
        if not -len(self.values) <= index < len(self.values):
            raise IndexError(f"task index {index} out of range for {len(self.values)} tasks")
        index %= len(self.values)
        return self.outputs[index] if index < len(self.outputs) else ""

    def raise_for_failures(self) -> None:
        if self.failures:
            raise RemoteTaskError(self.failures, len(self.values))

    def to_pandas(self):
        """One row per task, in input order: input, value, status, exception, duration, peak
        memory and what the task printed (``output``).

        ``status`` is "ok", "failed", "cancelled" (or "pending" in a background map
        still running); a failed task's ``value``
        is None and ``exception`` reads "Type: message". pandas is optional:
        without it this raises ImportError saying how to install it.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("MapResult.to_pandas() needs pandas, which this kernel does not "
                              "have; install it (pip install pandas) or use .values and "
                              ".stats") from None
        stats = {s.index: s for s in self.stats}
        rows = []
        for index, value in enumerate(self.values):
            failed = isinstance(value, TaskFailure)
            stat = stats.get(index, TaskStats(index))
            if value is PENDING:
                status = "pending"
            elif failed:
                status = "cancelled" if value.cancelled else "failed"
            else:
                status = "ok"
            rows.append({
                "input": self.inputs[index] if index < len(self.inputs) else None,
                "value": None if failed or value is PENDING or value is REDUCED else value,
                "status": status,
                "exception": f"{value.exc_type}: {value.message}" if failed else None,
                "duration_s": stat.duration_s,
                "peak_memory_mb": stat.peak_memory_mb,
                "output": self.outputs[index] if index < len(self.outputs) else "",
            })
        frame = pd.DataFrame(rows, columns=["input", "value", "status", "exception",
                                            "duration_s", "peak_memory_mb", "output"])
        frame.index.name = "task"
        return frame

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __getitem__(self, item):
        return self.values[item]

    def summary(self) -> str:
        """One line: what ran, where, and how it ended."""
        n, failed = len(self.values), len(self.failures)
        if not self.done():
            counts = self.progress
            return (f"{self.function + ' ' if self.function else ''}over {n} inputs: running "
                    f"in the background, {counts['done']} done, {counts['failed']} failed")
        status = "cancelled" if self.cancelled else ("ok" if not failed else f"{failed} failed")
        fn = f"{self.function} " if self.function else ""
        line = (f"{fn}over {n} inputs: {n - failed} done, {status} in "
                f"{self.elapsed_s:.2f}s on {self.backend}"
                + (f" ({self.memory_mb} MB)" if self.memory_mb else ""))
        if self.reducer:
            line += "; " + self.reduce_summary()
        return line

    def reduce_summary(self) -> str:
        """What became of the reduce step, in a few words."""
        if isinstance(self.reduced, TaskFailure):
            return f"{self.reducer} raised {self.reduced.exc_type}: {short_repr(self.reduced.message, 60)}"
        if self.reduced is None:
            return (f"{self.reducer} not run: {len(self.failures)} task(s) did not succeed "
                    f"(--reduce-partial reduces the rest)")
        return f"reduced by {self.reducer}: {short_repr(self.reduced, 40)}"

    def __repr__(self) -> str:
        if self._just_shown():
            return f"<MapResult {self.summary()}>"
        preview = ", ".join(short_repr(v, 30) for v in self.values[:5])
        more = ", …" if len(self.values) > 5 else ""
        return f"<MapResult {self.summary()}: [{preview}{more}]>"

    def _just_shown(self) -> bool:
        return self.receipt_shown is not None and self.receipt_shown()

    def _repr_html_(self) -> str:
        esc = html.escape
        if self._just_shown():  # the receipt above says it all; no second preview
            return f"<code>MapResult</code> {esc(self.summary())}"
        colour = "#2e7d32" if self.ok else "#c62828"
        rows = "".join(
            f"<tr><td>{i}</td><td><code>{esc(short_repr(self.inputs[i] if i < len(self.inputs) else '', 40))}</code></td>"
            f"<td><code>{esc(short_repr(v, 60))}</code></td></tr>"
            for i, v in enumerate(self.values[:10]))
        more = (f"<tr><td colspan=3>… {len(self.values) - 10} more in <code>.values</code></td></tr>"
                if len(self.values) > 10 else "")
        return (f"<div><b style='color:{colour}'>MapResult</b> {esc(self.summary())}"
                f"<table><tr><th>#</th><th>input</th><th>value</th></tr>{rows}{more}</table></div>")
