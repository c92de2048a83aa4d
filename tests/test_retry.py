"""Retry's plain parts: which inputs run again, how the answers merge, what is remembered."""
from __future__ import annotations

import gc
import sys
import weakref

import pytest

from fc_magic.inputs import InputProblem
from fc_magic.results import MapResult, TaskFailure, TaskStats
from fc_magic.retry import function_for, merge, remember_function, retry_inputs


def failure(index, exc_type="ValueError"):
    return TaskFailure(index, repr(index), exc_type, f"bad {index}")


def test_retry_inputs_are_the_failed_slots_and_their_inputs():
    result = MapResult(values=[0, failure(1), 20, failure(3)], inputs=["a", "b", "c", "d"])
    assert retry_inputs(result) == ([1, 3], ["b", "d"])
    with pytest.raises(InputProblem) as info:
        retry_inputs(MapResult(values=[1, 2], inputs=[1, 2]))
    assert str(info.value) == "the map has no failed tasks to retry"
    with pytest.raises(InputProblem) as info:
        retry_inputs(MapResult(values=[failure(0), 2], inputs=[]))
    assert str(info.value) == ("this MapResult does not keep its inputs, so its failures "
                               "cannot be retried; run the map again")


def test_merge_writes_values_stats_and_time_into_the_original_slots():
    result = MapResult(values=[0, failure(1), 20, failure(3)], inputs=[0, 1, 2, 3],
                       stats=[TaskStats(i, 1.0, 50.0) for i in range(4)], elapsed_s=5.0,
                       cancelled=True)
    partial = MapResult(values=[10, failure(1)], inputs=[1, 3],
                        stats=[TaskStats(0, 2.5, 70.0), TaskStats(1, 0.5, 60.0)], elapsed_s=3.0)
    assert merge(result, [1, 3], partial) is result
    assert result.values[:3] == [0, 10, 20]
    assert result.values[3].index == 3                     # the slot, not its place in the retry
    assert [(s.index, s.duration_s, s.peak_memory_mb) for s in result.stats] == [
        (0, 1.0, 50.0), (1, 2.5, 70.0), (2, 1.0, 50.0), (3, 0.5, 60.0)]
    assert result.elapsed_s == pytest.approx(8.0)
    assert result.cancelled is False                       # no Cancelled slot is left


def test_merge_keeps_cancelled_while_a_cancelled_slot_remains():
    result = MapResult(values=[failure(0, "Cancelled"), failure(1, "Cancelled")], inputs=[0, 1])
    merge(result, [0], MapResult(values=[5], inputs=[0], stats=[TaskStats(0, 1.0)]))
    assert result.values[0] == 5 and result.cancelled is True
    merge(result, [1], MapResult(values=[failure(0, "ValueError")], inputs=[1]))
    assert result.cancelled is False and result.values[1].index == 1


def test_merge_without_stats_for_every_slot():
    # A result whose stats are shorter than its values (a cancelled map) takes what fits;
    # a retry answer without stats leaves an empty TaskStats for its slot.
    result = MapResult(values=[failure(0), 1, failure(2)], inputs=[0, 1, 2],
                       stats=[TaskStats(0, 1.0), TaskStats(1, 1.0)])
    merge(result, [0, 2], MapResult(values=[7, 9], inputs=[0, 2], stats=[]))
    assert result.values == [7, 1, 9]
    assert [(s.index, s.duration_s) for s in result.stats] == [(0, None), (1, 1.0)]


def test_merge_refuses_a_retry_of_another_length():
    result = MapResult(values=[failure(0), failure(1)], inputs=[0, 1])
    with pytest.raises(ValueError) as info:
        merge(result, [0, 1], MapResult(values=[1], inputs=[0]))
    assert str(info.value) == "the retry returned a different number of outcomes"
    assert [v.index for v in result.values] == [0, 1]


def test_the_function_is_remembered_as_long_as_the_result_lives(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def func(x):
        return x

    result = MapResult(values=[failure(0)], inputs=[0])
    assert function_for(result) is None                    # never remembered
    remember_function(result, func)
    remember_function(result, func)                        # a retry remembers it again
    assert function_for(result) is func
    assert function_for(MapResult(values=[], inputs=[])) is None
    held = weakref.ref(func)
    del func, result
    gc.collect()
    assert held() is None, "the function outlived its result"
    assert not unraisable, unraisable                      # no error in the clean-up
