"""Function Compute's memory and timeout rules at their exact edges, and what the user reads."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from fc_magic.limits import memory_problem, timeout_problem


@pytest.mark.parametrize("mb", [128, 192, 1024, 32 * 1024])
def test_memory_fc_accepts(mb):
    assert memory_problem(mb) is None


@pytest.mark.parametrize("mb, says", [
    (64, "memory 64 MB is outside Function Compute's range 128..32768 MB"),
    (127, "memory 127 MB is outside Function Compute's range 128..32768 MB"),
    (32 * 1024 + 64, "memory 32832 MB is outside Function Compute's range 128..32768 MB"),
    (200, "memory 200 MB is not a multiple of 64 MB (try 192 or 256)"),
    (130, "memory 130 MB is not a multiple of 64 MB (try 128 or 192)"),
    (32 * 1024 - 1, "memory 32767 MB is not a multiple of 64 MB (try 32704 or 32768)"),
    ("512", "memory must be a whole number of MB, got '512'"),
    (512.0, "memory must be a whole number of MB, got 512.0"),
    (True, "memory must be a whole number of MB, got True"),
    (None, "memory must be a whole number of MB, got None"),
])
def test_memory_fc_refuses_and_says_why(mb, says):
    assert memory_problem(mb) == says


@pytest.mark.parametrize("seconds", [1, 300, 86_400])
def test_timeout_fc_accepts(seconds):
    assert timeout_problem(seconds) is None


@pytest.mark.parametrize("seconds, says", [
    (0, "timeout 0 s is outside Function Compute's range 1..86400 s"),
    (86_401, "timeout 86401 s is outside Function Compute's range 1..86400 s"),
    (-5, "timeout -5 s is outside Function Compute's range 1..86400 s"),
    ("60", "timeout must be a whole number of seconds, got '60'"),
    (60.0, "timeout must be a whole number of seconds, got 60.0"),
    (False, "timeout must be a whole number of seconds, got False"),
])
def test_timeout_fc_refuses_and_says_why(seconds, says):
    assert timeout_problem(seconds) == says


def test_the_magic_quotes_the_rule_and_the_nearest_sizes(ip, cell):
    cell("def ident(x):\n    return x")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "ident [1] --memory 200")
    assert type(info.value) is UsageError
    assert "memory 200 MB is not a multiple of 64 MB (try 192 or 256)" in str(info.value)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "ident [1] --timeout 86401")
    assert "timeout 86401 s is outside Function Compute's range 1..86400 s" in str(info.value)
