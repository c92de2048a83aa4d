"""`%fc_map FUNC ITERABLE --reduce G` through a real InteractiveShell on localhost."""
from __future__ import annotations

import os

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic.results import REDUCED, TaskFailure

CELL = """\
import os
def big(x):
    if x == 'bad':
        raise ValueError('bad input')
    return bytes([x]) * 2_000_000          # 2 MB each: left in storage for the reducer
def firsts(results):
    return [r[0] for r in results], sorted({len(r) for r in results}), os.getpid()
def broken(results):
    raise KeyError('no such key')
"""


def test_the_reducer_runs_remotely_over_results_in_input_order(ip, cell):
    cell(CELL)
    r = ip.run_line_magic("fc_map", "big [5, 3, 9, 1] --reduce firsts --quiet")
    order, lengths, pid = r.reduced
    assert order == [5, 3, 9, 1] and lengths == [2_000_000]
    assert pid != os.getpid()  # on a worker, not in the kernel
    # The 8 MB of map values never came to the notebook: only the reducer's value did.
    assert r.values == [REDUCED] * 4 and r.results == [] and r.ok
    assert "reduced by firsts" in r.summary()
    frame_status = [row["status"] for row in r.to_pandas().to_dict("records")]
    assert frame_status == ["ok"] * 4


def test_a_failed_task_stops_the_reduce_unless_partial(ip, cell):
    cell(CELL)
    with capture_output() as captured:
        r = ip.run_line_magic("fc_map", "big [4, 'bad', 6] --reduce firsts")
    assert r.reduced is None and not r.ok
    assert r.failures[0].exc_type == "ValueError" and r.failures[0].index == 1
    assert "firsts not run: 1 task(s) did not succeed (--reduce-partial" in captured.stdout
    r = ip.run_line_magic("fc_map", "big [4, 'bad', 6] --reduce firsts --reduce-partial -q")
    assert r.reduced[0] == [4, 6]  # the successful results, in input order
    assert not r.ok and len(r.failures) == 1


def test_a_failing_reducer_is_reported_with_its_remote_traceback(ip, cell):
    cell(CELL)
    r = ip.run_line_magic("fc_map", "big [1, 2] --reduce broken --quiet")
    assert isinstance(r.reduced, TaskFailure) and r.reduced.exc_type == "KeyError"
    assert "in broken" in r.reduced.traceback and not r.ok
    assert "broken raised KeyError" in r.summary()


def test_a_background_map_reduces_too(ip, cell):
    cell(CELL)
    r = ip.run_line_magic("fc_map", "big [7, 8] --reduce firsts -b -q")
    assert r.wait(120) and r.reduced[0] == [7, 8] and r.ok


@pytest.mark.parametrize("line, expected", [
    ("big [1] --reduce-partial", "--reduce-partial needs --reduce G"),
    ("big [1] --reduce 3", "--reduce '3' is a int, not callable"),
    ("big [1] --reduce pow", "--reduce 'pow' cannot be called with one argument"),
    ("big [1] --reduce nothing_here", "name 'nothing_here' is not defined"),
])
def test_reduce_mistakes_are_one_line_usage_errors(ip, cell, line, expected):
    cell(CELL)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", line)
    assert str(info.value).startswith("%fc_map: ") and expected in str(info.value)
    assert "\n" not in str(info.value)
