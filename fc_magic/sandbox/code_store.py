"""Unpacked code packages: one read-only folder per package, shared by its functions.

FC keeps a function's code by its checksum and mounts it read-only at
``/code``; functions created from the same package (one runtime at several
memory sizes) need no second copy. The sandbox does the same, so creating a
second function from a package costs no unpacking, and it unpacks onto
RAM-backed storage (``/dev/shm``) where the machine has room: unpacking a
numpy+pandas package (about 1,600 files, 77 MB) onto this machine's disk
takes 2 s of file-system time, the same onto tmpfs 0.4 s. That time is the
stand-in's, not FC's (FC prepares code on its own hosts), so it should not
weigh on what the sandbox measures.

A folder lives while a function uses it; the store's root goes with the
sandbox, and a root left behind by a sandbox whose process died is removed
by the next one.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import threading
import zipfile

logger = logging.getLogger(__name__)

MAX_UNPACKED = 10 * 2**30
#: RAM-backed storage used only with at least this much free.
SHM_DIR, SHM_MIN_FREE = "/dev/shm", 2 * 2**30
PREFIX = "fc-sandbox-code-"


def checksum(package: bytes) -> str:
    """The package's checksum as FC reports it (``codeChecksum``).

    FC reports a CRC-64; a 64-bit digest serves the same purpose (a
    pure-Python CRC-64 would take seconds on a large package).
    """
    return str(int.from_bytes(hashlib.sha256(package).digest()[:8], "big"))


def unpack(package: bytes, code_dir: str) -> None:
    """Unzip ``package`` into ``code_dir``; ValueError or BadZipFile for an unsafe one."""
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        if sum(i.file_size for i in zf.infolist()) > MAX_UNPACKED:
            raise ValueError("unpacked size exceeds 10 GB")
        root = os.path.realpath(code_dir)
        for info in zf.infolist():
            dest = os.path.realpath(os.path.join(code_dir, info.filename))
            if not dest.startswith(root + os.sep) and dest != root:
                raise ValueError(f"unsafe path {info.filename!r}")
        zf.extractall(code_dir)


def _root_parent(fallback: str) -> str:
    try:
        st = os.statvfs(SHM_DIR)
        if st.f_bavail * st.f_frsize >= SHM_MIN_FREE and os.access(SHM_DIR, os.W_OK):
            return SHM_DIR
    except OSError:
        pass
    return fallback


def _reap_orphans(parent: str) -> None:
    """Remove code roots of sandboxes whose process is gone (killed, not stopped)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name[len(PREFIX):].split("-", 1)[0]
        if not (name.startswith(PREFIX) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:
            pass   # alive, another user's


class CodeStore:
    """Unpacked packages by checksum, counted by the functions that use them."""

    def __init__(self, fallback_dir: str):
        parent = _root_parent(fallback_dir)
        os.makedirs(parent, exist_ok=True)
        _reap_orphans(parent)
        self.root = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent)
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._unpacking: dict[str, threading.Lock] = {}

    def acquire(self, package: bytes) -> tuple[str, str]:
        """(folder, checksum) of ``package``, unpacked once however many functions ask."""
        digest = checksum(package)
        code_dir = os.path.join(self.root, digest)
        with self._lock:
            gate = self._unpacking.setdefault(digest, threading.Lock())
        with gate:   # two CreateFunctions of one package at once unpack it once
            with self._lock:
                if self._users.get(digest):
                    self._users[digest] += 1
                    return code_dir, digest
            try:
                unpack(package, code_dir)
            except BaseException:
                shutil.rmtree(code_dir, ignore_errors=True)
                raise
            with self._lock:
                self._users[digest] = self._users.get(digest, 0) + 1
        return code_dir, digest

    def release(self, code_dir: str) -> None:
        """One function less uses ``code_dir``; the last one removes it."""
        digest = os.path.basename(code_dir)
        with self._lock:
            left = self._users.get(digest, 0) - 1
            if left > 0:
                self._users[digest] = left
                return
            self._users.pop(digest, None)
        shutil.rmtree(code_dir, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._users.clear()
        shutil.rmtree(self.root, ignore_errors=True)
