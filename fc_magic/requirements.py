"""Turn what a notebook declares and imports into one exact requirement list.

A runtime is only reproducible if its package list is: the user's
`%%fc_runtime` lines, the third-party packages the notebook imports, and the
packages Lithops' worker needs, merged by canonical distribution name, pinned
to what runs in this kernel, sorted, and hashed into a content key. Two cells
that differ only in order, case, spacing or comments give the same key, so
they share one built runtime; any real change gives a new key, hence a new
deploy name (Lithops caches runtime metadata by name).

Plain functions, no IPython. Mistakes raise `RequirementProblem` (an
`InputProblem`) with one line naming the line number and the fix.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import importlib.metadata as md
import inspect
import json
import logging
import os
import re
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from . import limits
from .backends import BACKENDS
from .backends.lithops_facts import fc_handler_digest, lithops_version
from .digest import file_sha256
from .errors import InputProblem
from .limits import FC_BUILTIN_DISTRIBUTIONS, FC_FUNCTION_NAME_MAX, FC_NAME_RE
from .redact import redact

logger = logging.getLogger(__name__)

DECLARED = "declared"
CAPTURED = "captured"
LITHOPS = "lithops"

#: Characters of the content key appended to a runtime name (`my_rt-1a2b3c4d`).
DEPLOY_KEY_CHARS = 8
#: A memory size with the most digits FC accepts; Lithops puts the memory into
#: a hash only, so the name length does not depend on it, but we ask Lithops.
_WIDEST_MEMORY_MB = 32768

#: Distributions that only make sense next to the notebook: never shipped to
#: workers (Lithops itself is copied into the runtime by its own client).
CLIENT_ONLY = frozenset({"ipython", "ipykernel", "ipywidgets", "fc-magic", "lithops"})
CLIENT_ONLY_PREFIXES = ("jupyter",)

class RequirementProblem(InputProblem):
    """A requirement line or runtime name the user must fix; one line."""


@dataclass(frozen=True)
class RequirementEntry:
    """One distribution of a runtime: canonical name, full PEP 508 line, origin."""

    name: str
    spec: str
    source: str


@dataclass(frozen=True)
class RequirementSet:
    """The canonical requirement list of a runtime and what it was resolved for."""

    entries: tuple[RequirementEntry, ...]
    python: str
    lithops_version: str
    backend: str
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The requirements.txt body: one canonical PEP 508 line per distribution."""
        return [e.spec for e in self.entries]

    def user_lines(self) -> list[str]:
        """Declared and captured lines only, without Lithops' own worker packages."""
        return [e.spec for e in self.entries if e.source != LITHOPS]

    @property
    def key(self) -> str:
        """sha256 over (lines, python, lithops version, backend[, FC handler]): the cache and deploy key."""
        fields = {"lines": self.lines(), "python": self.python,
                  "lithops": self.lithops_version, "backend": self.backend}
        if self.backend == "aliyun_fc":  # the package ships fc_magic's handler
            fields["handler"] = fc_handler_digest()
        payload = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def user_names(self) -> list[str]:
        """Canonical names of the declared and captured distributions (not Lithops' own)."""
        return [e.name for e in self.entries if e.source != LITHOPS]

    def names(self) -> set[str]:
        return {e.name for e in self.entries}


# ------------------------------------------------------------------ environment
@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, tuple[str, ...]]:
    """Top-level module -> distributions that install it, names deduplicated.

    What `importlib.metadata.packages_distributions` answers, without its
    check that every file a RECORD lists still exists: that is a stat per
    installed file (15,000 in this project's venv, a third of a second) in
    each fresh kernel's first map, for names the RECORD already gives.
    """
    found: dict[str, set[str]] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        for top in _top_level_names(dist):
            found.setdefault(top, set()).add(name)
    return {mod: tuple(sorted(dists, key=str.lower)) for mod, dists in found.items()}


def _installed_paths(dist: md.Distribution) -> list[str]:
    """The files ``dist`` installed, '/'-separated and relative to its site folder.

    Read from its RECORD as listed (a missing file is not looked for); an
    egg-info install, which has none, the standard library's slower way.
    """
    record = dist.read_text("RECORD")
    if record is None:
        paths = [str(p) for p in dist.files or ()]
    else:
        paths = [row[0] for row in csv.reader(record.splitlines()) if row]
    return [p.replace("\\", "/") for p in paths]


def _top_level_names(dist: md.Distribution) -> set[str]:
    """The importable top-level names ``dist`` declares (top_level.txt) or installs (RECORD)."""
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    names = set()
    for path in _installed_paths(dist):
        top, sep, _rest = path.partition("/")
        name = top if sep else (inspect.getmodulename(top) or top)
        if name and "." not in name:
            names.add(name)
    return names


def refresh_environment() -> None:
    """Forget what was learnt about installed distributions (after a %pip install)."""
    _packages_distributions.cache_clear()
    _installed_version.cache_clear()
    _distribution_layout.cache_clear()


_stamp: tuple = ()


def _refresh_if_changed() -> None:
    """Re-read installed metadata when a folder on sys.path changed (pip adds dist-infos)."""
    global _stamp
    stamp = []
    for folder in sys.path:
        try:
            stamp.append((folder, os.stat(folder or ".").st_mtime_ns))
        except OSError:
            continue
    if tuple(stamp) != _stamp:
        refresh_environment()
        _stamp = tuple(stamp)


@functools.lru_cache(maxsize=1024)
def _installed_version(canonical: str) -> str | None:
    try:
        return md.version(canonical)
    except md.PackageNotFoundError:
        return None


def installed_version(name: str) -> str | None:
    """The version of a distribution installed in this interpreter, or None.

    Found by its name (importlib lists each sys.path folder once), not by
    reading every installed distribution's metadata: a runtime pins a few
    names, the kernel may hold hundreds.
    """
    return _installed_version(canonicalize_name(name))


@dataclass(frozen=True)
class _Layout:
    """What a distribution installs, from its RECORD, as '/'-separated module paths."""

    #: Importable modules: "yaml" (yaml/__init__.py), "six" (six.py), "_cffi_backend" (.so).
    modules: frozenset[str]
    #: Every folder that holds one of its files: "google", "google/protobuf", ...
    folders: frozenset[str]


_MODULE_SUFFIXES = (".py", ".so", ".pyd")


@functools.lru_cache(maxsize=256)
def _distribution_layout(dist_name: str) -> _Layout | None:
    """The modules and folders `dist_name` installed; None when it records no files."""
    try:
        files = _installed_paths(md.distribution(dist_name))
    except md.PackageNotFoundError:
        return None
    if not files:
        return None
    modules: set[str] = set()
    folders: set[str] = set()
    for path in files:
        if path.startswith("../") or ".dist-info/" in path or ".egg-info/" in path:
            continue   # scripts and data outside site-packages, and metadata
        folder, _, base = path.rpartition("/")
        parts = folder.split("/") if folder else []
        folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        if base.endswith(_MODULE_SUFFIXES):
            # "x.cpython-312-x86_64-linux-gnu.so" is module x, as "x.py" is.
            stem = base.split(".", 1)[0]
            if stem == "__init__":
                if folder:
                    modules.add(folder)
            else:
                modules.add(f"{folder}/{stem}" if folder else stem)
    return _Layout(frozenset(modules), frozenset(folders))


def is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def is_client_only(dist_name: str) -> bool:
    name = canonicalize_name(dist_name)
    return name in CLIENT_ONLY or name.startswith(CLIENT_ONLY_PREFIXES)


def is_local_module(module: str, local_dir: str | None) -> bool:
    """A `.py` file or package next to the notebook: Lithops ships those itself."""
    if not local_dir:
        return False
    top = module.split(".")[0]
    base = os.path.join(local_dir, top)
    return (os.path.isfile(base + ".py")
            or os.path.isfile(os.path.join(base, "__init__.py")))


# ------------------------------------------------------------------ Lithops' needs
def lithops_worker_requirements(backend: str) -> list[str]:
    """The packages a Lithops worker needs on `backend`, from Lithops' own source.

    aliyun_fc: the list Lithops installs into its zip runtime
    (`aliyun_fc.config.REQUIREMENTS_FILE`). Everything else that worker imports
    comes from FC's preinstalled packages (requests, oss2). localhost: a bare
    venv has no such platform packages, so the worker also gets those of FC's
    preinstalled distributions that Lithops' worker modules import.
    """
    if backend not in BACKENDS:
        raise RequirementProblem(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    return list(_worker_requirements(backend))


@functools.lru_cache(maxsize=4)
def _worker_requirements(backend: str) -> tuple[str, ...]:
    from .backends.lithops_facts import fc_worker_requirements

    lines = {canonical_line(Requirement(line)) for line in fc_worker_requirements()}
    if backend == "localhost":
        builtins = {d for dists in FC_BUILTIN_DISTRIBUTIONS.values() for d in dists}
        lines.update(d for d in _lithops_worker_imports() if d in builtins)
    return tuple(sorted(lines))


def _lithops_worker_imports() -> set[str]:
    """Distributions imported by Lithops' worker package (read, not imported)."""
    from .capture import imported_modules

    from .backends.lithops_facts import worker_sources

    report = imported_modules(worker_sources(), transform=lambda s: s)
    dists = set()
    # Guarded imports (numpy, psutil) are extras the worker copes without.
    for module in report.modules - report.optional:
        if is_stdlib(module):
            continue
        found = module_distribution(module)
        if found.name and not is_client_only(found.name):
            dists.add(found.name)
    return dists


# ------------------------------------------------------------------ names
def max_runtime_name_length() -> int:
    """Longest NAME whose Lithops function name `lithops-worker-NAME-KEY8-v..-hash` fits FC."""
    from .backends.lithops_facts import fc_function_name

    probe = fc_function_name("-" + "0" * DEPLOY_KEY_CHARS, _WIDEST_MEMORY_MB)
    return FC_FUNCTION_NAME_MAX - len(probe)


def is_runtime_name(name: object) -> bool:
    """Whether ``name`` follows the runtime-name rule (characters only, not the length)."""
    return isinstance(name, str) and FC_NAME_RE.fullmatch(name) is not None


def check_runtime_name(name: str) -> str:
    """Return NAME if Function Compute and Lithops can use it, else say why and the limit."""
    limit = max_runtime_name_length()
    if not name:
        raise RequirementProblem("a runtime NAME is required, e.g. %%fc_runtime my_rt")
    if not is_runtime_name(name):
        raise RequirementProblem(
            f"runtime name {name!r} is not valid: use letters, digits, '_' and '-', "
            f"starting with a letter or '_' (at most {limit} characters), e.g. my_rt")
    if len(name) > limit:
        raise RequirementProblem(
            f"runtime name {name!r} has {len(name)} characters; at most {limit} fit, because "
            f"Lithops names the function 'lithops-worker-{{NAME}}-{{key8}}-v{{version}}-{{hash}}' "
            f"and Function Compute allows {FC_FUNCTION_NAME_MAX}; choose a shorter name")
    return name


# ------------------------------------------------------------------ modules -> distributions
@dataclass(frozen=True)
class ModuleOwner:
    """Which distribution provides a module, and why when there was a choice."""

    module: str
    name: str | None            # canonical distribution name, None when none is installed
    candidates: tuple[str, ...] = ()
    note: str | None = None
    #: When `name` is None: the dotted name no installed distribution provides
    #: ("google.colab" for `from google.colab import files`).
    missing: str | None = None


def module_distribution(module: str) -> ModuleOwner:
    """Map an imported (dotted) module to the installed distribution that provides it.

    Several distributions can install the same top-level name (namespace
    packages such as `google`, or a stray `tests` folder), so the dotted name
    is followed down the distributions' file lists (their RECORD, through
    `importlib.metadata`) to the deepest module or folder one of them
    installs. A module there is the answer (the rest of the name is inside
    it); a folder that is only a namespace portion, with more name below it
    that nobody installs, means no installed distribution provides the module
    (`google.colab` beside google-auth and protobuf): the answer is None and
    `missing` names it, never a guess. A choice between several distributions
    that install the same module is made by name order and explained in `note`.
    """
    parts = module.split(".")
    owners = _packages_distributions().get(parts[0], ())
    canon = sorted({canonicalize_name(d) for d in owners})
    if not canon:
        return ModuleOwner(module, None, missing=parts[0])
    by_canon = {canonicalize_name(d): d for d in owners}
    layouts = {c: _distribution_layout(by_canon[c]) for c in canon}
    for depth in range(len(parts), 0, -1):
        path = "/".join(parts[:depth])
        as_module = [c for c in canon if layouts[c] and path in layouts[c].modules]
        as_folder = [c for c in canon if layouts[c] and path in layouts[c].folders]
        if as_module:
            return _chosen(module, canon, as_module, f"it installs {path}")
        if as_folder:
            if depth < len(parts):
                # A namespace portion: `parts[depth]` would have to be a module or
                # folder below it, and no installed distribution has one.
                return ModuleOwner(module, None, tuple(canon),
                                   missing=".".join(parts[:depth + 1]))
            return _chosen(module, canon, as_folder, f"it installs files under {path}/")
    # No file list mentions the module (editable installs, eggs): trust the
    # top-level names the distributions declare.
    return _chosen(module, canon, canon, "all of them declare it")


def _chosen(module: str, canon: list[str], having: list[str], reason: str) -> ModuleOwner:
    """The owner among `having`; a note only when more than one distribution could be it."""
    if len(having) == 1:
        return ModuleOwner(module, having[0], tuple(canon))
    chosen = having[0]
    others = [c for c in canon if c != chosen]
    note = (f"module {module!r} is installed by several distributions "
            f"({', '.join(canon)}); chose {chosen}, first in name order, because {reason} "
            f"as the others do (not {', '.join(others)}); declare the one you need "
            f"in %%fc_runtime")
    return ModuleOwner(module, chosen, tuple(canon), note)


# ------------------------------------------------------------------ parsing
def canonical_line(req: Requirement) -> str:
    """One deterministic PEP 508 line: canonical name, sorted extras and specifiers."""
    line = canonicalize_name(req.name)
    if req.extras:
        line += "[" + ",".join(sorted(canonicalize_name(e) for e in req.extras)) + "]"
    if req.url:
        line += f" @ {req.url}"
    elif req.specifier:
        line += ",".join(sorted(str(s) for s in req.specifier))
    if req.marker is not None:
        line += ("; " if not req.url else " ; ") + str(req.marker)
    return line


_COMMENT_RE = re.compile(r"(^|\s)#.*$")


def parse_declared(text: str) -> list[tuple[int, str, Requirement]]:
    """Parse a `%%fc_runtime` body: (line number, text, Requirement) per requirement."""
    parsed = []
    # Numbered as an editor numbers them: str.splitlines() would also break
    # at form feeds and other separators, and name the wrong line.
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text or ""), start=1):
        line = _COMMENT_RE.sub("", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            raise RequirementProblem(
                f"line {number}: {raw.strip()!r} is a pip option, not a requirement; "
                f"write one PEP 508 requirement per line (e.g. numpy>=1.26)")
        if "${" in line:
            # pip and uv fill ${NAME} in from the environment: a line could send a
            # secret of this kernel to any host (and print it).
            raise RequirementProblem(
                f"line {number}: {raw.strip()!r} contains ${{...}}, which the installer "
                f"would fill in from the environment; write the value itself")
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            raise RequirementProblem(
                f"line {number}: {raw.strip()!r} is not a valid requirement ({reason}); "
                f"write e.g. numpy>=1.26 or scikit-learn==1.5.2") from None
        if req.url:
            req.url = pinned_url(req.url, f"line {number}: {redact(raw.strip())!r}")
        parsed.append((number, raw.strip(), req))
    return parsed


_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")


def pinned_url(url: str, where: str) -> str:
    """A URL requirement whose content is fixed by its text, or a `RequirementProblem`.

    The cache key is the requirement text, so what a URL names must not change
    while the text stays the same: a download needs its ``#sha256=`` (which the
    installer then verifies), a VCS URL a full commit id; a local file gets its
    sha256 added here, so editing the file is a new build.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    fragment = urllib.parse.parse_qs(parts.fragment)
    if scheme in ("http", "https"):
        digest = (fragment.get("sha256") or [""])[0].lower()
        if not _SHA256_RE.fullmatch(digest):
            raise RequirementProblem(
                f"{where}: a download URL needs its file's hash, because the file behind a "
                f"URL can change while the cell stays the same; append #sha256=<hex> "
                f"(sha256sum FILE)")
        return url
    if scheme.startswith(_VCS_PREFIXES):
        path = parts.path
        rev = path.rsplit("@", 1)[1] if "@" in path.rsplit("/", 1)[-1] else ""
        if not _COMMIT_RE.fullmatch(rev.lower()):
            raise RequirementProblem(
                f"{where}: a VCS URL needs a full commit id, because a branch or tag can "
                f"move while the cell stays the same; write ...repo.git@<40-hex commit>")
        return url
    if scheme in ("file", ""):
        return _hashed_file_url(url, parts, fragment, where)
    raise RequirementProblem(f"{where}: URL scheme {parts.scheme!r} is not supported; use "
                             f"https:// with #sha256=, git+https:// with a commit, or file://")


def _hashed_file_url(url: str, parts, fragment: dict, where: str) -> str:
    path = urllib.request.url2pathname(parts.path) if parts.scheme else url.split("#")[0]
    if os.path.isdir(path):
        raise RequirementProblem(
            f"{where}: a folder can change while the cell stays the same; build a wheel "
            f"(pip wheel {path} -w DIR) and name that file")
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise RequirementProblem(f"{where}: cannot read {path} ({exc.strerror}); "
                                 f"check the path") from None
    declared = (fragment.get("sha256") or [""])[0].lower()
    if declared and declared != digest:
        raise RequirementProblem(f"{where}: the file's sha256 is {digest}, not the "
                                 f"#sha256= of the line; fix the hash or the file")
    fragment["sha256"] = [digest]
    query = urllib.parse.urlencode({k: v[0] for k, v in sorted(fragment.items())}, safe="/")
    return urllib.parse.urlunsplit(("file", "", os.path.abspath(path) if not parts.scheme
                                    else parts.path, "", query))


def target_environment(backend: str, python: str) -> dict[str, str]:
    """Marker environment of the workers: the target Python, and Linux x86_64 on FC."""
    env = dict(default_environment())
    env["python_version"] = python
    if not env.get("python_full_version", "").startswith(python + "."):
        env["python_full_version"] = python + ".0"
    if backend == "aliyun_fc":
        env.update(sys_platform="linux", platform_system="Linux", os_name="posix",
                   platform_machine="x86_64", implementation_name="cpython",
                   platform_python_implementation="CPython")
    env["extra"] = ""
    return env


# ------------------------------------------------------------------ merging
@dataclass
class _Pending:
    req: Requirement
    source: str
    origin: str                 # "line 3" / "import sklearn" / "Lithops worker"
    notes: list[str] = field(default_factory=list)


def _merge_declared(existing: _Pending, new: Requirement, origin: str) -> None:
    """Two declared lines for one distribution: both constraints must hold."""
    old = existing.req
    if old.url or new.url:
        if str(old.url) != str(new.url) or new.specifier or old.specifier:
            raise RequirementProblem(
                f"{origin}: {canonicalize_name(new.name)} is already declared on "
                f"{existing.origin} differently; keep one line per package")
        return
    merged = Requirement(canonical_line(old))
    merged.extras = set(old.extras) | set(new.extras)
    merged.specifier = SpecifierSet(str(old.specifier)) & SpecifierSet(str(new.specifier))
    pins = [s.version for s in merged.specifier if s.operator in ("==", "===")]
    for pin in pins:
        if "*" not in pin and not merged.specifier.contains(pin, prereleases=True):
            raise RequirementProblem(
                f"{origin}: {canonicalize_name(new.name)}{new.specifier} contradicts "
                f"{existing.origin} ({old.specifier}); keep one line per package")
    existing.req = merged
    existing.origin = f"{existing.origin}+{origin}"


def _pin(req: Requirement) -> Requirement:
    version = installed_version(req.name)
    if req.url or req.specifier or version is None:
        return req
    pinned = Requirement(canonical_line(req))
    pinned.specifier = SpecifierSet(f"=={version}")
    return pinned


def resolve_requirements(declared: str, captured_modules: Iterable[str] = (), *,
                         backend: str, python: str | None = None, pin: bool = True,
                         local_dir: str | None = None,
                         worker_packages: bool = True) -> RequirementSet:
    """The canonical requirement list for a runtime.

    `declared` is the `%%fc_runtime` body; `captured_modules` the modules the
    notebook imports (dotted names). Declared lines win over captured packages
    (a disagreement with the installed version becomes a warning); Lithops'
    worker packages are added unless the user named them. With `pin`, any
    requirement without a version is pinned to the version installed here, so
    workers run what the notebook ran. `worker_packages=False` leaves out
    Lithops' own packages (for a requirements.txt of the notebook alone).
    """
    if backend not in BACKENDS:
        raise RequirementProblem(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    python = python or limits.python_version()
    if backend == "aliyun_fc":
        problem = limits.python_problem(python)
        if problem:
            raise RequirementProblem(problem)
    env = target_environment(backend, python)
    # A `%pip install` earlier in the session changes what is installed.
    _refresh_if_changed()
    warnings: list[str] = []
    pending: dict[str, _Pending] = {}

    for number, text, req in parse_declared(declared):
        origin = f"line {number}"
        if req.marker is not None and not req.marker.evaluate(env):
            warnings.append(f"{origin}: {text!r} does not apply to Python {python} on "
                            f"{backend}; skipped")
            continue
        req.marker = None
        name = canonicalize_name(req.name)
        if name in pending:
            _merge_declared(pending[name], req, origin)
        else:
            pending[name] = _Pending(req, DECLARED, origin)

    captured = _captured_requirements(captured_modules, local_dir, warnings)
    for name, (req, module) in sorted(captured.items()):
        version = installed_version(name)
        if name in pending:
            declared_req = pending[name].req
            if (version and declared_req.specifier
                    and not declared_req.specifier.contains(version, prereleases=True)):
                warnings.append(
                    f"{name}: {pending[name].origin} asks for {declared_req.specifier} but "
                    f"this kernel imports {module} from {name} {version}; the declared "
                    f"{declared_req.specifier} is used, so results may differ from the notebook's")
            continue
        pending[name] = _Pending(req, CAPTURED, f"import {module}")

    for line in lithops_worker_requirements(backend) if worker_packages else ():
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name not in pending:
            pending[name] = _Pending(req, LITHOPS, "Lithops worker")

    entries = []
    for name in sorted(pending):
        item = pending[name]
        req = _pin(item.req) if pin else item.req
        entries.append(RequirementEntry(name, canonical_line(req), item.source))
    return RequirementSet(tuple(entries), python, lithops_version(), backend,
                          tuple(warnings))


def notebook_requirements(paths: Iterable[str], *, pin: bool = True) -> RequirementSet:
    """What saved notebooks import, as requirements (`fc-magic requirements`).

    Each notebook's own folder is where its local modules live. Raises
    `capture.NotebookProblem` for a missing or unreadable notebook.
    """
    from dataclasses import replace

    from .capture import notebook_capture

    modules: set[str] = set()
    warnings: list[str] = []
    for path in paths:
        report = notebook_capture(path)
        folder = os.path.dirname(os.path.abspath(path))
        modules |= {m for m in report.modules if not is_local_module(m, folder)}
        warnings.extend(report.warnings)
    reqset = resolve_requirements("", modules, backend="localhost", pin=pin,
                                  worker_packages=False)
    return replace(reqset, warnings=(*warnings, *reqset.warnings))


def _captured_requirements(modules: Iterable[str], local_dir: str | None,
                           warnings: list[str]) -> dict[str, tuple[Requirement, str]]:
    """Captured module names -> {distribution: (Requirement, first module)}."""
    names = sorted({m.strip() for m in modules if m and m.strip() and not m.startswith(".")})
    # `import google.cloud.storage` says more than `import google`; keep the most specific.
    specific = [m for m in names if not any(o.startswith(m + ".") for o in names)]
    found: dict[str, tuple[Requirement, str]] = {}
    unresolved: set[str] = set()
    notes: set[str] = set()
    for module in specific:
        if module.split(".")[0] == "__main__" or is_stdlib(module):
            continue
        if is_local_module(module, local_dir) or is_client_only(module.split(".")[0]):
            continue   # by import name too: an editable install may map to nothing
        owner = module_distribution(module)
        if owner.name is None:
            unresolved.add(owner.missing or module.split(".")[0])
            continue
        if is_client_only(owner.name):
            continue
        if owner.note:
            notes.add(owner.note)
        found.setdefault(owner.name, (Requirement(owner.name), module.split(".")[0]))
    warnings.extend(sorted(notes))
    if unresolved:
        warnings.append(
            f"no installed distribution provides {', '.join(sorted(unresolved))}; "
            f"not added (install it here or declare its package in %%fc_runtime)")
    return found


# ------------------------------------------------------------------ display
def requirements_table(reqset: RequirementSet) -> list[tuple[str, str, str]]:
    """Rows (package, version spec, source) for the table the magic shows."""
    rows = []
    for entry in reqset.entries:
        req = Requirement(entry.spec)
        package = entry.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
        if req.url:
            spec = f"@ {req.url}"
        else:
            spec = str(req.specifier) or "any"
        rows.append((package, spec, entry.source))
    return rows


_HEADER = ("package", "version", "source")


def format_table_text(rows: Sequence[tuple[str, str, str]]) -> str:
    """A fixed-width text table (terminals, logs, `jupyter execute`)."""
    table = [_HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table_html(rows: Sequence[tuple[str, str, str]]) -> str:
    """A compact HTML table for notebooks; every cell is escaped."""
    from html import escape

    head = "".join(f"<th style='text-align:left'>{escape(h)}</th>" for h in _HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'><code>{escape(c)}</code></td>"
                         if i < 2 else f"<td style='text-align:left'>{escape(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return (f"<table class='fc-magic-requirements'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")
