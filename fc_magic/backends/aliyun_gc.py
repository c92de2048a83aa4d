"""`%fc_runtime --gc --remote`: FC functions and OSS packages of runtimes no name uses any more.

A runtime's cloud side is its package (``fc_magic/runtimes/<key>.zip`` and
manifest) and its functions (one per memory/vCPU size, their description
naming the key). Every map marks its key used (``<key>.used``, an empty
object whose Last-Modified is the last use). Every machine publishes its
runtime names (``fc_magic/names/<machine>.json``, `aliyun_store`). Garbage
is a key no runtime name points to, in the local cache or in any machine's
published names, and that nothing touched within the last hour (a map, a
deploy, a publish): another kernel or a colleague using it right now keeps it. The plan is shown first; nothing is deleted without a
yes or ``--yes``.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .aliyun_store import PREFIX, RuntimeStore, manifest_key, package_key, used_key

logger = logging.getLogger(__name__)

#: A key used more recently than this is never deleted.
IDLE_S = 3600.0


def _epoch(value: Any) -> float:
    """Seconds since the epoch from oss2's int or FC's ISO-8601 text (0: unknown)."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            logger.debug("unreadable time %r", value)
    return 0.0


@dataclass
class RemotePlan:
    """What a remote gc would delete, and what it keeps because it was used recently."""

    bucket: str
    keys: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    freed: int = 0
    recent: list[str] = field(default_factory=list)
    #: How many machines' published names were kept.
    machines: int = 0

    def describe(self, human: Callable[[int], str] = lambda n: f"{n:,} bytes") -> str:
        """One line; ``human`` formats a byte count (the views' own)."""
        if not self.keys:
            text = "nothing to delete in Function Compute or oss://" + self.bucket
        else:
            text = (f"{len(self.keys)} runtime(s) no name uses: {len(self.functions)} FC "
                    f"function(s) and {len(self.objects)} object(s) in oss://{self.bucket}/"
                    f"{PREFIX} ({human(self.freed)}): "
                    + ", ".join(k[:8] for k in self.keys))
        if self.recent:
            text += (f"; kept {len(self.recent)} used in the last hour: "
                     + ", ".join(k[:8] for k in self.recent))
        if self.machines:
            text += f"; kept what the names of {self.machines} machine(s) use"
        return text


def plan(store: RuntimeStore, backend: Any, in_use: Iterable[str],
         now: float | None = None) -> RemotePlan:
    """The remote garbage of a bucket and an FC account, given the keys local names point to.

    Every machine's published names count too (`RuntimeStore.machine_names`).
    """
    import oss2

    from .aliyun_deploy import marker_key

    now = time.time() if now is None else now
    machines = store.machine_names()
    in_use = set(in_use).union(*(m.names.values() for m in machines))
    last: dict[str, float] = {}
    objects: dict[str, list[tuple[str, int]]] = {}
    for info in oss2.ObjectIterator(store.bucket, prefix=PREFIX, max_keys=1000):
        name = info.key[len(PREFIX):]
        key, dot, _kind = name.partition(".")
        if not dot or len(key) != 64:
            continue
        objects.setdefault(key, []).append((info.key, int(info.size or 0)))
        last[key] = max(last.get(key, 0.0), _epoch(info.last_modified))
    functions: dict[str, list[str]] = {}
    for fn in backend._list_functions(prefix="lithops-worker-"):
        key = marker_key(getattr(fn, "description", ""))
        if key is None:
            continue   # not one fc_magic made
        functions.setdefault(key, []).append(fn.function_name)
        last[key] = max(last.get(key, 0.0), _epoch(getattr(fn, "last_modified_time", "")),
                        _epoch(getattr(fn, "created_time", "")))
    out = RemotePlan(store.bucket_name, machines=len(machines))
    for key in sorted(set(objects) | set(functions)):
        if key in in_use:
            continue
        if now - last.get(key, 0.0) < IDLE_S:
            out.recent.append(key)
            continue
        out.keys.append(key)
        out.functions += sorted(functions.get(key, ()))
        for obj, size in objects.get(key, ()):
            out.objects.append(obj)
            out.freed += size
    return out


def delete(planned: RemotePlan, store: RuntimeStore, backend: Any) -> None:
    """Delete a plan: functions first, then the manifest before the package and its mark."""
    for name in planned.functions:
        backend.fc_client.delete_function(name)
    order = {manifest_key(k): 0 for k in planned.keys}
    order.update({package_key(k): 1 for k in planned.keys})
    order.update({used_key(k): 2 for k in planned.keys})
    objects = sorted(planned.objects, key=lambda o: order.get(o, 3))
    for start in range(0, len(objects), 1000):
        store.bucket.batch_delete_objects(objects[start:start + 1000])
