"""Resolve the FUNC and ITERABLE of `%fc_map` in the user's namespace.

Plain functions, no IPython: each raises `InputProblem` with one sentence
that names the problem and the fix; the magic turns it into a UsageError.
Everything is checked before anything is sent to a worker.
"""
from __future__ import annotations

import inspect
import itertools
import keyword
import logging
from typing import Any, Callable, Mapping, Sequence

logger = logging.getLogger(__name__)

from .errors import InputProblem

__all__ = ["InputProblem", "evaluate", "resolve_function", "resolve_items", "check_identifier",
           "parse_constants", "check_calls"]


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


def resolve_function(expr: str, namespace: Mapping[str, Any], call: str = "item",
                     constants: Sequence[str] = (), role: str = "FUNC") -> Callable:
    """FUNC as a callable; plain FUNC(item) calls need it to take one argument (other
    forms, and calls with constants, are bound item by item in `check_calls`)."""
    func = evaluate(expr, namespace, role)
    if not callable(func):
        raise InputProblem(f"{role} {expr!r} is a {type(func).__name__}, not callable; "
                           f"pass a function, e.g. def {expr}(x): ...")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return func  # builtins without a signature: let the worker decide
    if call != "item" or constants:
        return func
    try:
        sig.bind(object())
    except TypeError:
        what = ("it once per item, like map()" if role == "FUNC"
                else "it once with the list of all results")
        raise InputProblem(f"{role} {expr!r} cannot be called with one argument "
                           f"{sig}; %fc_map calls {what}") from None
    return func


#: Default of ``FCMagic.max_tasks``: more items than this is almost surely a mistake
#: (an endless generator), and each item is one pickled task.
MAX_TASKS = 200_000


def resolve_items(expr: str, namespace: Mapping[str, Any], max_items: int = MAX_TASKS) -> list:
    """The items of ITERABLE as a list, read at most ``max_items`` (+1 to tell) deep."""
    items = evaluate(expr, namespace, "ITERABLE")
    if isinstance(items, (str, bytes)):
        raise InputProblem(f"ITERABLE {expr!r} is a {type(items).__name__}, which would map "
                           f"over its characters; pass a list such as [{expr}]")
    try:
        iterator = iter(items)
    except TypeError:
        raise InputProblem(f"ITERABLE {expr!r} is a {type(items).__name__}, not iterable; "
                           f"pass a list, range or other iterable") from None
    materialised: list = []
    try:
        # One beyond the bound tells "too many" apart from "exactly enough",
        # and an endless generator stops here instead of filling the memory.
        materialised.extend(itertools.islice(iterator, max_items + 1))
    except Exception as exc:  # the user's generator failed: theirs to fix, said in one line
        raise InputProblem(f"ITERABLE {expr!r} raised {type(exc).__name__}: "
                           f"{_first_line(exc)} after {len(materialised)} item(s); "
                           f"fix the generator") from None
    if len(materialised) > max_items:
        raise InputProblem(f"ITERABLE {expr!r} has more than {max_items:,} items (or never "
                           f"ends); pass a finite one, or raise the limit: %config FCMagic.max_tasks = N")
    if not materialised:
        raise InputProblem(f"ITERABLE {expr!r} is empty; there is nothing to map")
    return materialised


def check_picklable(func: Callable, items: Sequence, func_label: str = "FUNC",
                    constants: Mapping[str, Any] | None = None) -> None:
    """Refuse, before anything is invoked, a function or an item the workers cannot receive.

    Lithops sends both with cloudpickle; its own error would come from deep
    inside a submission. The list is pickled whole (fast); only when that
    fails is it searched for the first item at fault.
    """
    import cloudpickle

    try:
        cloudpickle.dumps(func)
    except Exception as exc:  # pickling runs the objects' own code: any error is possible
        raise InputProblem(f"{func_label} cannot be sent to the workers ({type(exc).__name__}: "
                           f"{_first_line(exc)}); define it at the top level of a cell and "
                           f"keep open files, locks and connections out of it") from None
    for name, value in (constants or {}).items():
        try:
            cloudpickle.dumps(value)
        except Exception as exc:  # as above: the value's own pickling code may raise anything
            raise InputProblem(f"--const {name} ({type(value).__name__}) cannot be sent to the "
                               f"workers ({type(exc).__name__}: {_first_line(exc)}); pass data "
                               f"rather than open files, locks or connections") from None
    try:
        cloudpickle.dumps(list(items))
        return
    except Exception:  # found item by item below, with its position
        logger.debug("the items do not pickle as a whole; looking for the first one that fails")
    for index, item in enumerate(items):
        try:
            cloudpickle.dumps(item)
        except Exception as exc:
            raise InputProblem(f"item {index} ({type(item).__name__}) cannot be sent to the "
                               f"workers ({type(exc).__name__}: {_first_line(exc)}); pass "
                               f"data (numbers, strings, arrays, paths) rather than open "
                               f"files, locks or connections") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def check_identifier(name: str, option: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise InputProblem(f"{option} {name!r} is not a valid Python name; "
                           f"use letters, digits and _ (e.g. results)")
    return name


def parse_constants(specs: Sequence[str], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """``--const NAME=EXPR`` flags as {NAME: value}, each EXPR evaluated in the notebook."""
    constants: dict[str, Any] = {}
    for spec in specs:
        name, sep, expr = spec.partition("=")
        name = name.strip()
        if not sep or not expr.strip():
            raise InputProblem(f"--const {spec!r} has no value; write --const NAME=EXPR, "
                               f"e.g. --const model=my_model")
        check_identifier(name, "--const")
        if name in constants:
            raise InputProblem(f"--const {name} is given twice; pass each name once")
        constants[name] = evaluate(expr, namespace, f"--const {name}")
    return constants


def check_calls(func: Callable, items: Sequence, call: str, constants: Mapping[str, Any],
                func_label: str = "FUNC") -> None:
    """Refuse, before anything runs, an item FUNC cannot be called with in this form.

    ``call`` is "item" (FUNC(item)), "star" (FUNC(*item)) or "kwargs"
    (FUNC(**item)); ``constants`` are keywords every call gets. Each item is
    bound to FUNC's signature here, so a wrong shape is one line naming the
    item instead of a failure per task on the workers.
    """
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None  # builtins without a signature: only the shapes are checked
    for index, item in enumerate(items):
        if call == "star":
            if isinstance(item, (str, bytes)) or not _iterable(item):
                raise InputProblem(f"--star: item {index} is a {type(item).__name__}, not a "
                                   f"tuple or list to spread; pass items like (a, b) or drop "
                                   f"--star")
            args, kwargs = tuple(item), {}
        elif call == "kwargs":
            if not isinstance(item, Mapping) or not all(isinstance(k, str) for k in item):
                raise InputProblem(f"--kwargs: item {index} is a {type(item).__name__}, not a "
                                   f"dict with str keys; pass items like {{'x': 1}} or drop "
                                   f"--kwargs")
            clash = sorted(set(item) & set(constants))
            if clash:
                raise InputProblem(f"--kwargs: item {index} and --const both give "
                                   f"{clash[0]!r}; keep it in one place")
            args, kwargs = (), dict(item)
        else:
            args, kwargs = (item,), {}
        if sig is None:
            continue
        try:
            sig.bind(*args, **kwargs, **constants)
        except TypeError as exc:
            form = {"item": "FUNC(item)", "star": "FUNC(*item)", "kwargs": "FUNC(**item)"}[call]
            extra = f" with --const {', '.join(constants)}" if constants else ""
            raise InputProblem(f"{func_label} cannot be called as {form}{extra} for item "
                               f"{index} ({_first_line(exc)}); its signature is {sig}") from None


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True
