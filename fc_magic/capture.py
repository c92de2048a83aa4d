"""Find the modules a notebook imports, from the live kernel or a saved `.ipynb`.

Workers only have what their runtime installs, so every import the notebook
executed has to be known before a runtime is built. Cells are IPython, not
Python: `%pip`, `!ls`, `%%time` and `x?` are rewritten with IPython's own
transformer first, then parsed with `ast` (never executed). Imports are found
wherever they are: module level, functions, classes, `if` and `try` blocks,
`importlib.import_module("x")` and `__import__("x")` with a literal name.
An import guarded by `except ImportError` whose module is not installed here
is optional and left out. A cell that does not parse is skipped with a warning
naming it.

Plain functions; IPython is imported only to get its transformer when the
caller (the CLI) has no shell of its own.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

logger = logging.getLogger(__name__)

#: Cell and line magics whose argument is Python that runs in the kernel.
PYTHON_MAGICS = frozenset({"time", "timeit", "prun", "capture", "debug"})
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass
class CaptureReport:
    """What the cells import: dotted module names and what could not be read."""

    #: Dotted names as specific as the source says: `import a.b` -> "a.b",
    #: `from a.b import c` -> "a.b.c" (c may be a module of a namespace package).
    modules: set[str] = field(default_factory=set)
    #: Imports only ever made under `except ImportError` (installed here or not).
    optional: set[str] = field(default_factory=set)
    #: Those of them not installed here: left out of `modules`.
    skipped_optional: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    cells: int = 0

    @property
    def top_level(self) -> set[str]:
        return {m.split(".")[0] for m in self.modules}


def ipython_transform() -> Callable[[str], str]:
    """IPython's cell transformer (the same one a shell uses), without a shell."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell


def _handler_catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    for node in names:
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        if name in _IMPORT_ERRORS:
            return True
    return False


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


class _ImportVisitor(ast.NodeVisitor):
    """Collects (module, optional) pairs and nested Python of known magics."""

    def __init__(self) -> None:
        self.found: list[tuple[str, bool]] = []
        self.nested: list[tuple[str, int]] = []
        self.dynamic: list[int] = []
        self._guarded = 0

    def _add(self, name: str) -> None:
        if name and not name.startswith("."):
            self.found.append((name, self._guarded > 0))

    def visit_Try(self, node) -> None:
        guarded = any(_handler_catches_import_error(h) for h in node.handlers)
        self._guarded += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._guarded -= guarded
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return  # relative imports are the notebook's own package
        for alias in node.names:
            self._add(node.module if alias.name == "*" else f"{node.module}.{alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args:
            literal = _literal(node.args[0])
            if literal is None:
                self.dynamic.append(node.lineno)
            else:
                self._add(literal)
        elif (name in ("run_cell_magic", "run_line_magic") and len(node.args) >= 2
              and _literal(node.args[0]) in PYTHON_MAGICS):
            # `%%time` / `%time` cells arrive as strings: their Python is an argument.
            body = _literal(node.args[-1]) if name == "run_cell_magic" else _literal(node.args[1])
            if body:
                self.nested.append((body, node.lineno))
        self.generic_visit(node)


def _parse_quietly(code: str) -> ast.Module:
    """`ast.parse` without the user's SyntaxWarnings on fc-magic's stderr.

    Parsing a cell warns about what is the user's business (an invalid escape
    such as "\\d" in a regex: SyntaxWarning on 3.12, DeprecationWarning on 3.10),
    and the kernel already told them when the cell ran.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(code)


def _scan(source: str, label: str, transform, report: CaptureReport,
          found: list[tuple[str, bool]], depth: int = 0) -> None:
    try:
        code = transform(source) if transform else source
    except Exception as exc:  # IPython's transformer rejects some malformed input
        report.warnings.append(f"{label} skipped: IPython could not read it ({exc})")
        return
    try:
        tree = _parse_quietly(code)
    except SyntaxError as exc:
        report.warnings.append(f"{label} skipped: invalid syntax at line {exc.lineno} "
                               f"({exc.msg}); its imports are not captured")
        return
    visitor = _ImportVisitor()
    visitor.visit(tree)
    found.extend(visitor.found)
    for line in visitor.dynamic:
        report.warnings.append(f"{label} line {line}: a module imported by a computed "
                               f"name cannot be captured; declare its package in "
                               f"%%fc_runtime")
    if depth < 3:
        for body, _line in visitor.nested:
            _scan(body, label, transform, report, found, depth + 1)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def imported_modules(sources: Iterable[str], transform=None, *,
                     labels: Sequence[str] | None = None) -> CaptureReport:
    """The modules imported by `sources` (cell texts), with warnings per bad cell.

    `transform` turns a cell's IPython syntax into Python (default: IPython's
    TransformerManager; pass `shell.transform_cell` in a kernel, or
    `lambda s: s` for plain Python files). `labels` name the cells in
    warnings (default "cell 1", "cell 2", ...).
    """
    if transform is None:
        transform = ipython_transform()
    report = CaptureReport()
    found: list[tuple[str, bool]] = []
    for index, source in enumerate(sources):
        report.cells += 1
        if not source or not source.strip():
            continue
        label = labels[index] if labels is not None else f"cell {index + 1}"
        _scan(source, label, transform, report, found)
    required = {name for name, optional in found if not optional}
    optional = {name for name, optional in found if optional} - required
    report.optional = optional
    for name in optional:
        if _installed(name):
            required.add(name)
        else:
            report.skipped_optional.add(name)
    report.modules = required
    return report


class NotebookProblem(ValueError):
    """A notebook file that is missing or cannot be read as a notebook; one line."""


def notebook_sources(path) -> list[str]:
    """The code cells of a saved notebook, in order.

    Format 4 (every notebook written since 2015) is read as the JSON it is:
    importing nbformat costs about a second here (jsonschema compiles URI
    grammars at import), more than capturing a 1,000-cell notebook. Older
    formats go through nbformat, which converts them.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NotebookProblem(f"no such notebook: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            nb = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotebookProblem(f"{path} is not a readable notebook ({reason[:120]})") from None
    if not isinstance(nb, dict) or "nbformat" not in nb:
        raise NotebookProblem(f"{path} is not a notebook (no nbformat version in it)")
    if nb.get("nbformat") != 4:
        nb = _converted(path)
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotebookProblem(f"{path} is not a notebook (it has no list of cells)")
    sources = []
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources


def _converted(path: str) -> dict:
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # unknown versions, broken v3 structures
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotebookProblem(f"{path} is not a readable notebook ({reason[:120]})") from None


def notebook_capture(path) -> CaptureReport:
    """Capture a saved notebook's imports; warnings name the code cell number."""
    sources = notebook_sources(path)
    name = os.path.basename(os.fspath(path))
    labels = [f"{name} code cell {i + 1}" for i in range(len(sources))]
    return imported_modules(sources, labels=labels)


def kernel_sources(shell) -> list[str]:
    """Every cell this shell has executed so far, in order (raw IPython syntax)."""
    history = getattr(shell, "history_manager", None)
    cells = list(getattr(history, "input_hist_raw", None) or shell.user_ns.get("In", []))
    # IPython keeps an empty entry 0 so that In[n] is the n-th cell.
    return cells[1:] if cells and cells[0] == "" else cells


def kernel_capture(shell) -> CaptureReport:
    """Capture the live kernel's imports with the shell's own transformer."""
    sources = kernel_sources(shell)
    labels = [f"In [{i + 1}]" for i in range(len(sources))]
    return imported_modules(sources, transform=shell.transform_cell, labels=labels)
