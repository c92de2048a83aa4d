"""Which installed package each file belongs to, and how big each package is.

Installed distributions list their files in ``*.dist-info/RECORD``; anything
no RECORD claims (Lithops copied in by hand, the handler module) is grouped
under its top-level name. The same mapping serves the unpacked size of a
venv and the compressed size of a code package zip.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class PackageSize:
    """One row of a runtime's size table."""

    name: str
    unpacked_bytes: int
    zipped_bytes: int | None = None  # fc code packages only


def _dist_name(dist_info: str) -> str:
    base = dist_info[: -len(".dist-info")]
    name = base.split("-", 1)[0]
    return name.replace("_", "-").lower()


def owners(site_dir: str) -> dict[str, str]:
    """{path relative to site_dir (posix): distribution name} from every RECORD."""
    owned: dict[str, str] = {}
    try:
        listing = os.listdir(site_dir)
    except FileNotFoundError:
        return owned
    for entry in listing:
        if not entry.endswith(".dist-info"):
            continue
        dist = _dist_name(entry)
        record = os.path.join(site_dir, entry, "RECORD")
        try:
            with open(record, newline="", encoding="utf-8") as fh:
                for row in csv.reader(fh):
                    if row and not row[0].startswith(".."):
                        owned[os.path.normpath(row[0]).replace(os.sep, "/")] = dist
        except OSError:
            pass
        owned.setdefault(f"{entry}/RECORD", dist)
    return owned


def owner_of(rel: str, owned: dict[str, str]) -> str:
    """The distribution a file belongs to, else its top-level folder or module."""
    dist = owned.get(rel)
    if dist:
        return dist
    top = rel.split("/", 1)[0]
    if top.endswith(".dist-info"):
        return _dist_name(top)
    return top[:-3] if top.endswith(".py") and "/" not in rel else top


def table(rows: Iterable[tuple[str, int, int | None]]) -> list[PackageSize]:
    """Group (owner, unpacked, zipped) rows into one sorted row per package, largest first."""
    unpacked: dict[str, int] = {}
    zipped: dict[str, int | None] = {}
    for name, size, packed in rows:
        unpacked[name] = unpacked.get(name, 0) + size
        if packed is None:
            zipped.setdefault(name, None)
        else:
            zipped[name] = (zipped.get(name) or 0) + packed
    out = [PackageSize(name, unpacked[name], zipped.get(name)) for name in unpacked]
    return sorted(out, key=lambda p: (-(p.zipped_bytes or p.unpacked_bytes), p.name))


def folder_table(site_dir: str) -> list[PackageSize]:
    """Per-package unpacked sizes of an installed site-packages folder."""
    owned = owners(site_dir)
    rows = []
    for base, _dirs, files in os.walk(site_dir):
        for name in files:
            full = os.path.join(base, name)
            rel = os.path.relpath(full, site_dir).replace(os.sep, "/")
            try:
                size = os.lstat(full).st_size
            except OSError:
                continue
            rows.append((owner_of(rel, owned), size, None))
    return table(rows)


def human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
