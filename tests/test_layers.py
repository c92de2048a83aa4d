"""The house's layers, checked: nothing imports upward, only backends import Lithops,
the sandbox stands apart. Read from the source with `ast`, so a lazy import
inside a function counts as much as one at the top."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fc_magic"

#: Highest first. A module may import its own layer and any layer below it.
LAYERS = (
    ("fc_magic", "fc_magic.cli"),
    ("fc_magic.magics",),
    ("fc_magic.views", "fc_magic.notebooks"),
    ("fc_magic.engine", "fc_magic.retry", "fc_magic.background"),
    ("fc_magic.preflight", "fc_magic.runtime"),
    ("fc_magic.requirements",),
    ("fc_magic.capture", "fc_magic.backends"),
    ("fc_magic.inputs", "fc_magic.progress", "fc_magic.results", "fc_magic.pricing",
     "fc_magic.setting", "fc_magic.tracebacks", "fc_magic.objects"),
    ("fc_magic.limits", "fc_magic.errors", "fc_magic.redact", "fc_magic.ansi",
     "fc_magic.digest", "fc_magic.object_handle"),
)
#: The stand-in for Alibaba Cloud reads Function Compute's facts and nothing else of ours.
SANDBOX = "fc_magic.sandbox"
SANDBOX_MAY_IMPORT = ("fc_magic.limits",)
#: The only place that talks to Lithops.
LITHOPS_HOME = "fc_magic.backends"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the import statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if node.module:  # `from .. import x` names a package only to reach x
                found.add(stem)
            # `from . import views` imports a module, not a name
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """Index of the layer holding ``module`` (0 highest), by its longest matching prefix."""
    best = None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            # the root package names only its own __init__, not everything below it
            hit = module == prefix if prefix == "fc_magic" else _within(module, prefix)
            if hit and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every broken contract in an import graph, one line each."""
    known = set(graph)
    found = []
    for module, imported in sorted(graph.items()):
        ours = {m for m in imported if m in known}
        if _within(module, SANDBOX):
            for target in sorted(ours):
                if not _within(target, SANDBOX) and target not in SANDBOX_MAY_IMPORT:
                    found.append(f"{module} (the sandbox) imports product module {target}")
            continue
        if any(m == "lithops" or m.startswith("lithops.") for m in imported) \
                and not _within(module, LITHOPS_HOME):
            found.append(f"{module} imports lithops outside {LITHOPS_HOME}")
        mine = layer_of(module)
        if mine is None:
            found.append(f"{module} is in no layer; add it to LAYERS")
            continue
        for target in sorted(ours):
            theirs = layer_of(target)
            if theirs is not None and theirs < mine and not _within(target, SANDBOX):
                found.append(f"{module} imports {target}, a higher layer")
    return found


def test_the_package_keeps_its_layers():
    assert violations(import_graph()) == []


@pytest.mark.parametrize("extra, expected", [
    ({"fc_magic.results": {"fc_magic.views"}},
     "fc_magic.results imports fc_magic.views, a higher layer"),
    ({"fc_magic.requirements": {"fc_magic.engine"}},
     "fc_magic.requirements imports fc_magic.engine, a higher layer"),
    ({"fc_magic.engine": {"lithops.wait"}},
     "fc_magic.engine imports lithops outside fc_magic.backends"),
    ({"fc_magic.sandbox.fc": {"fc_magic.requirements"}},
     "fc_magic.sandbox.fc (the sandbox) imports product module fc_magic.requirements"),
    ({"fc_magic.newthing": set()}, "fc_magic.newthing is in no layer; add it to LAYERS"),
])
def test_the_check_catches_a_broken_contract(extra, expected):
    graph = {name: set(imports) for name, imports in import_graph().items()}
    for module, imports in extra.items():
        graph.setdefault(module, set()).update(imports)
    assert expected in violations(graph)


def test_relative_imports_resolve_like_python(tmp_path):
    assert "fc_magic.errors" in imports_of(PACKAGE / "engine.py")
    assert "fc_magic.backends.lithops_fixes" in imports_of(PACKAGE / "backends" / "job.py")
    assert "fc_magic.limits" in imports_of(PACKAGE / "sandbox" / "execution.py")
