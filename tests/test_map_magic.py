"""%fc_map through a real InteractiveShell on the embedded localhost backend."""
from __future__ import annotations

import sys

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic.results import MapResult, TaskFailure


def test_map_returns_values_in_input_order(ip, cell):
    cell("def add_seven(x):\n    return x + 7")
    result = cell("r = %fc_map add_seven range(20)\nr")
    assert isinstance(result, MapResult)
    assert result.values == [x + 7 for x in range(20)]
    assert result.ok and result.failures == []
    assert ip.user_ns["r"] is result
    assert all(s.duration_s is not None and s.duration_s >= 0 for s in result.stats)
    # In MB: a worker running `x + 7` holds some MB of Python, not KB nor GB.
    assert all(s.peak_memory_mb and 5 < s.peak_memory_mb < 2048 for s in result.stats)
    assert "20 done, ok" in repr(result)
    assert "<table>" in result._repr_html_()


def test_peak_memory_is_the_tasks_peak_in_megabytes(ip, cell):
    # b"x" * n writes every page (bytearray(n) would map zero pages lazily).
    cell("def hold(mb):\n    block = b'x' * (mb * 2**20)\n    return len(block)")
    result = ip.run_line_magic("fc_map", "hold [1, 150]")
    assert result.ok and result.values == [2**20, 150 * 2**20]
    small, big = (s.peak_memory_mb for s in result.stats)
    assert 5 < small < 2048
    assert 120 <= big - small <= 400, (small, big)


def test_out_stores_result_and_items_keep_their_type(ip, cell):
    cell("def kind(x):\n    return type(x).__name__")
    cell("pairs = [(1, 2), {'a': 1}, [3], 'text']")
    result = ip.run_line_magic("fc_map", "kind pairs --out kinds")
    # Each item is one argument, as with map(): tuples are not spread, dicts
    # are not keyword arguments.
    assert result.values == ["tuple", "dict", "list", "str"]
    assert ip.user_ns["kinds"] is result


def test_expression_arguments(ip, cell):
    cell("def square(x):\n    return x * x")
    result = ip.run_line_magic("fc_map", "square [n for n in range(6) if n % 2] --quiet")
    assert result.values == [1, 9, 25]
    result = ip.run_line_magic("fc_map", 'len ["a b", "cd"] --quiet')
    assert result.values == [3, 2]


def test_failures_keep_other_results_and_show_remote_traceback(ip, cell):
    cell("def invert(x):\n    return 1 / x")
    with capture_output() as captured:
        result = ip.run_line_magic("fc_map", "invert [1, 0, 2, 0, 4]")
    assert result.values[0] == 1.0 and result.values[2] == 0.5 and result.values[4] == 0.25
    failures = result.failures
    assert [f.index for f in failures] == [1, 3]
    assert isinstance(result.values[1], TaskFailure)
    first = failures[0]
    assert first.exc_type == "ZeroDivisionError" and first.message == "division by zero"
    assert first.input_repr == "0"
    assert "in invert" in first.traceback and "ZeroDivisionError" in first.traceback
    assert "lithops/worker" not in first.traceback
    assert not result.ok
    out = captured.stdout
    assert "2 of 5 tasks failed" in out
    assert "in invert" in out
    assert "[FAILED]" in out


def test_progress_line_ends_ok(ip, cell, fc):
    cell("def ident(x):\n    return x")
    with capture_output() as captured:
        ip.run_line_magic("fc_map", "ident range(5)")
    lines = [l for l in captured.stdout.splitlines() if l.strip()]
    assert lines[-1].endswith("[ok]") and "5/5 done" in lines[-1]


def test_quick_map_shows_no_bar_and_quiet_shows_nothing(ip, cell, fc):
    cell("def ident(x):\n    return x")
    fc.progress_after = 60
    with capture_output() as captured:
        ip.run_line_magic("fc_map", "ident range(3)")
    assert captured.stdout == ""
    fc.progress_after = 0
    cell("def bad(x):\n    raise ValueError(x)")
    with capture_output() as captured:
        result = ip.run_line_magic("fc_map", "bad range(2) --quiet")
    assert captured.stdout == "" and len(result.failures) == 2


def test_memory_and_timeout_flags_reach_the_request(ip, cell, fc, monkeypatch):
    from fc_magic import engine

    seen = {}

    def fake_run_map(func, items, request, **kwargs):
        seen["request"] = request
        return MapResult(values=[func(i) for i in items])

    monkeypatch.setattr(engine, "run_map", fake_run_map)
    cell("def one(x):\n    return 1")
    fc.memory = 512
    ip.run_line_magic("fc_map", "one range(2)")
    assert seen["request"].memory_mb == 512 and seen["request"].timeout_s == 300
    ip.run_line_magic("fc_map", "one range(2) --memory 1024 --timeout 20")
    assert seen["request"].memory_mb == 1024 and seen["request"].timeout_s == 20
    assert fc.memory == 512  # a flag overrides for one call only


BAD_LINES = [
    ("nosuchfunc range(3)", "name 'nosuchfunc' is not defined"),
    ("add_one nosuchdata", "name 'nosuchdata' is not defined"),
    ("not_callable range(3)", "not callable"),
    ("add_one not_iterable", "not iterable"),
    ("add_one []", "is empty"),
    ("add_one range(0)", "is empty"),
    ("add_one 'abc'", "characters"),
    ("two_args range(3)", "cannot be called with one argument"),
    ("add_one range(3) --memory 100", "outside Function Compute's range 128..32768"),
    ("add_one range(3) --memory 1000", "not a multiple of 64"),
    ("add_one range(3) --memory 40000", "outside"),
    ("add_one range(3) --memory -64", "outside"),
    ("add_one range(3) --memory abc", "invalid int value"),
    ("add_one range(3) --timeout 0", "timeout 0 s is outside"),
    ("add_one range(3) --out 1bad", "not a valid Python name"),
    ("add_one range(3) --bogus", "unrecognized arguments"),
    ("add_one", "ITERABLE"),
    ("", "FUNC"),
    ("add_one [1, 2", "not valid Python"),
    ("add_one 1/0", "ZeroDivisionError"),
]


@pytest.mark.parametrize("line,expected", BAD_LINES)
def test_bad_input_is_one_usage_error_and_nothing_runs(ip, cell, monkeypatch, line, expected):
    from fc_magic import engine

    def must_not_run(*args, **kwargs):
        raise AssertionError("run_map was called for bad input")

    monkeypatch.setattr(engine, "run_map", must_not_run)
    cell("def add_one(x):\n    return x + 1\nnot_callable = 3\nnot_iterable = 5\n"
         "def two_args(a, b):\n    return a + b")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", line)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("%fc_map: ")
    assert expected in message


def test_help_is_the_docstring(ip):
    doc = ip.find_line_magic("fc_map").__doc__
    for text in ("Run FUNC over every item", "--memory", "--timeout", "--out", "--quiet",
                 "Examples", "In [3]: r = %fc_map add7 range(5)"):
        assert text in doc


def test_runtime_is_an_absolute_interpreter():
    from fc_magic.backends.localhost import lithops_config
    from fc_magic.engine import MapRequest

    config = lithops_config(MapRequest())
    assert config["localhost"]["runtime"] == sys.executable
    assert config["localhost"]["version"] == 1
    assert config["lithops"] == {"backend": "localhost", "storage": "localhost"}


def test_parameter_names_lithops_reserves_behave_like_map(ip, cell):
    # Lithops overwrites a parameter named `id` with the call id and treats
    # `obj` as a storage partition; fc_magic calls FUNC(item) like map().
    cell("def by_id(id):\n    return id * 2\ndef by_obj(obj):\n    return obj + 1")
    assert ip.run_line_magic("fc_map", "by_id [5, 6] --quiet").values == [10, 12]
    assert ip.run_line_magic("fc_map", "by_obj [5, 6] --quiet").values == [6, 7]
