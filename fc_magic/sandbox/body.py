"""Request bodies read with a bound, hashed as they arrive, spilled to disk when large.

The server reads a body only after the request's signature headers passed,
and never more than the limit of the call it is for: a declared length over
the limit is refused before a byte is read, a chunked body is cut off as
soon as it passes it. Bodies larger than ``SPILL_BYTES`` go to a file in the
sandbox's work folder instead of memory (OSS objects may be gigabytes).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

SPILL_BYTES = 8 * 2**20
READ_PIECE = 2**20
MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 64
_LENGTH = re.compile(r"[0-9]{1,19}")
_HEX = re.compile(rb"[0-9a-fA-F]{1,15}")


class BodyError(Exception):
    """A body that cannot be accepted: the HTTP status and the reason."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ClientGone(Exception):
    """The client closed the connection or stopped sending in the middle of a body."""


@dataclass
class Body:
    """A received body: in memory (``data``) or in a file (``path``), with its digests."""

    size: int = 0
    sha256: str = hashlib.sha256(b"").hexdigest()
    md5: str = hashlib.md5(b"").hexdigest()
    data: bytes | None = b""
    path: str | None = None
    _owned: bool = field(default=True, repr=False)

    @classmethod
    def of(cls, data: bytes) -> "Body":
        """A body already in memory (calls made from Python, not over HTTP)."""
        return cls(len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(),
                   data)

    def bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as f:
            return f.read()

    def move_to(self, dest: str) -> None:
        """Hand a spilled file over to its new owner (the object store)."""
        os.replace(self.path, dest)
        self.path, self._owned = dest, False

    def discard(self) -> None:
        if self.path is not None and self._owned:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None


def declared_length(headers) -> int | None:
    """The body length a request declares: an int, None for chunked.

    Raises BodyError (400) for what HTTP/1.1 forbids: a length that is not a
    non-negative decimal, two different lengths, a length with chunked
    encoding, an encoding other than chunked.
    """
    encodings = [v.strip().lower() for v in headers.get_all("Transfer-Encoding", [])]
    lengths = {v.strip() for v in headers.get_all("Content-Length", [])}
    if encodings:
        if encodings != ["chunked"]:
            raise BodyError(400, "InvalidArgument", "Transfer-Encoding must be chunked")
        if lengths:
            raise BodyError(400, "InvalidArgument",
                            "a request may not have both Content-Length and chunked encoding")
        return None
    if not lengths:
        return 0
    if len(lengths) > 1 or not _LENGTH.fullmatch(next(iter(lengths))):
        raise BodyError(400, "InvalidArgument",
                        "Content-Length must be one non-negative decimal number")
    return int(next(iter(lengths)))


class _Sink:
    def __init__(self, spill_dir: str):
        self.spill_dir = spill_dir
        self.sha256, self.md5 = hashlib.sha256(), hashlib.md5()
        self.size = 0
        self.parts: list[bytes] = []
        self.file = None
        self.path: str | None = None

    def write(self, piece: bytes) -> None:
        self.sha256.update(piece)
        self.md5.update(piece)
        self.size += len(piece)
        if self.file is None and self.size > SPILL_BYTES:
            os.makedirs(self.spill_dir, exist_ok=True)
            fd, self.path = tempfile.mkstemp(prefix="body-", dir=self.spill_dir)
            self.file = os.fdopen(fd, "wb")
            self.file.writelines(self.parts)
            self.parts = []
        if self.file is not None:
            self.file.write(piece)
        else:
            self.parts.append(piece)

    def finish(self) -> Body:
        if self.file is not None:
            self.file.close()
        return Body(self.size, self.sha256.hexdigest(), self.md5.hexdigest(),
                    None if self.path else b"".join(self.parts), self.path)

    def abandon(self) -> None:
        if self.file is not None:
            self.file.close()
            os.unlink(self.path)


def _read_exactly(rfile, n: int, sink: _Sink) -> None:
    while n:
        try:
            piece = rfile.read(min(n, READ_PIECE))
        except (TimeoutError, OSError) as exc:
            raise ClientGone(type(exc).__name__) from None
        if not piece:
            raise ClientGone("end of stream inside the body")
        sink.write(piece)
        n -= len(piece)


def _readline(rfile) -> bytes:
    try:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
    except (TimeoutError, OSError) as exc:
        raise ClientGone(type(exc).__name__) from None
    if not line:
        raise ClientGone("end of stream inside the body")
    if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
        raise BodyError(400, "InvalidArgument", "a chunk-size line is too long")
    return line


def read_body(rfile, length: int | None, limit: int, spill_dir: str) -> Body:
    """Read a body of ``length`` bytes (None: chunked), at most ``limit`` of them.

    Raises BodyError (413) past the limit, BodyError (400) on bad chunk framing,
    ClientGone when the client stops sending.
    """
    if length is not None and length > limit:
        raise BodyError(413, "EntityTooLarge",
                        f"the body of {length} bytes exceeds this call's limit of {limit} bytes")
    sink = _Sink(spill_dir)
    done = False
    try:
        if length is not None:
            _read_exactly(rfile, length, sink)
            done = True
            return sink.finish()
        while True:
            size_field = _readline(rfile).split(b";")[0].strip()
            if not _HEX.fullmatch(size_field):
                raise BodyError(400, "InvalidArgument", "a chunk size is not a hex number")
            size = int(size_field, 16)
            if size == 0:
                for _ in range(MAX_TRAILERS):
                    if _readline(rfile) in (b"\r\n", b"\n"):
                        done = True
                        return sink.finish()
                raise BodyError(400, "InvalidArgument", "too many trailer lines")
            if sink.size + size > limit:
                raise BodyError(413, "EntityTooLarge",
                                f"the chunked body exceeds this call's limit of {limit} bytes")
            _read_exactly(rfile, size, sink)
            if _readline(rfile) not in (b"\r\n", b"\n"):
                raise BodyError(400, "InvalidArgument", "a chunk does not end with CRLF")
    finally:
        if not done:  # refused or cut short: no half-written spill file stays
            sink.abandon()
