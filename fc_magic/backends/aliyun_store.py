"""Runtimes by content in OSS: one code package per content key, published once, shared by all.

Layout in the configured bucket (the one Lithops uses for job data)::

    fc_magic/runtimes/<key>.zip    the FC code package; x-oss-meta-sha256 / -built-by / -created
    fc_magic/runtimes/<key>.json   its manifest (requirements, sizes, digest, who built it), last
    fc_magic/runtimes/<key>.used   empty; its Last-Modified is the last map that used it
    fc_magic/runtimes/<key>.meta.json  Lithops' runtime metadata, from the first function
                                       that ran the package (every later deploy skips
                                       the metadata invocation)

    fc_magic/names/<machine>.json  one machine's runtime names -> keys (remote gc keeps them)

``<machine>`` stands for one runtime cache on one host (`machine_id`); its
names are written when a runtime becomes current there through the team
cache and by the maps that use them, so `%fc_runtime --gc --remote` on any
machine keeps what every machine's names point to.

``<key>`` is the runtime's content key (requirements, target Python, Lithops
version, backend), so every FC function of a runtime (one per memory/vCPU
size) is created from the same object, and so is everyone's who writes the
same `%%fc_runtime` list. Both objects are written with
``x-oss-forbid-overwrite``: of two machines publishing one key at once, one
object stays and the other machine uses it. A runtime is published once its
manifest exists; a package without one (its publisher stopped in between)
is completed by the next publisher without uploading it again.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

from ..digest import file_sha256
from ..limits import FC_NAME_RE
from ..errors import InputProblem

logger = logging.getLogger(__name__)

PREFIX = "fc_magic/runtimes/"
NAMES_PREFIX = "fc_magic/names/"
_MACHINE_RE = re.compile(r"[0-9a-f]{16}")

FORMAT = 1
_KEY_RE = re.compile(r"[0-9a-f]{64}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
#: Manifests are small; a bigger object under the prefix is not one of ours.
MAX_MANIFEST_BYTES = 4 * 2**20
#: Manifest fields copied from the local one (what listing and pre-flight need).
SHARED_FIELDS = ("name", "requirements", "user_requirements", "python", "lithops_version",
                 "backend", "installer", "sizes", "total_bytes", "package_bytes",
                 "platform", "handler", "notes")


def package_key(key: str) -> str:
    return f"{PREFIX}{key}.zip"


def manifest_key(key: str) -> str:
    return f"{PREFIX}{key}.json"


#: The digest of the package a published runtime metadata was answered by.
META_DIGEST = "fc_magic_package_sha256"
#: The function roles a deploy of the package already tried on the bucket: a new
#: size or a team hit with one of them needs no role check (no invocation).
CHECKED_ROLES = "fc_magic_checked_roles"


def meta_key(key: str) -> str:
    """Lithops' runtime metadata of the package (Python, preinstalled modules)."""
    return f"{PREFIX}{key}.meta.json"


def used_key(key: str) -> str:
    """An empty object whose Last-Modified is the runtime's last use (remote gc reads it)."""
    return f"{PREFIX}{key}.used"


#: (bucket, machine) -> the names this process last wrote there.
_names_written: dict[tuple[str, str], dict] = {}
_names_lock = threading.Lock()


def names_key(machine: str) -> str:
    """The object holding one machine's runtime names."""
    return f"{NAMES_PREFIX}{machine}.json"


def machine_id(cache_root: str) -> str:
    """A stable id of one runtime cache on one host (two caches on one host: two ids)."""
    import hashlib

    text = f"{socket.gethostname()}\0{os.path.realpath(cache_root)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MachineNames:
    """One machine's published runtime names."""

    machine: str
    host: str
    updated: str
    names: dict


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class SharedRuntime:
    """A runtime published in the bucket: where its package is and who built it."""

    key: str
    bucket: str
    sha256: str
    size: int
    host: str
    created: str
    manifest: dict

    @property
    def object_key(self) -> str:
        return package_key(self.key)

    def origin(self) -> str:
        """'built by HOST on 2026-12-01'."""
        return f"built by {self.host or 'an unknown host'} on {self.created[:10] or '?'}"


class StoreError(InputProblem):
    """The team store answered something fc_magic cannot use (one line)."""


def _redacted(value: Any) -> Any:
    """A manifest value with URL credentials masked: colleagues read what is published."""
    from ..redact import redact

    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


class RuntimeStore:
    """The ``fc_magic/runtimes/`` prefix of one OSS bucket, through an ``oss2.Bucket``.

    ``prepare`` (optional) makes sure the bucket exists; it runs once, before
    the first write.
    """

    def __init__(self, bucket: Any, bucket_name: str, prepare: Any = None):
        self.bucket = bucket
        self.bucket_name = bucket_name
        self._prepare = prepare

    # ----------------------------------------------------------- reading
    def lookup(self, key: str) -> SharedRuntime | None:
        """The published runtime of ``key``, or None (no manifest, or no bucket yet)."""
        import oss2

        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"not a runtime key: {key!r}")
        try:
            result = self.bucket.get_object(manifest_key(key))
            data = result.read(MAX_MANIFEST_BYTES + 1)
        except (oss2.exceptions.NoSuchKey, oss2.exceptions.NoSuchBucket):
            return None
        return self._parse(key, data)

    def _parse(self, key: str, data: bytes) -> SharedRuntime | None:
        if len(data) > MAX_MANIFEST_BYTES:
            logger.warning("ignoring the team-cache manifest of %s: too large", key[:12])
            return None
        try:
            m = json.loads(data)
        except ValueError:
            logger.warning("ignoring the team-cache manifest of %s: not JSON", key[:12])
            return None
        if not (isinstance(m, dict) and m.get("format") == FORMAT and m.get("key") == key
                and isinstance(m.get("sha256"), str) and _SHA_RE.fullmatch(m["sha256"])
                and isinstance(m.get("size"), int)):
            logger.warning("ignoring the team-cache manifest of %s: not one fc_magic wrote",
                           key[:12])
            return None
        built = m.get("built_by") if isinstance(m.get("built_by"), dict) else {}
        return SharedRuntime(key, self.bucket_name, m["sha256"], m["size"],
                             str(built.get("host", "")), str(m.get("created", "")), m)

    def package_state(self, key: str) -> tuple[str, int] | None:
        """(sha256 from its metadata, size) of the package object of ``key``, or None."""
        import oss2

        try:
            head = self.bucket.head_object(package_key(key))
        except (oss2.exceptions.NoSuchKey, oss2.exceptions.NotFound,
                oss2.exceptions.NoSuchBucket):
            return None
        meta = {k.lower(): v for k, v in head.headers.items()}
        return meta.get("x-oss-meta-sha256", ""), int(head.content_length or 0)

    def list(self) -> list[SharedRuntime]:
        """Every published runtime under the prefix (pages followed)."""
        import oss2

        out = []
        try:
            for info in oss2.ObjectIterator(self.bucket, prefix=PREFIX, max_keys=1000):
                name = info.key[len(PREFIX):]
                if not name.endswith(".json") or not _KEY_RE.fullmatch(name[:-5]):
                    continue
                found = self.lookup(name[:-5])
                if found is not None:
                    out.append(found)
        except oss2.exceptions.NoSuchBucket:
            return []
        return out

    def machine_names(self) -> list[MachineNames]:
        """Every machine's published names (entries that are not fc_magic's are skipped)."""
        import oss2

        out = []
        try:
            for info in oss2.ObjectIterator(self.bucket, prefix=NAMES_PREFIX, max_keys=1000):
                machine = info.key[len(NAMES_PREFIX):].removesuffix(".json")
                if not (info.key.endswith(".json") and _MACHINE_RE.fullmatch(machine)):
                    continue
                if int(info.size or 0) > MAX_MANIFEST_BYTES:
                    logger.warning("ignoring %s: too large", info.key)
                    continue
                try:
                    data = json.loads(self.bucket.get_object(info.key).read())
                except oss2.exceptions.NoSuchKey:
                    continue   # that machine's names were deleted meanwhile
                except ValueError:
                    logger.warning("ignoring %s: not JSON", info.key)
                    continue
                names = data.get("names") if isinstance(data, dict) else None
                if not isinstance(names, dict):
                    logger.warning("ignoring %s: not one fc_magic wrote", info.key)
                    continue
                out.append(MachineNames(
                    machine, str(data.get("host", "")), str(data.get("updated", "")),
                    {n: k for n, k in names.items() if isinstance(n, str)
                     and FC_NAME_RE.fullmatch(n) and isinstance(k, str) and _KEY_RE.fullmatch(k)}))
        except oss2.exceptions.NoSuchBucket:
            return []
        return out

    def named_keys(self) -> set[str]:
        """The keys any machine's published names point to."""
        return {k for m in self.machine_names() for k in m.names.values()}

    # ----------------------------------------------------------- writing
    def publish_names(self, machine: str, names: dict, unless_written: bool = False) -> None:
        """Write ``machine``'s runtime names (name -> key), replacing what it wrote before.

        ``unless_written``: skip it when this process last wrote exactly these
        (every map asks; the names rarely change).
        """
        if not _MACHINE_RE.fullmatch(machine):
            raise ValueError(f"not a machine id: {machine!r}")
        memo = (self.bucket_name, machine)
        if unless_written:
            with _names_lock:
                if _names_written.get(memo) == names:
                    return
        if self._prepare is not None:
            self._prepare()
            self._prepare = None
        data = {"format": FORMAT, "machine": machine, "host": socket.gethostname(),
                "updated": _now_iso(), "names": dict(sorted(names.items()))}
        self.bucket.put_object(names_key(machine), json.dumps(data).encode(),
                               headers={"Content-Type": "application/json"})
        with _names_lock:
            _names_written[memo] = dict(names)


    def publish(self, key: str, package: str, local_manifest: dict,
                sha256: str | None = None) -> tuple[SharedRuntime, bool]:
        """(the published runtime of ``key``, whether this call uploaded the package).

        An object already there under the key with a digest in its metadata
        is never uploaded again, whoever put it there; a racing publisher's
        409 means the other one won, and its object is used.
        """
        import oss2

        if self._prepare is not None:
            self._prepare()
            self._prepare = None
        existing = self.lookup(key)
        if existing is not None and self.package_state(key) == (existing.sha256,
                                                                existing.size):
            return existing, False
        state = self.package_state(key)
        uploaded = False
        if state is None or not _SHA_RE.fullmatch(state[0] or ""):
            sha256 = sha256 or file_sha256(package)
            created = _now_iso()
            headers = {"x-oss-forbid-overwrite": "true", "x-oss-meta-sha256": sha256,
                       "x-oss-meta-built-by": socket.gethostname()[:200],
                       "x-oss-meta-created": created}
            if state is not None:
                # An object without our digest (a stranger's, or a damaged
                # upload) cannot be trusted: replace it.
                del headers["x-oss-forbid-overwrite"]
            try:
                self.bucket.put_object_from_file(package_key(key), package, headers=headers)
                uploaded = True
                state = (sha256, os.path.getsize(package))
                logger.info("published the runtime package %s (%d bytes)", key[:12], state[1])
            except oss2.exceptions.OssError as exc:
                if _status(exc) != 409:
                    raise
                state = self.package_state(key)   # another publisher won: use theirs
                if state is None:
                    raise StoreError(f"OSS refused the runtime package {key[:12]}… as "
                                     f"existing but does not show it; try again") from None
        manifest = {k: _redacted(local_manifest[k]) for k in SHARED_FIELDS
                    if k in local_manifest}
        manifest.update(format=FORMAT, key=key, sha256=state[0], size=state[1],
                        object=package_key(key), created=_now_iso(),
                        built_by={"host": socket.gethostname()})
        data = json.dumps(manifest, sort_keys=True).encode()
        headers = {"x-oss-forbid-overwrite": "true", "Content-Type": "application/json"}
        if existing is not None:
            # A manifest that does not describe the package there (it was replaced
            # or removed by hand) is corrected, not kept.
            del headers["x-oss-forbid-overwrite"]
        try:
            self.bucket.put_object(manifest_key(key), data, headers=headers)
        except oss2.exceptions.OssError as exc:
            if _status(exc) != 409:
                raise
        published = self.lookup(key)
        if published is None:
            raise StoreError(f"the team-cache manifest of {key[:12]}… did not read back; "
                             f"check the bucket's permissions (oss:GetObject)")
        return published, uploaded

    def runtime_meta(self, key: str, sha256: str) -> dict | None:
        """Lithops' runtime metadata of the package whose digest starts with ``sha256``.

        None unless a deploy of exactly that package published it.
        """
        import oss2

        try:
            data = self.bucket.get_object(meta_key(key)).read(MAX_MANIFEST_BYTES + 1)
        except (oss2.exceptions.NoSuchKey, oss2.exceptions.NoSuchBucket):
            return None
        try:
            meta = json.loads(data) if len(data) <= MAX_MANIFEST_BYTES else None
        except ValueError:
            meta = None
        if not (isinstance(meta, dict) and isinstance(meta.get("preinstalls"), list)
                and isinstance(meta.get("python_version"), str)
                and isinstance(meta.get(META_DIGEST), str)):
            logger.warning("ignoring the runtime metadata of %s: not one fc_magic wrote",
                           key[:12])
            return None
        if not (sha256 and meta.pop(META_DIGEST).startswith(sha256)):
            return None   # another package under this key (a rebuild that came out different)
        return meta

    def publish_runtime_meta(self, key: str, sha256: str, meta: dict,
                             checked_roles: list[str] = ()) -> None:
        """Keep what the package's first function answered, for every later deploy,
        with the RAM roles already seen to work on the bucket (`CHECKED_ROLES`)."""
        shared = {k: v for k, v in meta.items() if k != "runtime_timeout"}  # per function
        shared[META_DIGEST] = sha256
        shared[CHECKED_ROLES] = sorted(set(checked_roles))
        self.bucket.put_object(meta_key(key), json.dumps(shared).encode(),
                               headers={"Content-Type": "application/json"})

    def touch(self, key: str) -> None:
        """Mark ``key`` used now (remote gc never deletes a runtime used in the last hour)."""
        self.bucket.put_object(used_key(key), b"")


def store_for_storage(storage: Any, bucket_name: str) -> RuntimeStore:
    """The store in ``bucket_name``, through a Lithops `Storage`'s own OSS client."""
    handler = storage.storage_handler
    return RuntimeStore(handler._connect_bucket(bucket_name), bucket_name)


def open_store(request: Any) -> RuntimeStore:
    """The team store of an aliyun_fc request's configuration (no executor needed)."""
    import lithops

    from . import lithops_fixes
    from .aliyun_fc import aliyun_settings, auth_problem

    config, endpoints = aliyun_settings(request)
    try:
        with lithops_fixes.aliyun_endpoints(endpoints.fc, endpoints.oss_public,
                                            endpoints.oss_internal):
            storage = lithops.storage.Storage(config=config)
    except Exception as exc:  # Lithops checks nothing here, but oss2 may; sort a 403 out
        raise (auth_problem(exc, config) or exc) from None
    store = store_for_storage(storage, storage.bucket)
    store._prepare = lambda: storage.create_bucket(storage.bucket)
    return store


class lazy_store:  # noqa: N801 - used like the store it stands for
    """A `RuntimeStore` opened on first use: a local cache hit never touches OSS or config."""

    def __init__(self, request: Any):
        self._request = request
        self._store: RuntimeStore | None = None

    def _open(self) -> RuntimeStore:
        if self._store is None:
            self._store = open_store(self._request)
        return self._store

    def lookup(self, key: str) -> SharedRuntime | None:
        return self._open().lookup(key)

    def publish(self, *args, **kwargs) -> tuple[SharedRuntime, bool]:
        return self._open().publish(*args, **kwargs)

    def publish_names(self, machine: str, names: dict) -> None:
        self._open().publish_names(machine, names)
