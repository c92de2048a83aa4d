"""Resolve the FUNC and ITERABLE of `%fc_map` in the user's namespace.

Plain functions, no IPython: each raises `InputProblem` with one sentence
that names the problem and the fix; the magic turns it into a UsageError.
Everything is checked before anything is sent to a worker.
"""
from __future__ import annotations

import inspect
import keyword
from typing import Any, Callable, Mapping

from .errors import InputProblem

__all__ = ["InputProblem", "evaluate", "resolve_function", "resolve_items", "check_identifier"]


def evaluate(expr: str, namespace: Mapping[str, Any], role: str) -> Any:
    """Evaluate a name or expression in the user namespace."""
    expr = expr.strip()
    if not expr:
        raise InputProblem(f"{role} is missing; pass a name or expression")
    try:
        return eval(expr, dict(namespace))  # the user's own expression, in their namespace
    except NameError as exc:
        name = getattr(exc, "name", None) or str(exc)
        raise InputProblem(f"name {name!r} is not defined; define it in a cell "
                           f"above or check the spelling of {role} {expr!r}") from None
    except SyntaxError as exc:
        raise InputProblem(f"{role} {expr!r} is not valid Python ({exc.msg}); "
                           f"quote nothing, write it as you would in a cell") from None
    except Exception as exc:
        raise InputProblem(f"evaluating {role} {expr!r} raised "
                           f"{type(exc).__name__}: {exc}; fix the expression") from None


def resolve_function(expr: str, namespace: Mapping[str, Any]) -> Callable:
    func = evaluate(expr, namespace, "FUNC")
    if not callable(func):
        raise InputProblem(f"FUNC {expr!r} is a {type(func).__name__}, not callable; "
                           f"pass a function, e.g. def {expr}(x): ...")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return func  # builtins without a signature: let the worker decide
    try:
        sig.bind(object())
    except TypeError:
        raise InputProblem(f"FUNC {expr!r} cannot be called with one argument "
                           f"{sig}; %fc_map calls it once per item, like map()") from None
    return func


def resolve_items(expr: str, namespace: Mapping[str, Any]) -> list:
    items = evaluate(expr, namespace, "ITERABLE")
    if isinstance(items, (str, bytes)):
        raise InputProblem(f"ITERABLE {expr!r} is a {type(items).__name__}, which would map "
                           f"over its characters; pass a list such as [{expr}]")
    try:
        materialised = list(items)
    except TypeError:
        raise InputProblem(f"ITERABLE {expr!r} is a {type(items).__name__}, not iterable; "
                           f"pass a list, range or other iterable") from None
    if not materialised:
        raise InputProblem(f"ITERABLE {expr!r} is empty; there is nothing to map")
    return materialised


def check_identifier(name: str, option: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise InputProblem(f"{option} {name!r} is not a valid Python name; "
                           f"use letters, digits and _ (e.g. results)")
    return name
