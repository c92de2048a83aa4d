"""Objects as a map's input: parse `oss://bucket/prefix/`, `file:///folder/` and `--chunk-size`.

Plain functions and data, no Lithops: `parse_source` turns ITERABLE and the
flags into an `ObjectSource` (or None when ITERABLE is ordinary data), and
`ObjectPart` is one task's input on the client: an object, or one chunk of it.
Listing and partitioning live in `fc_magic.backends.object_input`; what a task
receives is `fc_magic.object_handle.StorageObject`.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from .errors import InputProblem

logger = logging.getLogger(__name__)

#: Units of --chunk-size; KB/MB/GB are binary, as Lithops' own obj_chunk_size examples.
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
#: Below this a chunk holds a handful of lines and each task costs more than its work.
MIN_CHUNK = 2**10
#: OSS bucket names: 3..63 lowercase letters, digits and hyphens, not starting or ending with '-'.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def parse_size(text: str) -> int:
    """Bytes of a size such as ``64MB``, ``512KB``, ``1.5GB`` or ``1048576``."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise InputProblem(f"--chunk-size {text!r} is not a size; write it like 64MB, "
                           f"512KB or 1GB (binary units: 1MB = 1,048,576 bytes)")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < MIN_CHUNK:
        raise InputProblem(f"--chunk-size {text!r} is under 1KB; pass a larger chunk, "
                           f"e.g. --chunk-size 64MB")
    return size


@dataclass(frozen=True)
class ObjectSource:
    """Where a map's objects are: an OSS bucket and prefix, or a local folder or file."""

    kind: str  # "oss" or "local"
    #: oss: the bucket and the key prefix ("data/"); local: the absolute path.
    bucket: str = ""
    prefix: str = ""
    path: str = ""
    #: Bytes per task (None: one task per object).
    chunk_size: int | None = None

    @property
    def url(self) -> str:
        return f"oss://{self.bucket}/{self.prefix}" if self.kind == "oss" else self.path


def parse_source(text: str, *, files: bool = False,
                 chunk_size: str | None = None) -> ObjectSource | None:
    """The object source ITERABLE names, or None when it is ordinary data.

    ``oss://bucket/prefix/`` and ``file:///folder/`` always name objects; a
    plain path does with ``files=True`` (``--files``), so that an expression
    such as ``data`` is never read as a folder by accident.
    """
    text = text.strip()
    size = parse_size(chunk_size) if chunk_size is not None else None
    if text.startswith("oss://"):
        return _oss_source(text, size)
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise InputProblem(f"{text!r} names host {parsed.netloc!r}; write a local folder "
                               f"as file:///absolute/path/ (three slashes)")
        return _local_source(unquote(parsed.path), size)
    if files:
        return _local_source(text.strip("'\""), size)
    if chunk_size is not None:
        raise InputProblem("--chunk-size splits objects, and ITERABLE is not an object "
                           "source; pass oss://bucket/prefix/, file:///folder/ or a path "
                           "with --files")
    return None


def _oss_source(text: str, size: int | None) -> ObjectSource:
    bucket, _, prefix = text[len("oss://"):].partition("/")
    if not bucket:
        raise InputProblem(f"{text!r} names no bucket; write oss://BUCKET/prefix/")
    if not _BUCKET.fullmatch(bucket):
        raise InputProblem(f"{bucket!r} is not an OSS bucket name (3-63 lowercase letters, "
                           f"digits, '-'); write oss://BUCKET/prefix/")
    if not prefix.strip("/"):
        raise InputProblem(f"{text!r} has no prefix, so it would map over the whole bucket "
                           f"(job data included); name the folder: oss://{bucket}/PREFIX/")
    return ObjectSource("oss", bucket=bucket, prefix=prefix, chunk_size=size)


def _local_source(path: str, size: int | None) -> ObjectSource:
    if not path:
        raise InputProblem("--files needs a folder or file path as ITERABLE, e.g. "
                           "%fc_map FUNC ./data/ --files")
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(full):
        raise InputProblem(f"{path!r} does not exist; pass an existing folder or file")
    return ObjectSource("local", path=full, chunk_size=size)


@dataclass(frozen=True)
class ObjectPart:
    """One task's input: an object, or the chunk ``[start, stop)`` of it.

    A chunk owns the lines that start in its byte range, so every line of the
    object is read by exactly one task (a line that crosses the end is read
    to its end by the chunk it starts in).
    """

    key: str
    #: The object's size in bytes.
    size: int
    #: "oss" (bucket, key) or "local" (path).
    kind: str
    bucket: str = ""
    path: str = ""
    #: The byte range this task owns, [start, stop); None for the whole object.
    range: tuple[int, int] | None = None
    part: int = 1
    parts: int = 1

    @property
    def url(self) -> str:
        return f"oss://{self.bucket}/{self.key}" if self.kind == "oss" else self.path

    def payload(self) -> tuple:
        """What the worker needs, as plain data (the worker has no fc_magic)."""
        return (self.kind, self.bucket, self.key, self.path, self.size, self.range,
                self.part, self.parts)

    def __repr__(self) -> str:
        if self.parts > 1:
            return f"{self.key} [chunk {self.part}/{self.parts}]"
        return self.key


def is_object_map(items: list) -> bool:
    """Whether a map's items are objects (all of them are, or none)."""
    return bool(items) and isinstance(items[0], ObjectPart)
