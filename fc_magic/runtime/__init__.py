"""Build runtimes from a requirement list once, and find them again by content.

`ensure_runtime` is the one entry point: given a name, a resolved
`RequirementSet` (``.lines()``, ``.key``, ``.python``, ``.lithops_version``,
``.backend``, ``.user_lines()``) and a target, it returns a `RuntimeEntry`
from the cache (no subprocess, no network) or builds one under a per-key
lock, publishes it atomically and returns it. While it works it reports plain
`BuildSnapshot`s to ``on_snapshot``; views render them.

Targets: ``"local"`` (a venv for Lithops' localhost backend, see `local`) and
``"fc"`` (a Function Compute code package, see `fcpackage`).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..ansi import strip_ansi
from ..backends import target_for
from ..errors import InputProblem
from ..progress import ERROR, RUNNING, SUCCESS  # one set of status words for maps and builds
from ..redact import redact
from . import cache
from .installer import BuildFailed, CommandLog, choose_installer
from .sizes import PackageSize

logger = logging.getLogger(__name__)

TARGETS = cache.TARGETS
#: Seconds between snapshots carrying only new installer log lines.
LOG_INTERVAL_S = 0.2
LOG_TAIL = 12

__all__ = ["RuntimeEntry", "BuildSnapshot", "BuildFailed", "ensure_runtime", "TARGETS",
           "list_runtimes", "remove_runtime", "gc_runtimes",
           "runtime_by_name", "PackageSize", "Removal"]


@dataclass(frozen=True)
class RuntimeEntry:
    """A built runtime in the cache; what %fc_map needs to use it."""

    name: str
    key: str
    target: str
    deploy_name: str
    path: str
    interpreter: str | None
    package: str | None
    requirements: tuple[str, ...]
    python: str
    manifest: dict

    @property
    def sizes(self) -> list[PackageSize]:
        return [PackageSize(n, u, z) for n, u, z in self.manifest.get("sizes", [])]

    @property
    def total_bytes(self) -> int:
        return int(self.manifest.get("package_bytes") or self.manifest.get("total_bytes") or 0)

    @property
    def created(self) -> str:
        return self.manifest.get("created", "")


@dataclass(frozen=True)
class BuildSnapshot:
    """The state of one build (or cache hit) at one instant; views render only this."""

    name: str
    target: str
    key: str
    steps: tuple[tuple[str, str], ...] = ()   # (label, "running" | "done" | "failed")
    log_tail: tuple[str, ...] = ()
    status: str = RUNNING
    elapsed_s: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    notes: tuple[str, ...] = ()
    sizes: tuple[PackageSize, ...] = ()
    total_bytes: int | None = None
    package_bytes: int | None = None
    deploy_name: str = ""
    #: A team-cache hit: who built it and when ("built by HOST on DATE").
    origin: str = ""

    @property
    def final(self) -> bool:
        return self.status != RUNNING


def map_fields(entry: RuntimeEntry, backend: str) -> dict:
    """What a map on ``backend`` needs from its runtime, as MapRequest fields.

    Refuses a runtime built for the other backend. Lithops would otherwise
    ship the kernel's copy of a pure-Python package the runtime lacks, so
    every module installed in the kernel is excluded from what it ships.
    """
    from .isolation import kernel_site_modules

    if entry.target != target_for(backend):
        raise InputProblem(f"the current runtime {entry.name} was built for {entry.target}, "
                           f"not backend {backend!r}; run its %%fc_runtime {entry.name} "
                           f"cell again")
    if not os.path.exists(entry.interpreter or entry.package or entry.path):
        # Removed by hand or by --remove/--gc of a process that did not see our lease.
        raise InputProblem(f"the runtime {entry.name} ({entry.deploy_name}) is no longer in "
                           f"the cache; run its %%fc_runtime {entry.name} cell again to "
                           f"rebuild it")
    fields = {}
    if entry.target == "fc":
        from ..backends.aliyun_store import machine_id

        root = os.path.dirname(entry.path)
        fields = {"package_key": entry.key, "package_manifest": entry.manifest,
                  "runtime_names": fc_names(root), "machine": machine_id(root)}
    return {"runtime": entry.interpreter or entry.deploy_name, "package": entry.package,
            **fields, "extra_config": {"lithops": {"exclude_modules": kernel_site_modules()}}}


def deploy_name(name: str, key: str) -> str:
    return f"{name}-{key[:8]}"


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _entry(name: str, path: str, manifest: dict) -> RuntimeEntry:
    interp = manifest.get("interpreter_rel")
    pkg = manifest.get("package_rel")
    return RuntimeEntry(
        name=name, key=manifest["key"], target=manifest["target"],
        deploy_name=deploy_name(name, manifest["key"]), path=path,
        interpreter=os.path.join(path, interp) if interp else None,
        package=os.path.join(path, pkg) if pkg else None,
        requirements=tuple(manifest.get("requirements", ())),
        python=manifest.get("python", ""), manifest=manifest)


class _Reporter:
    """Turns build progress into snapshots, throttling log-only updates."""

    def __init__(self, name: str, target: str, key: str,
                 on_snapshot: Callable[[BuildSnapshot], None] | None,
                 clock: Callable[[], float]):
        self.base = BuildSnapshot(name=name, target=target, key=key,
                                  deploy_name=deploy_name(name, key))
        self.notify = on_snapshot or (lambda s: None)
        self.clock = clock
        self.start = clock()
        self.steps: list[list[str]] = []
        self.tail: list[str] = []
        self.notes: list[str] = []
        self.last_emit = 0.0

    def snapshot(self, **changes) -> BuildSnapshot:
        fields = dict(steps=tuple((s, st) for s, st in self.steps),
                      log_tail=tuple(self.tail[-LOG_TAIL:]), notes=tuple(self.notes),
                      elapsed_s=self.clock() - self.start)
        fields.update(changes)
        return replace(self.base, **fields)

    def emit(self, **changes) -> None:
        self.last_emit = self.clock()
        self.notify(self.snapshot(**changes))

    def step(self, label: str) -> None:
        if self.steps and self.steps[-1][1] == RUNNING:
            self.steps[-1][1] = "done"
        self.steps.append([label, RUNNING])
        self.emit()

    def line(self, text: str) -> None:
        self.tail.append(text)
        del self.tail[:-LOG_TAIL]
        if self.clock() - self.last_emit >= LOG_INTERVAL_S:
            self.emit()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish_ok(self, entry: RuntimeEntry, hit: bool) -> None:
        if self.steps and self.steps[-1][1] == RUNNING:
            self.steps[-1][1] = "done"
        m = entry.manifest
        self.emit(status=SUCCESS, cache_hit=hit, sizes=tuple(entry.sizes),
                  total_bytes=m.get("total_bytes"), package_bytes=m.get("package_bytes"),
                  notes=tuple(self.notes) + tuple(m.get("notes", ())))

    def finish_error(self, message: str) -> None:
        if self.steps and self.steps[-1][1] == RUNNING:
            self.steps[-1][1] = "failed"
        self.emit(status=ERROR, error=message)


def ensure_runtime(name: str, requirements, *, target: str, cache_dir: str,
                   rebuild: bool = False,
                   on_snapshot: Callable[[BuildSnapshot], None] | None = None,
                   installer: str = "auto",
                   clock: Callable[[], float] = time.monotonic) -> RuntimeEntry:
    """The runtime for ``requirements`` on ``target``: from the cache, or built now.

    Raises `BuildFailed` (an `InputProblem`) with the installer's relevant
    error line when the build fails; the cache is then left as it was.
    """
    if target not in TARGETS:
        raise InputProblem(f"target {target!r} is unknown; use one of {', '.join(TARGETS)}")
    key = requirements.key
    root = cache.runtimes_root(cache_dir)
    path = cache.entry_dir(root, target, key)
    report = _Reporter(name, target, key, on_snapshot, clock)

    if not rebuild:
        manifest, problem = cache.entry_problem(path, target, key)
        if problem is None:
            # Checked again under the lock: a gc elsewhere may have removed it since.
            with cache.key_lock(root, target, key):
                manifest, problem = cache.entry_problem(path, target, key)
                if problem is None:
                    entry = _use(root, name, path, manifest)
            if problem is None:
                report.finish_ok(entry, hit=True)
                return entry

    _check_python(target, requirements.python)
    chosen = choose_installer(installer)
    cache.reap_dead_builds(root)
    with cache.key_lock(root, target, key):
        manifest, problem = cache.entry_problem(path, target, key)
        hit = problem is None and not rebuild   # built meanwhile by another process
        if not hit:
            if problem not in (None, "absent"):
                warning = (f"the cached runtime {cache.entry_id(target, key)[:16]}… is "
                           f"damaged ({problem}); rebuilding it")
                logger.warning(warning)
                report.note(warning)
            manifest = _build(root, path, name, requirements, target, chosen, report)
        # Leased and named before the lock is released: a gc that takes the lock
        # next sees both, so the build it would otherwise race never vanishes.
        entry = _use(root, name, path, manifest)
    report.finish_ok(entry, hit=hit)
    return entry


def _use(root: str, name: str, path: str, manifest: dict) -> RuntimeEntry:
    """Lease the entry for this process, point ``name`` at it; the caller holds its key lock."""
    cache.take_lease(root, os.path.basename(path))
    cache.set_name(root, name, manifest["target"], manifest["key"])
    return _entry(name, path, manifest)


def _check_python(target: str, python: str) -> None:
    from . import fcpackage, local
    (local.check_python if target == "local" else fcpackage.check_python)(python)


def _build(root: str, path: str, name: str, requirements, target: str, installer: str,
           report: _Reporter) -> dict:
    from . import fcpackage, local

    started = time.monotonic()
    build_dir = cache.new_build_dir(root, target, requirements.key)
    log = CommandLog(on_line=report.line,
                     on_process=lambda pgid: cache.record_installer(build_dir, pgid))
    try:
        lines = list(requirements.lines())
        req_file = os.path.join(build_dir, "requirements.txt")
        with open(req_file, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        if target == "local":
            part = local.build(build_dir, req_file, installer=installer, log=log,
                               step=report.step, final_dir=path)
        else:
            part = fcpackage.build(build_dir, req_file, python=requirements.python,
                                   installer=installer, log=log, step=report.step,
                                   preload=requirements.user_names())
        manifest = {
            "format": cache.FORMAT, "key": requirements.key, "target": target,
            "name": name, "requirements": lines,
            "user_requirements": list(requirements.user_lines()),
            "python": requirements.python, "lithops_version": requirements.lithops_version,
            "backend": requirements.backend, "installer": installer,
            "created": _now_iso(), "build_seconds": round(time.monotonic() - started, 2),
            "built_by": {"pid": os.getpid(), "host": socket.gethostname(),
                         "client_python": platform.python_version()},
            **part,
        }
        cache.write_manifest(build_dir, manifest)
        if os.path.exists(path):      # --rebuild or a damaged entry: swap it out
            cache.discard(path)
        cache.publish(build_dir, path)
    except BaseException as exc:
        cache.discard(build_dir)
        report.finish_error(redact(strip_ansi(str(exc) if isinstance(exc, InputProblem)
                                              else f"{type(exc).__name__}: {exc}")))
        raise
    return manifest


# ----------------------------------------------------------------- listing
@dataclass(frozen=True)
class RuntimeRow:
    """One line of `--list`: a name, or an entry no name uses."""

    name: str | None
    target: str
    key: str
    packages: tuple[str, ...]
    size_bytes: int | None
    created: str
    complete: bool = True


def list_runtimes(cache_dir: str) -> list[RuntimeRow]:
    """Every named runtime, then every cached entry no name points to."""
    root = cache.runtimes_root(cache_dir)
    rows = []
    seen = set()
    for name, targets in sorted(cache.read_index(root).items()):
        for target, key in sorted(targets.items()):
            path = cache.entry_dir(root, target, key)
            manifest, problem = cache.entry_problem(path, target, key)
            seen.add(cache.entry_id(target, key))
            rows.append(_row(name, target, key, manifest, problem is None))
    for path, manifest in cache.entries(root):
        if os.path.basename(path) in seen or not manifest:
            continue
        rows.append(_row(None, manifest.get("target", "?"), manifest.get("key", "?"),
                         manifest, True))
    return rows


def _row(name, target, key, manifest, complete) -> RuntimeRow:
    m = manifest or {}
    size = m.get("package_bytes") or m.get("total_bytes")
    return RuntimeRow(name, target, key, tuple(m.get("user_requirements", ())), size,
                      m.get("created", ""), complete)


def fc_names(root: str) -> dict[str, str]:
    """name -> key of every fc runtime name in the cache at ``root`` (its runtimes folder)."""
    return {name: targets["fc"] for name, targets in cache.read_index(root).items()
            if "fc" in targets}


def named_keys(cache_dir: str, target: str) -> set[str]:
    """The content keys that runtime names in this cache point to for ``target``."""
    index = cache.read_index(cache.runtimes_root(cache_dir))
    return {targets[target] for targets in index.values() if target in targets}


def runtime_by_name(cache_dir: str, name: str, target: str) -> RuntimeEntry | None:
    """The complete cached runtime a name points to for a target (leased), if any."""
    root = cache.runtimes_root(cache_dir)
    key = cache.read_index(root).get(name, {}).get(target)
    if not key:
        return None
    path = cache.entry_dir(root, target, key)
    with cache.key_lock(root, target, key):
        manifest, problem = cache.entry_problem(path, target, key)
        if problem is not None:
            return None
        cache.take_lease(root, os.path.basename(path))
    return _entry(name, path, manifest)


@dataclass
class Removal:
    """What --remove or --gc deleted, and what it kept because a live kernel uses it."""

    removed: list[str] = field(default_factory=list)
    freed: int = 0
    kept: dict[str, list[int]] = field(default_factory=dict)   # entry id -> PIDs

    def summary(self, name: str | None = None) -> str:
        """The one line --remove NAME (``name``) or --gc (None) prints."""
        from .sizes import human

        if name is not None:
            text = f"removed runtime {name}" + (
                f" and {len(self.removed)} cached build(s)" if self.removed else "")
        else:
            text = (f"removed {len(self.removed)} unused cached build(s), "
                    f"freed {human(self.freed)}")
        if self.kept:
            pids = sorted({pid for holders in self.kept.values() for pid in holders})
            text += (f"; kept {len(self.kept)} build(s) in use by running kernel(s) "
                     f"(PID {', '.join(map(str, pids))}): --gc removes them once those end")
        return text


def remove_runtime(cache_dir: str, name: str) -> Removal:
    """Forget a name and delete its entries no other name and no live kernel uses."""
    root = cache.runtimes_root(cache_dir)
    if name not in cache.read_index(root):
        known = ", ".join(sorted(cache.read_index(root))) or "none"
        raise InputProblem(f"no runtime named {name!r} (known: {known})")
    gone = cache.remove_name(root, name)
    out = Removal()
    for target, key in gone.items():
        ident = cache.entry_id(target, key)
        with cache.key_lock(root, target, key):
            if ident in cache.referenced_ids(root):
                continue
            cache.drop_lease(root, ident)   # this kernel asked for it: its own use ends here
            holders = cache.leases(root).get(ident)
            if holders:
                out.kept[ident] = holders
                continue
            path = cache.entry_dir(root, target, key)
            out.freed += cache.folder_size(path)
            cache.discard(path)
        out.removed.append(ident)
    return out


def gc_runtimes(cache_dir: str) -> Removal:
    """Delete entries no name and no live kernel uses, and leftovers of dead builds."""
    root = cache.runtimes_root(cache_dir)
    out = Removal()
    for name, size in cache.reap_dead_builds(root):
        out.removed.append(name)
        out.freed += size
    for path, _manifest in cache.entries(root):
        ident = os.path.basename(path)
        if ident in cache.referenced_ids(root):
            continue
        target, _, key = ident.partition("-")
        with cache.key_lock(root, target, key, blocking=False) as held:
            if not held:
                continue   # being built or used right now: not garbage
            # Checked under the lock: a build records its name and lease under it.
            if ident in cache.referenced_ids(root):
                continue
            holders = cache.leases(root).get(ident)
            if holders:
                out.kept[ident] = holders
                continue
            out.freed += cache.folder_size(path)
            cache.discard(path)
        out.removed.append(ident)
    return out
