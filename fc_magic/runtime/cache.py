"""The content-addressed runtime cache: entries, manifests, locks, the name index.

Layout under ``<cache_dir>/runtimes/``::

    <target>-<key>/            one published entry (a venv or a code package)
        manifest.json          written last, inside the temporary folder
    .build-<target>-<key>-*/   a build in progress (renamed into place when done)
        builder.json           who builds it (PID + start time) and its installers' groups
    .lock-<target>-<key>       a per-key lock, held while building
    .leases/<pid>.json         the entry a live kernel process uses (one per process)
    names.json                 runtime name -> key per target, for --list/--remove/--gc

An entry appears by one ``rename`` of a complete folder, so it is either
complete or absent; a build that fails removes its temporary folder. Lock
files are removed on release (with an inode check so a waiter never locks a
file that was just unlinked), which leaves the cache folder exactly as it was
after a failed build. A cache hit reads one small JSON file and stats a few
paths: no subprocess, no network.

The cache's own files are checked, not trusted: an index entry whose name,
target or key breaks the rules is ignored with a warning, and a manifest that
names a path outside its entry makes the entry damaged (rebuilt). A build
killed outright leaves its folder, lock file and installer processes; the next
build or gc finds them by the dead builder's PID and removes them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from typing import Iterator

from . import procs

logger = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """Where runtimes are cached unless told otherwise: $XDG_CACHE_HOME/fc_magic."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fc_magic")

MANIFEST = "manifest.json"
INDEX = "names.json"
BUILDER = "builder.json"
LEASES = ".leases"
TARGETS = ("local", "fc")
#: Bumped when the entry layout changes; older entries are rebuilt.
FORMAT = 1
#: A build folder without a builder record (a crash before it was written) is
#: left alone this long, in case its builder is still starting.
UNRECORDED_BUILD_GRACE_S = 3600.0

_KEY_RE = re.compile(r"[0-9a-f]{64}")
_ENTRY_ID_RE = re.compile(rf"(?:{'|'.join(TARGETS)})-[0-9a-f]{{64}}")


def runtimes_root(cache_dir: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), "runtimes")


def entry_id(target: str, key: str) -> str:
    return f"{target}-{key}"


def entry_dir(root: str, target: str, key: str) -> str:
    if target not in TARGETS or not _KEY_RE.fullmatch(str(key)):
        # Every caller validated these; a path built from anything else could leave the cache.
        raise ValueError(f"not a cache entry: target {target!r}, key {key!r}")
    return os.path.join(root, entry_id(target, key))


def is_entry_id(name: str) -> bool:
    return _ENTRY_ID_RE.fullmatch(name) is not None


# ----------------------------------------------------------------- locking
try:
    import fcntl
except ImportError:  # Windows: filelock keeps its file, which is harmless there
    fcntl = None


@contextlib.contextmanager
def locked(path: str, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if needed, removed on release).

    Yields True when held; with ``blocking=False`` it yields False at once if
    another process holds it. Removing a lock file is only safe if a process
    that opened the old file notices: after ``flock`` succeeds the holder
    checks that the path still names the inode it locked, and retries otherwise.
    """
    if fcntl is None:
        from filelock import FileLock, Timeout
        try:
            with FileLock(path, timeout=-1 if blocking else 0):
                yield True
        except Timeout:
            yield False
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def key_lock(root: str, target: str, key: str, blocking: bool = True):
    return locked(os.path.join(root, f".lock-{entry_id(target, key)}"), blocking)


def index_lock(root: str):
    return locked(os.path.join(root, ".lock-names"))


# ----------------------------------------------------------------- entries
def read_manifest(path: str) -> dict | None:
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def entry_problem(path: str, target: str, key: str) -> tuple[dict | None, str | None]:
    """(manifest, None) for a complete entry, (manifest or None, why) otherwise.

    Cheap by design (a cache hit must stay far under 50 ms): the manifest
    names the files that prove the entry whole and their sizes; those are
    stat'ed, nothing is hashed or walked.
    """
    if not os.path.isdir(path):
        return None, "absent"
    manifest = read_manifest(path)
    if manifest is None:
        return None, "its manifest is missing or unreadable"
    if manifest.get("format") != FORMAT or manifest.get("key") != key \
            or manifest.get("target") != target:
        return manifest, "its manifest does not match its key"
    if os.path.islink(path):
        return manifest, "it is a link to somewhere else"
    outside = manifest_paths_outside(path, manifest)
    if outside:
        return manifest, f"its manifest names {outside!r}, outside the entry"
    for rel, size in (manifest.get("check_files") or {}).items():
        full = os.path.join(path, rel)
        try:
            actual = os.stat(full).st_size
        except OSError:
            return manifest, f"{rel} is missing"
        if size is not None and actual != size:
            return manifest, f"{rel} is {actual} bytes instead of {size}"
    return manifest, None


def manifest_paths_outside(path: str, manifest: dict) -> str | None:
    """The first path the manifest names that does not stay inside entry ``path``, if any.

    Paths are relative by construction; one that is absolute, climbs out with
    ``..``, or runs through a folder linked elsewhere was not written by a
    build. The file itself may be a link (a venv's ``bin/python`` points at its
    base interpreter), its folder may not.
    """
    check = manifest.get("check_files") or {}
    if not isinstance(check, dict):
        return "check_files"
    names = [manifest.get("interpreter_rel"), manifest.get("package_rel"), *check]
    for rel in names:
        if rel is None:
            continue
        if not isinstance(rel, str) or not rel or os.path.isabs(rel) \
                or os.path.normpath(rel).split(os.sep)[0] == os.pardir:
            return str(rel)
    # Links are followed only for what is run or uploaded (checked files are only
    # stat'ed): a few realpath calls, so a cache hit stays about a millisecond.
    real_entry = os.path.realpath(path)
    for rel in (manifest.get("interpreter_rel"), manifest.get("package_rel")):
        if rel is not None:
            folder = os.path.realpath(os.path.dirname(os.path.join(path, rel)))
            if os.path.commonpath([real_entry, folder]) != real_entry:
                return rel
    return None


def new_build_dir(root: str, target: str, key: str) -> str:
    """A fresh build folder holding a record of its builder (see `reap_dead_builds`)."""
    os.makedirs(root, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f".build-{entry_id(target, key)}-", dir=root)
    _write_json(os.path.join(folder, BUILDER), {"builder": procs.stamp(), "groups": []})
    return folder


def record_installer(build_dir: str, pgid: int) -> None:
    """Note an installer's process group in the build's record, for a clean-up if we die."""
    path = os.path.join(build_dir, BUILDER)
    record = _read_json(path) or {"builder": procs.stamp(), "groups": []}
    record.setdefault("groups", []).append(procs.stamp(pgid))
    _write_json(path, record)


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_json(path: str, data) -> None:
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def write_manifest(folder: str, manifest: dict) -> None:
    tmp = os.path.join(folder, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(folder, MANIFEST))


def publish(build_dir: str, final: str) -> None:
    """Move a complete build into place in one rename (its builder record stays behind)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(build_dir, BUILDER))
    os.rename(build_dir, final)


def discard(path: str) -> None:
    """Remove an entry or a build folder: renamed aside first, so it vanishes at once."""
    if not os.path.exists(path):
        return
    aside = f"{path}.discard-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(path, aside)
    except OSError:
        aside = path
    shutil.rmtree(aside, ignore_errors=True)


def folder_size(path: str) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


# ----------------------------------------------------------------- name index
_reported: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _reported:
        _reported.add(message)
        logger.warning(message)


def read_index(root: str) -> dict:
    """{name: {target: key}} (empty when there is none or it is unreadable).

    Names, targets and keys that break the rules were not written by fc_magic
    (a hand edit, another tool, an attacker): they are left out with a
    warning, so no path is ever built from them.
    """
    try:
        with open(os.path.join(root, INDEX), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, dict):
        return {}
    from ..requirements import is_runtime_name

    valid: dict = {}
    for name, targets in names.items():
        if not is_runtime_name(name) or not isinstance(targets, dict):
            _warn_once(f"{os.path.join(root, INDEX)}: ignored the damaged entry {name!r} "
                       f"(not a runtime name)")
            continue
        for target, key in targets.items():
            if target in TARGETS and isinstance(key, str) and _KEY_RE.fullmatch(key):
                valid.setdefault(name, {})[target] = key
            else:
                _warn_once(f"{os.path.join(root, INDEX)}: ignored the damaged entry "
                           f"{name!r}: {target!r} -> {key!r} (not a target and a key)")
    return valid


def _write_index(root: str, names: dict) -> None:
    os.makedirs(root, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".names-", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"names": names}, fh, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(root, INDEX))


def set_name(root: str, name: str, target: str, key: str) -> None:
    """Point ``name`` at ``key`` for ``target`` (no write when it already does)."""
    if read_index(root).get(name, {}).get(target) == key:
        return
    with index_lock(root):
        names = read_index(root)
        names.setdefault(name, {})[target] = key
        _write_index(root, names)


def remove_name(root: str, name: str) -> dict:
    """Forget ``name``; returns what it pointed to ({target: key})."""
    with index_lock(root):
        names = read_index(root)
        gone = names.pop(name, None) or {}
        if gone:
            _write_index(root, names)
    return gone


def entries(root: str) -> list[tuple[str, dict | None]]:
    """(folder, manifest or None) for every published entry (links and strays left out)."""
    out = []
    try:
        listing = sorted(os.listdir(root))
    except FileNotFoundError:
        return out
    for name in listing:
        path = os.path.join(root, name)
        if not is_entry_id(name) or os.path.islink(path) or not os.path.isdir(path):
            continue
        out.append((path, read_manifest(path)))
    return out


def referenced_ids(root: str) -> set[str]:
    return {entry_id(target, key) for targets in read_index(root).values()
            for target, key in targets.items()}


# ----------------------------------------------------------------- leases
def take_lease(root: str, ident: str) -> None:
    """Record that this process uses entry ``ident`` (its one lease; replaces the last).

    --remove, --gc and other processes leave a leased entry alone while the
    process lives; a lease of a process that ended counts for nothing.
    """
    folder = os.path.join(root, LEASES)
    os.makedirs(folder, exist_ok=True)
    # The record names its cache: a copied cache folder does not inherit leases.
    _write_json(os.path.join(folder, f"{os.getpid()}.json"),
                {"entry": ident, "holder": procs.stamp(), "root": os.path.realpath(root)})


def drop_lease(root: str, ident: str) -> None:
    """Give up this process's lease if it is on ``ident``."""
    path = os.path.join(root, LEASES, f"{os.getpid()}.json")
    record = _read_json(path)
    if isinstance(record, dict) and record.get("entry") == ident:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def leases(root: str, *, others_only: bool = False) -> dict[str, list[int]]:
    """{entry id: [PIDs of live processes using it]}; leases of ended processes are removed."""
    folder = os.path.join(root, LEASES)
    out: dict[str, list[int]] = {}
    try:
        listing = os.listdir(folder)
    except FileNotFoundError:
        return out
    for name in listing:
        path = os.path.join(folder, name)
        record = _read_json(path)
        holder = record.get("holder") if isinstance(record, dict) else None
        if not procs.alive(holder) or not isinstance(record.get("entry"), str) \
                or record.get("root") != os.path.realpath(root):
            if name.endswith(".json"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            continue
        if others_only and holder["pid"] == os.getpid():
            continue
        out.setdefault(record["entry"], []).append(holder["pid"])
    return out


# ----------------------------------------------------------------- dead builders
def reap_dead_builds(root: str) -> list[tuple[str, int]]:
    """Remove what builds whose process died left behind; (folder, bytes) removed.

    A build folder names its builder (PID + start time) and the process
    groups of its installers: when the builder is gone, those groups are
    killed and the folder is removed. Folders a discard did not finish (named
    with the discarding PID) go too, and lock files nobody holds.
    """
    removed = []
    try:
        listing = os.listdir(root)
    except FileNotFoundError:
        return removed
    now = time.time()
    for name in listing:
        path = os.path.join(root, name)
        if name.startswith(".build-") and os.path.isdir(path) and not os.path.islink(path):
            record = _read_json(os.path.join(path, BUILDER))
            if isinstance(record, dict):
                if procs.alive(record.get("builder")):
                    continue
                for group in record.get("groups") or []:
                    if procs.kill_dead_builders_group(group):
                        logger.info("killed the installer (process group %s) of a build "
                                    "whose process ended", group.get("pid"))
            else:
                try:
                    if now - os.stat(path).st_mtime < UNRECORDED_BUILD_GRACE_S:
                        continue
                except OSError:
                    continue
            size = folder_size(path)
            discard(path)
            removed.append((name, size))
        elif ".discard-" in name and not os.path.islink(path):
            pid = name.rsplit(".discard-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and procs.alive({"pid": int(pid)}):
                continue
            size = folder_size(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append((name, size))
        elif name.startswith(".lock-"):
            with locked(path, blocking=False):
                pass  # held: nothing; free: removed on release, as after any build
    return removed
