"""The content-addressed runtime cache: entries, manifests, locks, the name index.

Layout under ``<cache_dir>/runtimes/``::

    <target>-<key>/            one published entry (a venv or a code package)
        manifest.json          written last, inside the temporary folder
    .build-<target>-<key>-*/   a build in progress (renamed into place when done)
    .lock-<target>-<key>       a per-key lock, held while building
    names.json                 runtime name -> key per target, for --list/--remove/--gc

An entry appears by one ``rename`` of a complete folder, so it is either
complete or absent; a build that fails removes its temporary folder. Lock
files are removed on release (with an inode check so a waiter never locks a
file that was just unlinked), which leaves the cache folder exactly as it was
after a failed build. A cache hit reads one small JSON file and stats a few
paths: no subprocess, no network.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Iterator

logger = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """Where runtimes are cached unless told otherwise: $XDG_CACHE_HOME/fc_magic."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fc_magic")

MANIFEST = "manifest.json"
INDEX = "names.json"
#: Bumped when the entry layout changes; older entries are rebuilt.
FORMAT = 1


def runtimes_root(cache_dir: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), "runtimes")


def entry_id(target: str, key: str) -> str:
    return f"{target}-{key}"


def entry_dir(root: str, target: str, key: str) -> str:
    return os.path.join(root, entry_id(target, key))


# ----------------------------------------------------------------- locking
try:
    import fcntl
except ImportError:  # Windows: filelock keeps its file, which is harmless there
    fcntl = None


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed, removed on release).

    Removing a lock file is only safe if a process that opened the old file
    notices: after ``flock`` succeeds the holder checks that the path still
    names the inode it locked, and retries otherwise.
    """
    if fcntl is None:
        from filelock import FileLock
        with FileLock(path):
            yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def key_lock(root: str, target: str, key: str):
    return locked(os.path.join(root, f".lock-{entry_id(target, key)}"))


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
    for rel, size in (manifest.get("check_files") or {}).items():
        full = os.path.join(path, rel)
        try:
            actual = os.stat(full).st_size
        except OSError:
            return manifest, f"{rel} is missing"
        if size is not None and actual != size:
            return manifest, f"{rel} is {actual} bytes instead of {size}"
    return manifest, None


def new_build_dir(root: str, target: str, key: str) -> str:
    os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".build-{entry_id(target, key)}-", dir=root)


def write_manifest(folder: str, manifest: dict) -> None:
    tmp = os.path.join(folder, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(folder, MANIFEST))


def publish(build_dir: str, final: str) -> None:
    """Move a complete build into place in one rename."""
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
def read_index(root: str) -> dict:
    """{name: {target: key}} (empty when there is none or it is unreadable)."""
    try:
        with open(os.path.join(root, INDEX), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    names = data.get("names") if isinstance(data, dict) else None
    return names if isinstance(names, dict) else {}


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
    """(folder, manifest or None) for every published entry."""
    out = []
    try:
        listing = sorted(os.listdir(root))
    except FileNotFoundError:
        return out
    for name in listing:
        path = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(path) or ".discard-" in name:
            continue
        out.append((path, read_manifest(path)))
    return out


def referenced_ids(root: str) -> set[str]:
    return {entry_id(target, key) for targets in read_index(root).values()
            for target, key in targets.items()}


def stale_build_dirs(root: str, older_than_s: float = 3600.0) -> list[str]:
    """Temporary folders left by a build whose process died (not by a live one)."""
    out = []
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if (name.startswith(".build-") or ".discard-" in name) and os.path.isdir(path):
                with contextlib.suppress(OSError):
                    if now - os.stat(path).st_mtime > older_than_s:
                        out.append(path)
    return out
