"""The local target: a venv per content key for Lithops' localhost backend.

The venv uses the kernel's own Python (same X.Y, as Lithops requires) and
holds only the requirement list, Lithops' worker packages included; Lithops
copies itself next to its runner, so the venv needs no Lithops. It is created
without system site-packages, so a package the kernel has but the runtime
does not is not importable in a task, exactly as on Function Compute.

The venv is built in a temporary folder and renamed into the cache; venv
scripts carry absolute paths in their ``#!`` lines and activate scripts, so
those are rewritten to the final path before the rename.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Callable

from .. import limits
from ..inputs import InputProblem
from . import installer as inst
from .sizes import folder_table

VENV = "venv"


def interpreter(venv: str) -> str:
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def site_packages(venv: str) -> str:
    if os.name == "nt":
        return os.path.join(venv, "Lib", "site-packages")
    lib = os.path.join(venv, "lib")
    for name in sorted(os.listdir(lib)):
        if name.startswith("python"):
            return os.path.join(lib, name, "site-packages")
    raise FileNotFoundError(f"no site-packages under {lib}")


def check_python(python: str) -> None:
    kernel = limits.python_version()
    if python != kernel:
        raise InputProblem(f"a local runtime uses the kernel's Python {kernel}, "
                           f"but the requirements were resolved for Python {python}; "
                           f"resolve them again for {kernel}")


def build(build_dir: str, req_file: str, *, installer: str, log: inst.CommandLog,
          step: Callable[[str], None], final_dir: str) -> dict:
    """Create and fill the venv in ``build_dir``; return the manifest's target part."""
    venv = os.path.join(build_dir, VENV)
    env = inst.installer_env(installer)
    base_python = sys.executable
    step(f"create venv with Python {platform.python_version()}")
    if installer == "uv":
        uv = inst.find_uv()
        inst.run([uv, "venv", "--no-project", "--no-config", "--python", base_python, venv],
                 cwd=build_dir, env=env, log=log, what="creating the venv")
        step(f"install requirements ({installer})")
        inst.run([uv, "pip", "install", "--no-config", "--python", interpreter(venv),
                  "-r", req_file, *inst.pip_sources().uv_args()],
                 cwd=build_dir, env=env, log=log, what="installing the requirements")
    else:
        # No system site-packages: the kernel's own packages must stay invisible.
        inst.run([base_python, "-m", "venv", venv], cwd=build_dir, env=env, log=log,
                 what="creating the venv")
        step(f"install requirements ({installer})")
        inst.run([interpreter(venv), "-m", "pip", "install", "--no-compile",
                  "--no-input", "-r", req_file],
                 cwd=build_dir, env=env, log=log, what="installing the requirements")
    step("check and publish")
    _relocate(venv, build_dir, final_dir)
    site = site_packages(venv)
    rows = folder_table(site)
    check = {os.path.relpath(os.path.join(venv, "pyvenv.cfg"), build_dir):
             os.path.getsize(os.path.join(venv, "pyvenv.cfg")),
             os.path.relpath(interpreter(venv), build_dir): None}
    for name in sorted(os.listdir(site)):
        meta = os.path.join(site, name, "METADATA")
        if name.endswith(".dist-info") and os.path.exists(meta):
            check[os.path.relpath(meta, build_dir)] = os.path.getsize(meta)
    return {
        "interpreter_rel": os.path.relpath(interpreter(venv), build_dir),
        "python_full": platform.python_version(),
        "base_python": base_python,
        "check_files": check,
        "sizes": [[r.name, r.unpacked_bytes, None] for r in rows],
        "total_bytes": sum(r.unpacked_bytes for r in rows),
    }


def _relocate(venv: str, old: str, new: str) -> None:
    """Rewrite absolute paths of the temporary folder in the venv's scripts."""
    old_b, new_b = old.encode(), new.encode()
    bin_dir = os.path.dirname(interpreter(venv))
    for name in os.listdir(bin_dir):
        path = os.path.join(bin_dir, name)
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 1 << 20:
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        if old_b in data and b"\0" not in data:
            with open(path, "wb") as fh:
                fh.write(data.replace(old_b, new_b))
