"""What a MapResult says about itself: summary, reprs, failures, the remote error."""
from __future__ import annotations

import pytest

from fc_magic.results import MapResult, RemoteTaskError, TaskFailure, short_repr


def failure(index, tb=""):
    return TaskFailure(index, repr(index), "ZeroDivisionError", "division by zero", tb)


def test_short_repr_bounds_its_length_and_survives_a_broken_repr():
    assert short_repr("x" * 10) == "'xxxxxxxxxx'"
    assert short_repr(list(range(100))) == "[0, 1, 2, 3, 4, 5, ...]"    # reprlib's own bounds
    long = short_repr("y" * 200, limit=20)
    assert len(long) == 20 and long.endswith("…") and long.startswith("'yyy")
    # reprlib shortens first (a long string to exactly 60 characters, kept whole) ...
    assert short_repr("z" * 100) == "'" + "z" * 27 + "..." + "z" * 28 + "'"
    # ... then the limit cuts what is still longer, to limit - 1 characters and "…".
    at_60 = [100000] * 5 + [10**17]
    at_61 = [100000] * 5 + [10**18]
    assert short_repr(at_60) == repr(at_60)
    assert short_repr(at_61) == repr(at_61)[:59] + "…"
    assert short_repr(at_61, limit=61) == repr(at_61)

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert short_repr(Broken()).startswith("<Broken instance at 0x")   # never raises

    def refuse(self):
        raise RuntimeError("no")

    # reprlib guards only types it does not know by name; one named like a builtin
    # reaches its unguarded repr_int, and short_repr's own guard answers.
    named_int = type("int", (int,), {"__repr__": refuse})
    assert short_repr(named_int(3)) == "<unrepresentable int: RuntimeError>"


def test_task_failure_repr_and_traceback_tail():
    f = TaskFailure(7, "7", "ValueError", "m" * 100, "\n".join(f"line {i}" for i in range(20)))
    assert repr(f) == f"<TaskFailure #7 ValueError: {short_repr('m' * 100, 80)}>"
    assert f.short_traceback(max_lines=3) == "  ...\nline 17\nline 18\nline 19"
    assert f.short_traceback() == "\n".join(["  ..."] + [f"line {i}" for i in range(8, 20)])
    short = TaskFailure(1, "1", "E", "m", "a\nb   \n\n")
    assert short.short_traceback(max_lines=2) == "a\nb"
    indented = TaskFailure(1, "1", "E", "m", "\n  a\nb")
    assert indented.short_traceback(max_lines=2) == "  ...\n  a\nb"
    assert repr(TaskFailure(2, "2", "E", "n" * 58)) == "<TaskFailure #2 E: '" + "n" * 58 + "'>"


def test_summary_and_repr_of_a_good_a_failed_and_a_cancelled_map():
    ok = MapResult(values=[1, 2, 3, 4, 5, 6], inputs=list(range(6)), elapsed_s=1.234,
                   backend="aliyun_fc", memory_mb=512, function="f")
    assert ok.summary() == "f over 6 inputs: 6 done, ok in 1.23s on aliyun_fc (512 MB)"
    assert repr(ok) == f"<MapResult {ok.summary()}: [1, 2, 3, 4, 5, …]>"
    bad = MapResult(values=[1, failure(1)], inputs=[0, 1])
    assert bad.summary() == "over 2 inputs: 1 done, 1 failed in 0.00s on localhost"
    assert repr(bad) == ("<MapResult over 2 inputs: 1 done, 1 failed in 0.00s on localhost: "
                         "[1, <TaskFailure #1 ZeroDivisionE…]>")   # 30 characters
    five = MapResult(values=[1, 2, 3, 4, 5], inputs=list(range(5)))
    assert repr(five).endswith(": [1, 2, 3, 4, 5]>")
    cancelled = MapResult(values=[1], inputs=[0], cancelled=True)
    assert cancelled.summary().endswith("1 done, cancelled in 0.00s on localhost")
    assert not cancelled.ok and not bad.ok and ok.ok
    assert list(ok) == ok.values and len(ok) == 6 and ok[1:3] == [2, 3]
    assert bad.results == [1] and bad.failures == [bad.values[1]]


def test_html_shows_ten_rows_escaped_and_the_count_of_the_rest():
    result = MapResult(values=[f"<v{i}>" for i in range(12)], inputs=[f"<i{i}>" for i in range(12)])
    page = result._repr_html_()
    assert page.startswith("<div><b style='color:#2e7d32'>MapResult</b> over 12 inputs")
    assert page.count("<tr><td>") == 10
    assert "<tr><td>9</td><td><code>&#x27;&lt;i9&gt;&#x27;</code></td>" in page
    assert "<td><code>&#x27;&lt;v9&gt;&#x27;</code></td></tr>" in page
    assert "<tr><td colspan=3>… 2 more in <code>.values</code></td></tr>" in page
    assert page.endswith("</table></div>") and "<v" not in page
    assert "</tr><tr><td>1</td>" in page                        # rows follow each other
    assert "… 1 more in" in MapResult(values=list(range(11)))._repr_html_()
    assert "more in" not in MapResult(values=list(range(10)))._repr_html_()
    at_61 = [100000] * 5 + [10**18]
    wide = MapResult(values=[at_61], inputs=["i" * 100])._repr_html_()
    assert "<code>&#x27;" + "i" * 27 + "..." + "i" * 8 + "…</code>" in wide   # inputs cut at 40
    assert f"<code>{repr(at_61)[:59]}…</code>" in wide            # values cut at 60
    short = MapResult(values=[1, failure(1)], inputs=[0])       # inputs not kept for all
    page = short._repr_html_()
    assert "color:#c62828" in page and "more in" not in page
    assert page.endswith("</code></td></tr></table></div>")
    assert "<tr><td>1</td><td><code>&#x27;&#x27;</code></td>" in page
    assert ("<table><tr><th>#</th><th>input</th><th>value</th></tr><tr><td>0</td>"
            "<td><code>0</code></td><td><code>1</code></td></tr>") in page


def test_raise_for_failures_is_one_remote_error_that_renders_short():
    MapResult(values=[1, 2], inputs=[0, 1]).raise_for_failures()    # nothing failed
    result = MapResult(values=[1, failure(1, "Traceback\n  x\nZeroDivisionError"), failure(2)],
                       inputs=[0, 1, 2])
    with pytest.raises(RemoteTaskError) as info:
        result.raise_for_failures()
    error = info.value
    assert str(error) == "2 of 3 tasks failed; first: #1 ZeroDivisionError: division by zero"
    assert error.failures == result.failures and error.total == 3
    assert error._render_traceback_() == [
        "RemoteTaskError: 2 of 3 tasks failed",
        "first failure, task #1 (input 1):",
        "Traceback\n  x\nZeroDivisionError"]
