"""Object maps on Lithops: list and partition the objects, and wrap FUNC to receive them.

`list_parts` turns an `ObjectSource` into the map's items (`ObjectPart`s, in
listing order) with Lithops' own partitioner (`create_partitions`): OSS through
a Lithops Storage whose listings page past 1000 keys, local files through its
path splitter. The client partitions once, so the items (and a retry of some
of them) are known before anything is invoked; the tasks then receive plain
payloads, not Lithops' ``obj``, and `object_task` hands FUNC a
`fc_magic.object_handle.StorageObject`, which reads through the worker's
Lithops storage client (on FC: signed with the function role's credentials).
"""
from __future__ import annotations

import logging
import os
import types
from pathlib import Path
from typing import Any, Callable

from .. import object_handle
from ..errors import InputProblem
from ..objects import ObjectPart, ObjectSource
from . import lithops_fixes
from .request import MapRequest

logger = logging.getLogger(__name__)

#: Lithops' partitioner message when a listing finds nothing (3.8.x).
_NO_OBJECTS = "No objects found"
#: The wrapper Lithops calls: the payload is an ordinary parameter (not ``obj``,
#: which would make Lithops partition again), ``storage`` its worker's client.
_WRAPPER = f"""

def {lithops_fixes.TASK_NAME}(item, storage=None):
    return inner(StorageObject(item, storage))
"""


def object_task(func: Callable, constants: dict[str, Any] | None = None) -> Callable:
    """``func`` wrapped to receive a `StorageObject` (and the map's ``--const`` keywords),
    its output captured as every task's is."""
    inner = lithops_fixes.task_function(func, "item", constants)
    source = Path(object_handle.__file__).read_text(encoding="utf-8") + _WRAPPER
    # A module that cannot be imported: cloudpickle sends the class and wrapper by value.
    namespace = {"__name__": lithops_fixes.TASK_MODULE, "inner": inner}
    exec(compile(source, f"<{lithops_fixes.TASK_MODULE}>", "exec"), namespace)
    task = namespace[lithops_fixes.TASK_NAME]
    task.__name__ = task.__qualname__ = getattr(func, "__name__", "task")
    return task


def list_parts(request: MapRequest, source: ObjectSource, max_tasks: int) -> list[ObjectPart]:
    """The tasks of an object map, in listing order; `InputProblem` if there are none."""
    if source.kind == "oss":
        if request.backend != "aliyun_fc":
            raise InputProblem(f"{source.url} is in OSS, which the {request.backend} backend "
                               f"does not read; %config FCMagic.backend = 'aliyun_fc', or map "
                               f"a local folder: %fc_map FUNC /path/ --files")
        parts = _oss_parts(request, source)
    else:
        if request.backend != "localhost":
            raise InputProblem(f"{source.path} is a local path, which Function Compute cannot "
                               f"read; upload it to OSS and map oss://BUCKET/PREFIX/")
        parts = _local_parts(source)
    if len(parts) > max_tasks:
        raise InputProblem(f"{source.url} makes {len(parts):,} tasks, more than "
                           f"FCMagic.max_tasks ({max_tasks:,}); pass a larger --chunk-size or "
                           f"raise the limit: %config FCMagic.max_tasks = N")
    return parts


def _partitions(storage: Any, backend: str, entries: list[dict], chunk_size: int | None):
    from lithops.job.partitioner import create_partitions

    internal = types.SimpleNamespace(backend=backend, storage=storage)
    return create_partitions({}, internal, entries, chunk_size, None, "\n")


def _part(entry: dict, kind: str, key: str, size: int, bucket: str = "",
          path: str = "") -> ObjectPart:
    """An `ObjectPart` from one of Lithops' partitions (its byte range and chunk size)."""
    obj = entry["obj"]
    owned = None
    if obj.data_byte_range is not None:
        # Lithops starts a later chunk one byte early and overshoots its end;
        # the range a chunk owns is its nominal [start, start + chunk_size).
        first = obj.data_byte_range[0]
        start = first + 1 if first > 0 else 0
        owned = (start, start + obj.chunk_size)
    return ObjectPart(key=key, size=size, kind=kind, bucket=bucket, path=path, range=owned,
                      part=obj.part, parts=obj.total_parts)


def _local_parts(source: ObjectSource) -> list[ObjectPart]:
    """Files of a folder (walked in name order, hidden ones skipped) or one file."""
    if os.path.isdir(source.path):
        files = []
        for folder, dirs, names in os.walk(source.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files.extend(os.path.join(folder, n) for n in sorted(names) if not n.startswith("."))
    else:
        files = [source.path]
    if not files:
        raise InputProblem(f"folder {source.path} holds no files; put files in it or pass "
                           f"another folder")
    base = source.path if os.path.isdir(source.path) else os.path.dirname(source.path)
    sizes = {path: os.path.getsize(path) for path in files}
    entries = [{"obj": path} for path in files if sizes[path]]
    partitions = _partitions(None, "localhost", entries, source.chunk_size)[0] if entries else []
    by_path: dict[str, list[ObjectPart]] = {}
    for entry in partitions:
        path = entry["obj"].path
        by_path.setdefault(path, []).append(
            _part(entry, "local", os.path.relpath(path, base), sizes[path], path=path))
    # Lithops makes no partition of an empty file; it is still one task.
    return [part for path in files
            for part in by_path.get(path) or [ObjectPart(key=os.path.relpath(path, base),
                                                         size=0, kind="local", path=path)]]


def _oss_parts(request: MapRequest, source: ObjectSource) -> list[ObjectPart]:
    import oss2
    from lithops.storage.utils import StorageNoSuchKeyError

    storage = _oss_storage(request)
    # The listing as the partitioner saw it: the sizes, and the empty objects it drops.
    listed: list[dict] = []
    list_objects = storage.list_objects

    def recorded(*args, **kwargs):
        found = list_objects(*args, **kwargs)
        listed.extend(found)
        return found

    storage.list_objects = recorded
    prefix = source.prefix if source.prefix.endswith("/") else source.prefix + "/"
    entries = [{"obj": f"aliyun_oss://{source.bucket}/{prefix}"}]
    try:
        partitions, _ = _partitions(storage, "aliyun_oss", entries, source.chunk_size)
    except StorageNoSuchKeyError:
        raise InputProblem(f"bucket {source.bucket!r} does not exist (or is not visible to "
                           f"these credentials); check the name in oss://{source.bucket}/") from None
    except oss2.exceptions.OssError as exc:
        if exc.status == 403:
            raise InputProblem(f"OSS refused to list oss://{source.bucket}/{prefix} "
                               f"({exc.code or exc.status}); give these credentials "
                               f"oss:ListObjects and the function role oss:GetObject on "
                               f"bucket {source.bucket}") from None
        raise
    except Exception as exc:  # Lithops raises a bare Exception for an empty listing
        if str(exc) != _NO_OBJECTS:
            raise
        raise InputProblem(f"no objects under oss://{source.bucket}/{prefix}; check the "
                           f"prefix (it names a folder, e.g. oss://{source.bucket}/data/)") from None
    by_key: dict[str, list[ObjectPart]] = {}
    sizes = {obj["Key"]: obj["Size"] for obj in listed}
    for entry in partitions:
        key = entry["obj"].key
        by_key.setdefault(key, []).append(
            _part(entry, "oss", key, sizes[key], bucket=source.bucket))
    # Lithops makes no partition of an empty object; it is still one task.
    return [part for key in sizes if not key.endswith("/")
            for part in by_key.get(key) or [ObjectPart(key=key, size=0, kind="oss",
                                                       bucket=source.bucket)]]


def _oss_storage(request: MapRequest) -> Any:
    """A Lithops Storage on the request's OSS, credentials asked per request, listings paged."""
    import lithops

    from .aliyun_fc import aliyun_settings, auth_problem, credential_source, unreachable

    config, endpoints = aliyun_settings(request)
    try:
        with lithops_fixes.aliyun_endpoints(endpoints.fc, endpoints.oss_public,
                                            endpoints.oss_internal,
                                            credentials=credential_source(request)):
            storage = lithops.storage.Storage(config=config)
    except Exception as exc:  # a 403 or an endpoint that does not answer, in one line
        raise (auth_problem(exc, config) or unreachable(exc) or exc) from None
    lithops_fixes.page_storage_listings(storage)
    return storage
