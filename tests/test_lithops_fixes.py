"""The Lithops workarounds' own promises: a version warning, and stock Lithops left alone."""
from __future__ import annotations

import warnings

import pytest

from fc_magic.backends import lithops_fixes


@pytest.fixture
def fresh_check(monkeypatch):
    monkeypatch.setattr(lithops_fixes, "_VERSION_CHECKED", False)


@pytest.mark.parametrize("version, warned", [("3.8.0", False), ("3.8.7", False),
                                             ("3.9.0", True), ("3.7.2", True)])
def test_a_lithops_outside_the_tested_range_warns_once(fresh_check, monkeypatch, version,
                                                       warned):
    monkeypatch.setattr(lithops_fixes, "lithops_version", lambda: version)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lithops_fixes.check_version()
        lithops_fixes.check_version()
    messages = [str(w.message) for w in seen]
    if warned:
        assert messages == [f"fc_magic is tested with lithops<3.9,>=3.8, this kernel has "
                            f"{version}; its Lithops workarounds may not fit it"]
    else:
        assert messages == []


def test_the_task_wrapper_hides_lithops_reserved_parameter_names():
    def f(obj):
        return obj

    task = lithops_fixes.task_function(f)
    assert task.__name__ == "f"
    assert list(task.__code__.co_varnames[:task.__code__.co_argcount]) == ["item"]
    assert lithops_fixes.unpack_task_value(task(5)) == (5, "")
