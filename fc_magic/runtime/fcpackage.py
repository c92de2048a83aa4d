"""The fc target: a Function Compute code package zip for Lithops' aliyun_fc backend.

Lithops 3.8's own zip build cannot be used: it installs a fixed package list
and ignores the user's requirements, shells out to ``zip``, and leaves the
process in a deleted working directory. This builder installs the
requirement list for FC's Python (the client's X.Y) and platform
(x86_64 manylinux for its glibc, binary wheels only, so nothing is compiled with the
client's interpreter), adds the client's Lithops package and Lithops' Aliyun
handler module at the zip root as ``lithops_entry_point.py`` with fc_magic's
own ``entry_point.py`` around it (FC calls ``entry_point.main``; see
`fc_magic.backends.fc_entry_point`), slims it and
writes it with ``zipfile``. Lithops' ``deploy_runtime`` reads the package
from ``<tempdir>/AliyunRuntimeBuild/<runtime name>.zip``; the deployer copies
`RuntimeEntry.package` there under the entry's deploy name.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import stat
import sys
import zipfile
from typing import Callable, Iterable

from .. import limits
from ..backends.lithops_facts import FC_HANDLER_FILE, fc_worker_requirements
from ..digest import file_sha256
from ..inputs import InputProblem
from . import installer as inst
from .sizes import PackageSize, human, owner_of, owners, table

logger = logging.getLogger(__name__)

PACKAGE = "package.zip"
STAGE = "stage"
HANDLER_MODULE = "entry_point.py"
#: The preload list at the package root (``fc_entry_point.PRELOAD_FILE``, which
#: cannot be imported here: it runs on FC beside Lithops' handler).
PRELOAD_FILE = "fc_magic_preload.json"
#: Lithops' own handler, renamed: fc_magic's ``entry_point.main`` wraps it.
LITHOPS_HANDLER_MODULE = "lithops_entry_point.py"
#: The handler FC is configured with (Lithops' aliyun_fc `_create_function`).
HANDLER = "entry_point.main"
#: glibc of each FC Python runtime's system image (python3.9: Debian 9,
#: python3.10: Debian 10; python3.12 is given Debian 10's 2.28 too, to stay on
#: the safe side). numpy >= 2.3 ships manylinux_2_28 wheels only, so the
#: older manylinux2014 floor would refuse it for no reason on 3.10/3.12.
FC_GLIBC = {"3.9": (2, 24), "3.10": (2, 28), "3.12": (2, 28)}
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


#: glibc minors uv's --python-platform names (x86_64-manylinux_2_17, _2_28, _2_31 ...).
_UV_GLIBC_MINORS = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def uv_platform(python: str) -> str:
    """uv's newest platform name FC's glibc still satisfies (3.9's 2.24 -> 2_17)."""
    _major, top = FC_GLIBC[python]
    minor = max(m for m in _UV_GLIBC_MINORS if m <= top)
    return f"x86_64-manylinux_2_{minor}"


def pip_platforms(python: str) -> list[str]:
    """Every manylinux tag FC's glibc accepts: pip does not expand one tag to older ones."""
    _major, top = FC_GLIBC[python]
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(top, 16, -1)]
    return tags + [f"{name}_x86_64" for name in _LEGACY.values()]
#: Fixed timestamp for every zip member: the same content gives the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: Folder names removed from installed packages (never top-level packages).
SLIM_DIRS = {"__pycache__", "tests", "test", "testing_data"}
SLIM_SUFFIXES = (".pyc", ".pyo", ".pyi")


def check_python(python: str) -> None:
    problem = limits.python_problem(python)
    if problem:
        raise InputProblem(problem)


def lithops_dir() -> str:
    """The installed Lithops package folder, found without importing Lithops."""
    spec = importlib.util.find_spec("lithops")
    if spec is None or not spec.submodule_search_locations:
        raise InputProblem("Lithops is not installed in this kernel; pip install lithops")
    return list(spec.submodule_search_locations)[0]


def handler_file() -> str:
    return os.path.join(lithops_dir(), "serverless", "backends", "aliyun_fc", HANDLER_MODULE)


def install_command(installer: str, python: str, stage: str, req_file: str) -> list[str]:
    if installer == "uv":
        return [inst.find_uv(), "pip", "install", "--no-config", "--python", sys.executable,
                "--target", stage, "--python-version", python,
                "--python-platform", uv_platform(python), "--only-binary", ":all:",
                "-r", req_file, *inst.pip_sources().uv_args()]
    platforms = [arg for p in pip_platforms(python) for arg in ("--platform", p)]
    return [sys.executable, "-m", "pip", "install", "--no-input", "--no-compile",
            "--target", stage, *platforms, "--python-version", python,
            "--implementation", "cp", "--only-binary=:all:", "-r", req_file]


def slim(stage: str) -> int:
    """Drop what never runs on FC (bytecode, type stubs, test suites, scripts); bytes saved."""
    saved = 0
    for name in os.listdir(stage):  # uv's --target leaves its ".lock" file behind
        path = os.path.join(stage, name)
        if name.startswith(".") and os.path.isfile(path):
            saved += os.lstat(path).st_size
            os.unlink(path)
    bin_dir = os.path.join(stage, "bin")
    if os.path.isdir(bin_dir):
        saved += _tree_size(bin_dir)
        shutil.rmtree(bin_dir)
    for base, dirs, files in os.walk(stage):
        depth = os.path.relpath(base, stage).count(os.sep) + (base != stage)
        for name in list(dirs):
            # A top-level "tests" would be someone's real package; only
            # test folders inside a package are safe to drop.
            if name in SLIM_DIRS and (depth >= 1 or name == "__pycache__"):
                path = os.path.join(base, name)
                saved += _tree_size(path)
                shutil.rmtree(path)
                dirs.remove(name)
        for name in files:
            if name.endswith(SLIM_SUFFIXES):
                path = os.path.join(base, name)
                saved += os.lstat(path).st_size
                os.unlink(path)
    return saved


def _tree_size(path: str) -> int:
    return sum(os.lstat(os.path.join(b, f)).st_size for b, _d, fs in os.walk(path) for f in fs)


def write_zip(stage: str, dest: str) -> list[tuple[str, int, int]]:
    """Zip ``stage`` into ``dest`` deterministically; (path, size, compressed) per file."""
    members = []
    for base, dirs, files in os.walk(stage):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(base, name)
            members.append((os.path.relpath(full, stage).replace(os.sep, "/"), full))
    members.sort()
    out = []
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, full in members:
            st = os.stat(full)
            info = zipfile.ZipInfo(rel, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | (st.st_mode & 0o777)) << 16
            with open(full, "rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        for info in zf.infolist():
            out.append((info.filename, info.file_size, info.compress_size))
    return out


def check_limits(zip_bytes: int, unpacked_bytes: int,
                 rows: list[PackageSize]) -> list[str]:
    """Notes for a package over the inline limit; InputProblem over the hard limits."""
    largest = ", ".join(f"{r.name} {human(r.zipped_bytes)}" for r in rows[:3])
    if zip_bytes > limits.CODE_OSS_MAX_BYTES:
        raise InputProblem(f"the code package is {human(zip_bytes)} zipped, over Function "
                           f"Compute's {human(limits.CODE_OSS_MAX_BYTES)} limit; largest: "
                           f"{largest}; drop or replace the largest packages")
    if unpacked_bytes > limits.UNPACKED_DISK_MAX_BYTES:
        raise InputProblem(f"the code package unpacks to {human(unpacked_bytes)}, over "
                           f"Function Compute's {human(limits.UNPACKED_DISK_MAX_BYTES)} disk; "
                           f"largest: {largest}; drop the largest packages")
    if zip_bytes > limits.CODE_INLINE_MAX_BYTES:
        return [f"the code package is {human(zip_bytes)}, over the "
                f"{human(limits.CODE_INLINE_MAX_BYTES)} inline upload limit: deploy it "
                f"through an OSS code location (largest: {largest})"]
    return []


def preload_modules(owned: dict[str, str], distributions: Iterable[str]) -> list[str]:
    """The importable top-level modules the given distributions install, from their RECORDs.

    What fc_magic's FC initializer imports once per instance
    (`fc_magic.backends.fc_entry_point`): packages and modules with a public
    name, not data folders (``numpy.libs``), scripts or private helpers.
    """
    from packaging.utils import canonicalize_name

    wanted = {canonicalize_name(d) for d in distributions}
    found = set()
    for rel, dist in owned.items():
        if canonicalize_name(dist) not in wanted:
            continue
        top, sep, rest = rel.partition("/")
        if sep:
            name = top if rest == "__init__.py" else ""
        else:
            name = top.split(".", 1)[0] if top.endswith((".py", ".so")) else ""
        if name.isidentifier() and not name.startswith("_"):
            found.add(name)
    return sorted(found)


def handler_modules(owned: dict[str, str]) -> list[str]:
    """What every instance imports before its first task, whatever the user declared.

    The two handlers, Lithops, and the top-level modules of the packages
    Lithops' worker needs (cloudpickle, tblib, psutil, ...). Without their
    bytecode each cold instance compiles Lithops from source: measured
    0.65 s against 0.29 s to import the handler on this machine, more at
    FC's fractional vCPU.
    """
    from packaging.requirements import Requirement

    worker = [Requirement(line).name for line in fc_worker_requirements()]
    own = [name.removesuffix(".py") for name in (HANDLER_MODULE, LITHOPS_HANDLER_MODULE)]
    return sorted({"lithops", *own, *preload_modules(owned, worker)})


def compile_bytecode(stage: str, modules: Iterable[str]) -> None:
    """Ship bytecode for the modules instances import: FC's code folder is read-only.

    Python cannot write ``__pycache__`` there, so without it every instance
    compiles these packages from source before its first task (pandas: seconds
    at FC's fractional vCPU; Lithops itself about 0.4 s). Unchecked-hash pycs, because FC's unzip does not
    keep the source mtimes a timestamp pyc is checked against; the package is
    immutable, so the check is not needed. Compiled by this interpreter, whose
    X.Y is the function's (`check_python`), in a process of its own (compileall
    forks workers, which a kernel's threads make unsafe here).
    """
    import subprocess

    targets = [name if os.path.isdir(os.path.join(stage, name)) else f"{name}.py"
               for name in modules]
    targets = [t for t in targets if os.path.exists(os.path.join(stage, t))]
    if not targets:
        return   # extension modules only: nothing to compile
    # -s: code objects name the package's own paths, not this build folder's.
    done = subprocess.run([sys.executable, "-m", "compileall", "-qq", "-j", "0",
                           "--invalidation-mode", "unchecked-hash", "-s", stage,
                           *(os.path.join(stage, t) for t in targets)],
                          cwd=stage, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, errors="replace")
    if done.returncode:
        # A file this Python cannot compile (a py2 leftover, a template): it is
        # compiled on import as before, so the build goes on.
        logger.debug("compileall exited with %d: %s", done.returncode, done.stderr[-300:])


def build(build_dir: str, req_file: str, *, python: str, installer: str,
          log: inst.CommandLog, step: Callable[[str], None],
          preload: Iterable[str] = ()) -> dict:
    """Fill ``build_dir`` with ``package.zip``; return the manifest's target part.

    ``preload``: the declared distributions whose modules each FC instance
    imports once (`preload_modules`).
    """
    check_python(python)
    stage = os.path.join(build_dir, STAGE)
    os.makedirs(stage)
    step(f"install requirements for FC Python {python} x86_64 ({installer})")
    inst.run(install_command(installer, python, stage, req_file), cwd=build_dir,
             env=inst.installer_env(installer), log=log, what="installing the requirements")

    step("add Lithops and fc_magic's handler around Lithops' Aliyun handler")
    # Lithops' own build warns and keeps a user-installed lithops; the
    # worker must run the client's Lithops, so it always wins here.
    shutil.rmtree(os.path.join(stage, "lithops"), ignore_errors=True)
    shutil.copytree(lithops_dir(), os.path.join(stage, "lithops"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    # fc_magic's handler (credentials from the function's role, none for the
    # user's code, fork-safe OSS connections) around Lithops' own.
    shutil.copyfile(handler_file(), os.path.join(stage, LITHOPS_HANDLER_MODULE))
    shutil.copyfile(FC_HANDLER_FILE, os.path.join(stage, HANDLER_MODULE))

    step("slim")
    saved = slim(stage)
    owned = owners(stage)
    modules = preload_modules(owned, preload)
    with open(os.path.join(stage, PRELOAD_FILE), "w", encoding="utf-8") as fh:
        json.dump({"modules": modules}, fh)
    compiled = sorted(set(modules) | set(handler_modules(owned)))
    step("compile the bytecode of " + ", ".join(compiled))
    compile_bytecode(stage, compiled)

    step("zip")
    package = os.path.join(build_dir, PACKAGE)
    members = write_zip(stage, package)
    rows = table((owner_of(rel, owned), size, packed) for rel, size, packed in members)
    zip_bytes = os.path.getsize(package)
    unpacked = sum(size for _rel, size, _p in members)
    shutil.rmtree(stage)

    step("check Function Compute limits and publish")
    notes = check_limits(zip_bytes, unpacked, rows)
    return {
        "package_rel": PACKAGE,
        "handler": HANDLER,
        "platform": uv_platform(python),
        "check_files": {PACKAGE: zip_bytes},
        "sizes": [[r.name, r.unpacked_bytes, r.zipped_bytes] for r in rows],
        "total_bytes": unpacked,
        "package_bytes": zip_bytes,
        "package_sha256": file_sha256(package),
        "preload": modules,
        "slimmed_bytes": saved,
        "needs_oss_code_location": zip_bytes > limits.CODE_INLINE_MAX_BYTES,
        "notes": notes,
    }
