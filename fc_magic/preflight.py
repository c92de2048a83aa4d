"""Check a function against its runtime before anything is invoked.

A package missing from a runtime shows up on Function Compute as a
`ModuleNotFoundError` in every task, after the whole map has been invoked and
billed. Here the function itself is read instead: the modules its globals and
closures are bound to, the imports in its body, the types of the objects it
captures, and, recursively, the notebook's own functions and classes it uses
(those travel by value with cloudpickle, so their needs are the function's
needs). Each module is mapped to its distribution and compared with what the
runtime installs. Nothing is executed; code objects are read with `dis`.

Plain functions, no IPython.
"""
from __future__ import annotations

import builtins
import dis
import functools
import logging
import os
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from . import limits
from .errors import InputProblem
from .limits import FC_BUILTIN_DISTRIBUTIONS
from .requirements import (
    is_local_module,
    is_stdlib,
    lithops_worker_requirements,
    module_distribution,
    target_environment,
)

logger = logging.getLogger(__name__)

#: Modules a worker always has: Lithops copies itself into every runtime.
ALWAYS_SHIPPED = frozenset({"lithops", "__main__", "builtins"})
_USER_MODULES = frozenset({"__main__", "__mp_main__", None})
_MAX_OBJECTS = 2000
#: What `_Walker.visit` reads as code; anything else is a value that gets pickled.
_CODE_KINDS = (types.ModuleType, types.MethodType, functools.partial, types.FunctionType, type,
               staticmethod, classmethod, property, types.BuiltinFunctionType)


@dataclass(frozen=True)
class Need:
    """A module the function needs, how it was reached, and which distribution has it."""

    module: str               # dotted, as specific as the code says
    via: str                  # e.g. "score -> helper: import yaml"
    distribution: str | None  # canonical name; None when no installed distribution has it


def _pickled_parts(value: Any) -> list:
    """What pickle ships of a library object: its reduce's arguments and state.

    Not its ``__dict__``: a class with its own reduce (a logger pickles as its
    name) or ``__getstate__`` leaves things out, and those never reach the
    worker. Called only for objects with a ``__dict__`` (an array's reduce
    would copy its data).
    """
    try:
        reduced = value.__reduce_ex__(4)
    except Exception as exc:  # noqa: BLE001 - an unpicklable object: cloudpickle says so at submit
        logger.debug("pre-flight does not follow a %s: %s", type(value).__name__, exc)
        return []
    if not isinstance(reduced, tuple):
        return []  # pickled as a global name
    return [part for part in reduced[1:3] if part is not None]


class _Walker:
    """Follows a function to everything it references, collecting module uses."""

    def __init__(self, local_dir: str | None):
        self.local_dir = local_dir
        self.seen: set[int] = set()
        self.local_seen: set[str] = set()
        self.uses: dict[str, str] = {}

    # -- recording
    def use(self, module: str | None, via: str) -> None:
        if not module or module.split(".")[0] in ALWAYS_SHIPPED or is_stdlib(module):
            return
        self.uses.setdefault(module, via)

    def is_user_code(self, obj: Any) -> bool:
        """Defined in the notebook, or in a module next to it (Lithops ships those)."""
        module = getattr(obj, "__module__", None)
        if module in _USER_MODULES:
            return True
        return bool(self.local_dir) and is_local_module(module, self.local_dir)

    # -- walking
    def visit(self, obj: Any, via: str) -> None:
        if not isinstance(obj, _CODE_KINDS):
            self.visit_value(obj, via)
            return
        if id(obj) in self.seen or len(self.seen) > _MAX_OBJECTS:
            return
        self.seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            if self.local_dir and is_local_module(obj.__name__, self.local_dir):
                self.visit_local_module(obj.__name__, via)
            else:
                self.use(obj.__name__, via)
        elif isinstance(obj, types.MethodType):
            self.visit(obj.__func__, via)
            self.visit(obj.__self__, via)
        elif isinstance(obj, functools.partial):
            self.visit(obj.func, via)
            for arg in (*obj.args, *obj.keywords.values()):
                self.visit_value(arg, via)
        elif isinstance(obj, types.FunctionType):
            if self.is_user_code(obj):
                if obj.__module__ not in _USER_MODULES:
                    self.visit_local_module(obj.__module__, via)
                self.visit_function(obj, via)
            else:
                self.use(obj.__module__, via)
        elif isinstance(obj, type):
            if self.is_user_code(obj):
                if obj.__module__ not in _USER_MODULES:
                    self.visit_local_module(obj.__module__, via)
                self.visit_class(obj, via)
            else:
                self.use(obj.__module__, via)
        elif isinstance(obj, (staticmethod, classmethod)):
            self.visit(obj.__func__, via)
        elif isinstance(obj, property):
            for part in (obj.fget, obj.fset, obj.fdel):
                if part is not None:
                    self.visit(part, via)
        elif isinstance(obj, types.BuiltinFunctionType):
            self.use(getattr(obj, "__module__", None), via)   # C functions: math.sqrt, np.*

    def visit_local_module(self, name: str, via: str) -> None:
        """A module next to the notebook is shipped as a file; importing it on the
        worker runs its imports, so all of them are needed."""
        from .capture import imported_modules

        top = name.split(".")[0]
        if top in self.local_seen:
            return
        self.local_seen.add(top)
        base = os.path.join(self.local_dir, top)
        files = [base + ".py"] if os.path.isfile(base + ".py") else [
            os.path.join(folder, f) for folder, _dirs, names in os.walk(base)
            for f in names if f.endswith(".py")]
        sources = []
        for path in sorted(files):
            try:
                with open(path, encoding="utf-8") as fh:
                    sources.append(fh.read())
            except (OSError, UnicodeDecodeError):
                continue
        report = imported_modules(sources, transform=lambda text: text)
        for module in sorted(report.modules - report.optional):
            if is_local_module(module, self.local_dir):
                self.visit_local_module(module, f"{via} -> {top}")
            else:
                self.use(module, f"{via} -> {top}: import {module}")

    def visit_value(self, value: Any, via: str) -> None:
        """An object the function captures: it is pickled, so its type's module must exist."""
        if isinstance(value, _CODE_KINDS):
            self.visit(value, via)
            return
        if isinstance(value, (list, tuple, set, frozenset, dict)):
            if id(value) in self.seen or len(value) > 100:  # big data: its type is enough
                return
            self.seen.add(id(value))
            for item in (value.values() if isinstance(value, dict) else value):
                self.visit_value(item, via)
            return
        cls = type(value)
        held = getattr(value, "__dict__", None)
        user = self.is_user_code(cls)
        if user or isinstance(held, dict):
            if id(value) in self.seen:
                return
            self.seen.add(id(value))
        if user:
            self.visit(cls, via)
        elif cls.__module__ not in ("builtins",):
            self.use(cls.__module__, via)
        # An object is pickled with what its reduce ships: a notebook object (a fitted
        # model ...) or a SimpleNamespace of settings with their attributes, a logger
        # with only its name (not the handlers that write to the kernel's streams).
        if isinstance(held, dict):
            for item in _pickled_parts(value):
                self.visit_value(item, via)

    def visit_class(self, cls: type, via: str) -> None:
        label = f"{via} -> {cls.__qualname__}"
        for base in cls.__bases__:
            if base is not object:
                self.visit(base, label)
        for member in vars(cls).values():
            if isinstance(member, (types.FunctionType, staticmethod, classmethod, property)):
                self.visit(member, label)

    def visit_function(self, func: types.FunctionType, via: str) -> None:
        label = via if via.endswith(func.__qualname__) else f"{via} -> {func.__qualname__}"
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None:
            self.visit(wrapped, label)
        globals_ = func.__globals__
        for code in _code_objects(func.__code__):
            for module, name in _imports(code):
                if self.local_dir and is_local_module(module, self.local_dir):
                    # Imported inside the body, a local module still runs its own imports.
                    self.visit_local_module(module, label)
                else:
                    self.use(module, f"{label}: import {module}")
            for name in _global_names(code):
                if name in globals_:
                    self.visit(globals_[name], f"{label}: {name}")
                elif not hasattr(builtins, name):
                    logger.debug("%s uses %s, not defined yet", label, name)
        for cell in func.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell: the variable is not assigned yet
                continue
            self.visit(value, f"{label}: closure")
        for value in (*(func.__defaults__ or ()), *(func.__kwdefaults__ or {}).values()):
            self.visit_value(value, f"{label}: default")


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _imports(code: types.CodeType) -> Iterable[tuple[str, str]]:
    """(module, bound name) for each absolute import in the bytecode."""
    instructions = list(dis.get_instructions(code))
    current = None
    for i, ins in enumerate(instructions):
        if ins.opname == "IMPORT_NAME":
            level = instructions[i - 2].argval if i >= 2 and instructions[i - 2].opname == \
                "LOAD_CONST" else 0
            current = None if level else ins.argval
            if current:
                yield current, current
        elif ins.opname == "IMPORT_FROM" and current:
            yield f"{current}.{ins.argval}", ins.argval


def _global_names(code: types.CodeType) -> Iterable[str]:
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            yield ins.argval


def function_needs(func: Callable, *, local_dir: str | None = None) -> list[Need]:
    """The third-party modules `func` needs on a worker, each with its distribution."""
    walker = _Walker(local_dir)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) \
        or type(func).__name__
    if isinstance(func, types.FunctionType) and not walker.is_user_code(func):
        walker.use(func.__module__, name)   # e.g. %fc_map math.sqrt-like library functions
    elif isinstance(func, types.FunctionType):
        walker.seen.add(id(func))
        walker.visit_function(func, name)
    elif callable(func) and not isinstance(func, (types.BuiltinFunctionType, type)) \
            and walker.is_user_code(type(func)):
        walker.visit(type(func), name)
        walker.visit_value(func, name)
    else:
        walker.visit(func, name)
    # `import google.cloud.storage` says more than `import google`; keep the specific one.
    modules = sorted(walker.uses)
    needs = []
    for module in modules:
        if any(other.startswith(module + ".") for other in modules):
            continue
        if is_local_module(module, local_dir):
            continue
        owner = module_distribution(module)
        needs.append(Need(module, walker.uses[module], owner.name))
    return needs


# ------------------------------------------------------------------ what a runtime has
def _closure(requirements: Iterable[Requirement], env: dict[str, str]) -> set[str]:
    """The named distributions plus their dependencies (with the extras asked for),
    as far as this interpreter's metadata knows them."""
    wanted = {(canonicalize_name(r.name), frozenset(r.extras)) for r in requirements}
    return set(_closure_cached(tuple(sorted(wanted, key=lambda w: (w[0], sorted(w[1])))),
                               tuple(sorted(env.items()))))


@functools.lru_cache(maxsize=32)
def _closure_cached(wanted: tuple[tuple[str, frozenset[str]], ...],
                    env_items: tuple) -> frozenset[str]:
    import importlib.metadata as md

    env = dict(env_items)
    todo = list(wanted)
    have: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        have.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None:
                if not any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                    continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return frozenset(have)


def runtime_distributions(runtime: Any, *, backend: str) -> tuple[set[str] | None, str]:
    """(distributions a worker has, how to name that runtime); None means anything goes.

    With a built runtime whose manifest lists what was installed, that list is
    the truth; otherwise its requirement lines plus their dependencies. With
    no runtime: on localhost the kernel's own interpreter (nothing can be
    missing); on FC Lithops' packages plus FC's preinstalled ones.
    """
    if runtime is None:
        if backend == "localhost":
            return None, "this kernel's Python"
        python = limits.python_version()
        base = [*lithops_worker_requirements("aliyun_fc"), *FC_BUILTIN_DISTRIBUTIONS.get(python, ())]
        env = target_environment("aliyun_fc", python)
        return _closure([Requirement(line) for line in base], env), \
            "the default Function Compute runtime"
    python = getattr(runtime, "python", "") or limits.python_version()
    target = getattr(runtime, "target", "local")
    env = target_environment("aliyun_fc" if target == "fc" else "localhost", python)
    declared = []
    for line in getattr(runtime, "requirements", ()) or ():
        try:
            declared.append(Requirement(line))
        except InvalidRequirement:
            continue
    if target == "fc":
        declared.extend(Requirement(name) for name in FC_BUILTIN_DISTRIBUTIONS.get(python, ()))
    have = _closure(declared, env)
    manifest = getattr(runtime, "manifest", None) or {}
    have |= {canonicalize_name(row[0]) for row in manifest.get("sizes", ()) if row}
    return have, f"runtime {getattr(runtime, 'name', '?')!r}"


def check_function(func: Callable, runtime: Any = None, *, backend: str = "localhost",
                   local_dir: str | None = None, func_label: str | None = None) -> list[Need]:
    """Raise InputProblem when `func` needs a module its runtime does not install.

    Returns the needs it checked (for logging and tests). `runtime` is a
    RuntimeEntry (or None: the backend's default runtime as it really is).
    """
    have, described = runtime_distributions(runtime, backend=backend)
    if have is None:
        return []
    needs = function_needs(func, local_dir=local_dir)
    label = func_label or getattr(func, "__name__", "FUNC")
    for need in needs:
        if need.distribution is None:
            logger.debug("%s needs %s, which no installed distribution provides", label,
                         need.module)
            continue
        if need.distribution in have:
            continue
        top = need.module.split(".")[0]
        name = getattr(runtime, "name", None)
        fix = (f"add {need.distribution} to %%fc_runtime {name}" if name else
               f"declare a runtime with %%fc_runtime NAME and add {need.distribution} to it")
        raise InputProblem(
            f"{label} needs module {top!r} (via {need.via}) from distribution "
            f"{need.distribution}, which {described} does not install; {fix}")
    return needs
