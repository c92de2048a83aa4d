"""Remote tracebacks in the notebook's terms: `Cell In[3], line 9` and the source line, as IPython shows.

A function defined in a cell is compiled under a file name only the kernel
knows (ipykernel's ``/tmp/ipykernel_*/*.py``, IPython's ``<ipython-input-*>``)
and whose text lives in the kernel's `linecache`. cloudpickle ships its code
as ``<dynamic-code>`` (line numbers kept), so the worker's traceback says
``File "<dynamic-code>", line 9, in flaky`` with no text. Here each such
frame is matched to the code object it ran (same name, line inside it) among
the mapped function and the notebook functions it reaches, then given the
cell's name (the shell's own naming, passed in as ``name_for``) and the line
from the kernel's cache: the user sees the cell and the line that raised.
"""
from __future__ import annotations

import functools
import inspect
import linecache
import logging
import re
import types
from typing import Callable

#: The file name cloudpickle gives code it ships by value.
DYNAMIC_CODE = "<dynamic-code>"

logger = logging.getLogger(__name__)

_FRAME = re.compile(r'^(?P<indent>\s*)File "(?P<file>[^"]+)", line (?P<line>\d+)'
                    r'(?P<rest>(?:, in (?P<func>.*))?)$')


def cell_codes(func, name_for: Callable[[str], str | None], depth: int = 4) -> dict:
    """Code objects compiled in notebook cells that ``func`` may run, by name.

    ``func`` itself (unwrapped; partials followed), the functions nested in
    it, and the notebook functions and methods it names in its globals, down
    to ``depth`` calls. Cheap: a few code objects, no source read.
    """
    codes: dict[str, list[types.CodeType]] = {}
    seen: set[int] = set()

    def add_code(code: types.CodeType) -> list[str]:
        if id(code) in seen:
            return []
        seen.add(id(code))
        if name_for(code.co_filename):
            codes.setdefault(code.co_name, []).append(code)
        names = list(code.co_names)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                names += add_code(const)
        return names

    def add_callable(obj, left: int) -> None:
        while isinstance(obj, functools.partial):
            obj = obj.func
        if inspect.isclass(obj):
            for member in vars(obj).values():
                add_callable(member, left)
            return
        try:
            obj = inspect.unwrap(obj)
        except ValueError:  # a __wrapped__ cycle
            return
        code = getattr(obj, "__code__", None)
        if not isinstance(code, types.CodeType) or id(code) in seen:
            return
        names = add_code(code)
        if left <= 0:
            return
        scope = getattr(obj, "__globals__", {})
        for name in names:
            found = scope.get(name)
            if inspect.isfunction(found) or inspect.isclass(found):
                add_callable(found, left - 1)

    add_callable(func, depth)
    return codes


def _lines(code: types.CodeType) -> set[int]:
    return {line for _start, _end, line in code.co_lines() if line is not None}


def _real_file(file: str, func_name: str | None, lineno: int, codes: dict) -> str:
    """The kernel's file name of a ``<dynamic-code>`` frame, when one code object fits."""
    if file != DYNAMIC_CODE or not func_name:
        return file
    for code in codes.get(func_name, ()):
        if lineno in _lines(code):
            return code.co_filename
    return file


def name_frames(traceback: str, name_for: Callable[[str], str | None],
                codes: dict | None = None) -> str:
    """``traceback`` with each frame of a notebook cell named and its source line filled in."""
    lines = traceback.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        if not match:
            out.append(line)
            continue
        lineno = int(match["line"])
        file = _real_file(match["file"], match["func"], lineno, codes or {})
        name = name_for(file)
        if not name:
            out.append(line)
            continue
        indent = match["indent"]
        out.append(f"{indent}{name}, line {lineno}{match['rest']}")
        following = lines[i + 1] if i + 1 < len(lines) else ""
        has_source = following.startswith(indent + "  ") and not _FRAME.match(following)
        source = linecache.getline(file, lineno).strip()
        if source and not has_source:
            out.append(f"{indent}  {source}")
    return "\n".join(out) + ("\n" if traceback.endswith("\n") else "")


def name_cells(result, name_for: Callable[[str], str | None], func=None) -> None:
    """Rewrite every failure's traceback of ``result`` in place (see `name_frames`)."""
    failures = [f for f in result.failures if f.traceback]
    if not failures:
        return
    codes = cell_codes(func, name_for) if func is not None else {}
    for failure in failures:
        failure.traceback = name_frames(failure.traceback, name_for, codes)
