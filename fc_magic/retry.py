"""Re-running part of a finished map and merging the answers in place.

"Retry failed" (the widget button, `%fc_map --retry NAME`) runs only the
inputs whose slot holds a `TaskFailure` and writes the new outcomes into
the same `MapResult`, so every reference the user holds sees the merge and
the values stay in input order. The function a map ran is remembered here
(weakly keyed by the result) so a retry needs no arguments.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

from .errors import InputProblem
from .results import MapResult, TaskFailure, TaskStats

_functions: dict[int, tuple[weakref.ref, Callable, tuple[str, dict]]] = {}


def remember_function(result: MapResult, func: Callable,
                      call: tuple[str, dict] = ("item", {})) -> None:
    """Keep the function that produced ``result``, and how it was called (form,
    constants), for as long as the result lives."""
    key = id(result)
    _functions[key] = (weakref.ref(result, lambda _r, key=key: _functions.pop(key, None)),
                       func, call)


def function_for(result: MapResult) -> Callable | None:
    entry = _functions.get(id(result))
    if entry is None or entry[0]() is not result:
        return None
    return entry[1]


def call_for(result: MapResult) -> tuple[str, dict]:
    """(call form, constants) the map behind ``result`` used; plain FUNC(item) if unknown."""
    entry = _functions.get(id(result))
    if entry is None or entry[0]() is not result:
        return "item", {}
    return entry[2]


def failed_indices(result: MapResult) -> list[int]:
    """Positions whose task failed, was lost or was cancelled."""
    return [i for i, v in enumerate(result.values) if isinstance(v, TaskFailure)]


def retry_inputs(result: MapResult) -> tuple[list[int], list[Any]]:
    """The failed positions and their inputs; an InputProblem when there is nothing to retry."""
    indices = failed_indices(result)
    if not indices:
        raise InputProblem("the map has no failed tasks to retry")
    if len(result.inputs) != len(result.values):
        raise InputProblem("this MapResult does not keep its inputs, so its failures "
                           "cannot be retried; run the map again")
    return indices, [result.inputs[i] for i in indices]


def merge(result: MapResult, indices: list[int], partial: MapResult) -> MapResult:
    """Write ``partial`` (a map over ``indices``' inputs) into ``result``'s slots.

    Failures in ``partial`` keep the original position as their index, so
    `TaskFailure.index` always names the slot in ``result``. A re-run of every
    position (the memory slider's "re-run") replaces the old timing and memory;
    a retry of some adds its time to the map's.
    """
    if len(partial.values) != len(indices):
        raise ValueError("the retry returned a different number of outcomes")
    if indices == list(range(len(result.values))):
        result.elapsed_s = 0.0
        result.memory_mb = partial.memory_mb
    for j, i in enumerate(indices):
        value = partial.values[j]
        if isinstance(value, TaskFailure):
            value.index = i
        result.values[i] = value
        stats = partial.stats[j] if j < len(partial.stats) else TaskStats(i)
        stats.index = i
        if i < len(result.stats):
            result.stats[i] = stats
        if i < len(result.outputs):
            result.outputs[i] = partial.outputs[j] if j < len(partial.outputs) else ""
    result.elapsed_s += partial.elapsed_s
    result.cancelled = any(isinstance(v, TaskFailure) and v.cancelled
                           for v in result.values)
    return result
