"""`StorageObject`: what a task of an object map receives (key, size, range, read, open).

This module runs on the worker, which has no fc_magic: it imports only the
standard library, and `fc_magic.backends.object_input` ships its source with
each map's function (executed in a module that cannot be imported, so
cloudpickle sends it by value). Bytes come from Lithops' storage client of
the worker (on Function Compute it signs with the function role's
credentials) or, on localhost, from the local file.

Chunks split on line boundaries: a chunk ``[start, stop)`` owns the lines
that start in it. It skips the tail of a line begun before ``start`` and reads
its last line to the end, however far past ``stop``; so the chunks of an
object, concatenated, are the object, and each line is in exactly one.
"""
from __future__ import annotations

import io
import logging

logger = logging.getLogger(__name__)

#: Bytes read from the storage stream at a time.
BLOCK = 1 << 16
NEWLINE = b"\n"


def owned_blocks(stream, start: int, stop: int, block: int = BLOCK):
    """Yield the bytes a chunk owns from ``stream``, which begins at ``max(start - 1, 0)``.

    The byte before ``start`` tells whether the chunk begins a line; the end
    is the first newline at or after ``stop - 1`` (or the end of the stream).
    """
    pos = start - 1 if start > 0 else 0  # object offset of buf[0]
    buf = b""
    if start > 0:
        # Skip to the first line that starts at or after `start`.
        while True:
            buf = stream.read(block)
            if not buf:
                return
            newline = buf.find(NEWLINE)
            if newline >= 0:
                buf, pos = buf[newline + 1:], pos + newline + 1
                break
            pos += len(buf)
        if pos >= stop:
            return  # a line from an earlier chunk covers this whole chunk
    while True:
        if not buf:
            buf = stream.read(block)
            if not buf:
                return
        if pos + len(buf) < stop:
            yield buf
            pos, buf = pos + len(buf), b""
            continue
        newline = buf.find(NEWLINE, max(stop - 1 - pos, 0))
        if newline >= 0:
            yield buf[:newline + 1]
            return
        yield buf
        pos, buf = pos + len(buf), b""


class _ChunkReader(io.RawIOBase):
    """A raw binary stream over `owned_blocks`; closing it closes the storage stream."""

    def __init__(self, stream, start: int, stop: int):
        super().__init__()
        self._stream = stream
        self._blocks = owned_blocks(stream, start, stop)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._blocks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        super().close()


class StorageObject:
    """One object (or one chunk of it) of an object map, as FUNC receives it.

    ``key``: the object key (a path relative to the folder on localhost);
    ``size``: the whole object's size in bytes; ``range``: ``(start, stop)``,
    the bytes this chunk owns, or None for the whole object; ``url``;
    ``part``/``parts``: which chunk. ``read()`` returns the bytes; ``open()``
    streams them (binary, or text with ``open("r")``).
    """

    def __init__(self, payload, storage=None):
        (self._kind, self.bucket, self.key, self.path, self.size, self.range,
         self.part, self.parts) = payload
        self._storage = storage

    @property
    def url(self) -> str:
        return f"oss://{self.bucket}/{self.key}" if self._kind == "oss" else self.path

    def _raw(self, offset: int):
        """A binary stream of the object from ``offset`` to its end."""
        if self._kind == "local":
            handle = open(self.path, "rb")
            handle.seek(offset)
            return handle
        if self._storage is None:
            raise RuntimeError(f"no storage client in this worker to read {self.url}")
        args = {"Range": f"bytes={offset}-{self.size - 1}"} if offset else {}
        return self._storage.get_object(self.bucket, self.key, stream=True,
                                        extra_get_args=args)

    def open(self, mode: str = "rb", encoding: str = "utf-8", errors: str = "strict"):
        """This chunk's bytes as a file: ``"rb"`` (default) or text with ``"r"``."""
        if mode not in ("rb", "r", "rt"):
            raise ValueError(f"mode {mode!r}: objects open for reading, 'rb' or 'r'")
        if self.size == 0:
            raw = io.BytesIO(b"")
        elif self.range is None:
            raw = _ChunkReader(self._raw(0), 0, self.size)
        else:
            start, stop = self.range
            raw = _ChunkReader(self._raw(max(start - 1, 0)), start, stop)
        binary = io.BufferedReader(raw) if not isinstance(raw, io.BytesIO) else raw
        if mode == "rb":
            return binary
        return io.TextIOWrapper(binary, encoding=encoding, errors=errors)

    def read(self) -> bytes:
        """All the bytes of this chunk (of the object when it is not chunked)."""
        with self.open() as handle:
            return handle.read()

    def __repr__(self) -> str:
        chunk = ""
        if self.range is not None:
            chunk = f", chunk {self.part}/{self.parts}, bytes[{self.range[0]}:{self.range[1]}]"
        return f"<StorageObject {self.url} ({self.size:,} bytes{chunk})>"
