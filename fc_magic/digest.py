"""sha256 of a file, read in blocks: the one digest runtime keys, packages and deploys share."""
from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    """Hex sha256 of the file at ``path``, read 1 MB at a time (Python 3.10 has no file_digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
