"""Keep the kernel's installed packages out of tasks that run in a built runtime.

Lithops ships, with every job, the client modules the function references
that the runtime does not report as preinstalled: a function that imports a
package the runtime lacks would still work, with the kernel's copy sent
along (pure Python only; a compiled one breaks on another platform). A
runtime must mean what it says, so every top-level module installed in the
kernel's site-packages goes to Lithops' ``exclude_modules``; modules of the
user's own (files next to the notebook) still travel, which is what that
shipping is for.
"""
from __future__ import annotations

import os
import site
import sys


def _site_dirs() -> list[str]:
    dirs = []
    candidates = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user:
        candidates.append(user)
    candidates += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    for path in candidates:
        if os.path.isdir(path) and path not in dirs:
            dirs.append(path)
    return dirs


def kernel_site_modules() -> list[str]:
    """Top-level module names (and compiled modules' paths) installed in the kernel.

    A directory listing per site folder, no metadata parsing: a few ms.
    """
    names: set[str] = set()
    for folder in _site_dirs():
        for entry in os.scandir(folder):
            name = entry.name
            if name.startswith((".", "_distutils_hack")) or name.endswith(
                    (".dist-info", ".egg-info", ".pth", ".egg-link")) or name == "__pycache__":
                continue
            if entry.is_dir():
                if name.isidentifier():
                    names.add(name)
            elif name.endswith(".py"):
                names.add(name[:-3])
            elif name.endswith((".so", ".pyd")):
                names.add(name.split(".", 1)[0])
                names.add(entry.path)  # Lithops matches compiled modules by path
    return sorted(names)
