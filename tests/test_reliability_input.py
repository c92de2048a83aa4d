"""Bad input, generated and hand-picked: exactly one UsageError, nothing run.

Hypothesis writes malformed %fc_map lines; every one must be answered with
exactly `UsageError` (not a subclass, not a traceback from deeper down),
in one line that starts with the magic's name, and must not reach Lithops.
"""
from __future__ import annotations

import builtins
import keyword
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from fc_magic import engine, limits
from fc_magic.results import MapResult

SETUP = ("def add_one(x):\n    return x + 1\nnumber = 5\nempty = []\n"
         "def two(a, b):\n    return a + b")


@pytest.fixture
def guarded(ip, cell, monkeypatch):
    calls = []
    def record(func, items, request, **kwargs):
        calls.append(items)
        return MapResult(values=list(items), inputs=list(items))

    monkeypatch.setattr(engine, "run_map", record)
    cell(SETUP)
    return calls


def assert_one_usage_error(ip, magic: str, line: str, calls: list) -> str:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic(magic, line)
    assert type(info.value) is UsageError, type(info.value)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"%{magic}")
    assert not calls, f"{line!r} reached the engine"
    return message


undefined_names = st.text(string.ascii_letters + "_", min_size=1, max_size=12).filter(
    lambda s: s.isidentifier() and not keyword.iskeyword(s) and not s.startswith("_")
    and s not in {"add_one", "number", "empty", "two"} and s not in dir(builtins))

bad_memory = st.integers(-10**9, 10**9).filter(lambda m: limits.memory_problem(m) is not None)
bad_timeout = st.integers(-10**9, 10**9).filter(lambda t: limits.timeout_problem(t) is not None)
garbage = st.binary(min_size=1, max_size=40).map(lambda b: b.decode("latin-1"))

HYP = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYP
@given(name=undefined_names)
def test_undefined_function(ip, guarded, tally, name):
    assume(name not in ip.user_ns)  # the shared shell may hold names from other tests
    tally.inputs_tried += 1
    assert "is not defined" in assert_one_usage_error(ip, "fc_map", f"{name} range(3)", guarded)


@HYP
@given(memory=bad_memory)
def test_invalid_memory(ip, guarded, tally, memory):
    tally.inputs_tried += 1
    message = assert_one_usage_error(ip, "fc_map", f"add_one range(3) --memory {memory}", guarded)
    assert "memory" in message


@HYP
@given(seconds=bad_timeout)
def test_invalid_timeout(ip, guarded, tally, seconds):
    tally.inputs_tried += 1
    assert "timeout" in assert_one_usage_error(
        ip, "fc_map", f"add_one range(3) --timeout {seconds}", guarded)


@HYP
@given(junk=garbage)
def test_binary_garbage_as_iterable(ip, guarded, tally, junk):
    # Whatever the bytes, the line is either refused with a UsageError or
    # (if it happens to be a valid non-empty iterable expression) mapped.
    tally.inputs_tried += 1
    reached = len(guarded)   # the fixture's list lives across Hypothesis' examples
    try:
        result = ip.run_line_magic("fc_map", f"add_one {junk}")
    except UsageError as exc:
        message = str(exc)
        assert type(exc) is UsageError, type(exc)
        assert "\n" not in message and message.startswith("%fc_map"), message
        assert len(guarded) == reached, f"{junk!r} was refused but reached the engine"
    else:
        # Mapped: exactly one call, with a non-empty list of items, whose result is returned.
        assert len(guarded) == reached + 1, f"{junk!r} returned without one engine call"
        items = list(guarded[-1])
        assert items, f"{junk!r}: an empty iterable reached the engine"
        assert isinstance(result, MapResult) and result.values == items


HAND_PICKED = [
    'add_one ["unbalanced',
    "add_one 'unbalanced",
    "add_one (1, 2",
    "add_one range(3) --memory",
    "add_one range(3) --timeout -1",
    "add_one range(3) --memory 1e3",
    "add_one range(3) --memory 99999999999999999999",
    "add_one range(3) --unknown-option 3",
    "add_one range(3) --out",
    "add_one range(3) --out 'a b'",
    "add_one range(3) --out class",
    "number range(3)",
    "add_one number",
    "add_one empty",
    "two range(3)",
    "add_one \x00\x01\x02",
    "   ",
    "--memory 512",
]


@pytest.mark.parametrize("line", HAND_PICKED)
def test_hand_picked(ip, guarded, tally, line):
    tally.inputs_tried += 1
    assert_one_usage_error(ip, "fc_map", line, guarded)
