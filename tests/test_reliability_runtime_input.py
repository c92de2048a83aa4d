"""Malformed `%%fc_runtime` cells: exactly one UsageError, nothing built or cached.

Requirement lines come from Hypothesis (any text that `packaging` rejects)
and from a hand-picked list; arguments likewise. The builder is replaced by
one that fails the test if reached, and the cache folder must stay empty.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from packaging.requirements import InvalidRequirement, Requirement

import fc_magic.runtime as runtime_pkg


@pytest.fixture
def no_build(ip, fc, monkeypatch):
    def must_not_build(*args, **kwargs):
        raise AssertionError("a malformed cell reached the builder")

    monkeypatch.setattr(runtime_pkg, "ensure_runtime", must_not_build)
    return fc


def refused(ip, fc, line: str, body: str) -> str:
    before = fc.current_runtime
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("fc_runtime", line, body)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(("%%fc_runtime:", "%fc_runtime:")), message
    assert fc.current_runtime is before
    assert not os.path.exists(fc.cache_dir) or not any(
        files for _, _, files in os.walk(fc.cache_dir))
    return message


def invalid(line: str) -> bool:
    text = line.strip()
    if not text or text.startswith("#"):
        return False
    try:
        Requirement(text.split(" #")[0].strip())
    except InvalidRequirement:
        return True
    return False


bad_lines = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                    min_size=1, max_size=30).filter(invalid)
HYP = settings(max_examples=80, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.filter_too_much])


@HYP
@given(line=bad_lines)
def test_generated_bad_requirement_lines(ip, no_build, tally, line):
    tally.inputs_tried += 1
    message = refused(ip, no_build, "gen_rt", f"humanize\n{line}\n")
    assert "line 2" in message


@HYP
@given(name=st.text(min_size=1, max_size=40).filter(
    lambda n: n.strip() and (len(n) > 22 or not n.replace("_", "a").replace("-", "a").isalnum()
                             or not (n[0].isalpha() or n[0] == "_")) and not n.startswith("-")
    and '"' not in n and "'" not in n and " " not in n.strip() and n == n.strip()))
def test_generated_bad_names(ip, no_build, tally, name):
    tally.inputs_tried += 1
    refused(ip, no_build, name, "humanize\n")


HAND_PICKED = [
    ("ok_rt", "numpy===\n"),
    ("ok_rt", "numpy>=1.0,<\n"),
    ("ok_rt", "-r other.txt\n"),
    ("ok_rt", "--index-url http://example.invalid\n"),
    ("ok_rt", "\x00\x01garbage\n"),
    ("ok_rt", "numpy ; python_version >\n"),
    ("ok_rt", "numpy==1.0\nnumpy==2.0\n"),
    ("ok_rt", "git+https://example.invalid/x.git\n"),
    ("ok_rt --memory 100", "humanize\n"),
    ("ok_rt --memory 1000", "humanize\n"),
    ("ok_rt --memory -64", "humanize\n"),
    ("ok_rt --memory abc", "humanize\n"),
    ("ok_rt --bogus", "humanize\n"),
    ("ok_rt 'unbalanced", "humanize\n"),
    ('"unbalanced', "humanize\n"),
    ("", "humanize\n"),
    ("9starts_with_digit", "humanize\n"),
    ("has space", "humanize\n"),
    ("has.dot", "humanize\n"),
    ("x" * 23, "humanize\n"),
    ("ok_rt --list", "humanize\n"),
]


@pytest.mark.parametrize("line,body", HAND_PICKED)
def test_hand_picked(ip, no_build, tally, line, body):
    tally.inputs_tried += 1
    refused(ip, no_build, line, body)


def test_empty_cell_is_one_usage_error(ip, no_build, tally):
    # IPython answers an empty cell magic itself, in one line that names the fix.
    tally.inputs_tried += 1
    before = no_build.current_runtime
    for run in (lambda: ip.run_cell_magic("fc_runtime", "empty_rt", ""),
                lambda: ip.run_cell("%%fc_runtime empty_rt\n").raise_error()):
        with pytest.raises(UsageError) as info:
            run()
        message = str(info.value)
        assert type(info.value) is UsageError and "\n" not in message, message
        assert "cell body is empty" in message and "%fc_runtime" in message, message
        assert no_build.current_runtime is before
        assert not os.path.exists(no_build.cache_dir) or not any(
            files for _, _, files in os.walk(no_build.cache_dir))
