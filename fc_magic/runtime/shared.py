"""The team cache: an FC runtime missing here is taken from OSS; a new build is published there.

`team_runtime` is `ensure_runtime` for the ``fc`` target with a shared
store (`fc_magic.backends.aliyun_store.RuntimeStore`) behind the local
cache. A runtime this machine lacks but the bucket has becomes a local
entry holding only its manifest (what pre-flight and listings read): nothing
is built or downloaded, because deploying needs only the OSS object. A
runtime nobody has is built here and published, once, for everyone.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import SUCCESS, BuildSnapshot, RuntimeEntry, _Reporter, _use, cache, ensure_runtime

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TeamOutcome:
    """What the team cache did for one `%%fc_runtime`: hit, published, or why it was skipped."""

    entry: RuntimeEntry
    #: One line for the user (empty: nothing to say, e.g. a local cache hit).
    message: str = ""


def _store_errors() -> tuple[type[BaseException], ...]:
    import oss2

    from ..errors import InputProblem
    return (InputProblem, oss2.exceptions.OssError)


def team_runtime(name: str, requirements, *, store: Any, cache_dir: str,
                 rebuild: bool = False,
                 on_snapshot: Callable[[BuildSnapshot], None] | None = None,
                 installer: str = "auto",
                 clock: Callable[[], float] = time.monotonic) -> TeamOutcome:
    """The ``fc`` runtime for ``requirements``: local cache, then the team cache, then a build.

    A store that cannot be reached (no credentials yet, the network) costs a
    note and the local path; the package is then published by the first map.
    """
    key = requirements.key
    root = cache.runtimes_root(cache_dir)
    path = cache.entry_dir(root, "fc", key)
    _manifest, problem = cache.entry_problem(path, "fc", key)
    if problem is None and not rebuild:
        return TeamOutcome(ensure_runtime(name, requirements, target="fc", cache_dir=cache_dir,
                                          on_snapshot=on_snapshot,
                                          installer=installer, clock=clock))
    if not rebuild:
        try:
            shared = store.lookup(key)
        except _store_errors() as exc:
            logger.debug("team cache lookup failed: %s", exc)
            shared, skipped = None, _why(exc)
        else:
            skipped = ""
        if shared is not None:
            entry = _adopt(root, path, name, shared)
            _publish_names(store, root)
            report = _Reporter(name, "fc", key, on_snapshot, clock)
            report.emit(status=SUCCESS, cache_hit=True, origin=shared.origin(),
                        sizes=tuple(entry.sizes), total_bytes=entry.manifest.get("total_bytes"),
                        package_bytes=entry.manifest.get("package_bytes"))
            return TeamOutcome(entry)
    else:
        skipped = ""
    entry = ensure_runtime(name, requirements, target="fc", cache_dir=cache_dir,
                           rebuild=rebuild, on_snapshot=on_snapshot,
                           installer=installer, clock=clock)
    if entry.package is None:   # adopted from the team meanwhile by another kernel here
        return TeamOutcome(entry)
    if skipped:
        return TeamOutcome(entry, f"team cache not used ({skipped}); the first map uploads "
                                  f"the package")
    try:
        shared, uploaded = store.publish(key, entry.package, entry.manifest,
                                         sha256=entry.manifest.get("package_sha256"))
    except _store_errors() as exc:
        logger.debug("team cache publish failed: %s", exc)
        return TeamOutcome(entry, f"not published to the team cache ({_why(exc)}); the first "
                                  f"map uploads the package")
    _publish_names(store, root)
    where = f"oss://{shared.bucket}/{shared.object_key}"
    if uploaded:
        return TeamOutcome(entry, f"published to the team cache: {where}")
    return TeamOutcome(entry, f"the team cache already had it ({shared.origin()}): {where}")


def publish_names(store: Any, cache_dir: str) -> None:
    """Write this cache's fc runtime names to the bucket (what other machines' gc keeps)."""
    from ..backends.aliyun_store import machine_id
    from . import fc_names

    root = cache.runtimes_root(cache_dir)
    store.publish_names(machine_id(root), fc_names(root))


def _publish_names(store: Any, root: str) -> None:
    """`publish_names` where the store is open anyway; a failure is left to the first map."""
    from ..backends.aliyun_store import machine_id
    from . import fc_names

    try:
        store.publish_names(machine_id(root), fc_names(root))
    except _store_errors() as exc:
        logger.debug("publishing the runtime names failed (the first map retries): %s", exc)


def _why(exc: BaseException) -> str:
    """A short reason from a store error, never a credential."""
    from ..redact import redact

    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    if status is not None:
        return f"OSS answered {status} {code or ''}".strip()
    return redact(str(exc))[:160]


def _adopt(root: str, path: str, name: str, shared: Any) -> RuntimeEntry:
    """A local entry for a team runtime: its manifest only, published like any entry."""
    manifest = _checked(shared.manifest)
    manifest.update(format=cache.FORMAT, key=shared.key, target="fc", name=name,
                    created=shared.created, check_files={}, notes=[],
                    shared={"bucket": shared.bucket, "object": shared.object_key,
                            "sha256": shared.sha256, "size": shared.size,
                            "host": shared.host, "created": shared.created})
    with cache.key_lock(root, "fc", shared.key):
        current, problem = cache.entry_problem(path, "fc", shared.key)
        if problem is None:   # built or adopted meanwhile by another kernel here
            return _use(root, name, path, current)
        build_dir = cache.new_build_dir(root, "fc", shared.key)
        try:
            cache.write_manifest(build_dir, manifest)
            if current is not None or problem != "absent":
                cache.discard(path)
            cache.publish(build_dir, path)
        except BaseException:
            cache.discard(build_dir)
            raise
        return _use(root, name, path, manifest)


def _checked(m: dict) -> dict:
    """The shared manifest's fields of the right types only: another machine wrote it."""
    def strings(value) -> list[str]:
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def number(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    out = {k: m[k] for k in ("python", "lithops_version", "backend", "installer", "platform",
                             "handler") if isinstance(m.get(k), str)}
    out.update({k: m[k] for k in ("total_bytes", "package_bytes") if number(m.get(k))})
    out["requirements"] = strings(m.get("requirements"))
    out["user_requirements"] = strings(m.get("user_requirements"))
    out["sizes"] = [row for row in m.get("sizes") or () if isinstance(row, list)
                    and len(row) == 3 and isinstance(row[0], str) and number(row[1])
                    and (row[2] is None or number(row[2]))]
    return out


@dataclass(frozen=True)
class SharedRow:
    """One runtime of the team cache, for `%fc_runtime --list`."""

    key: str
    size_bytes: int
    origin: str
    packages: tuple[str, ...]


def list_shared(store: Any) -> list[SharedRow]:
    """The team cache's runtimes (newest first)."""
    rows = [SharedRow(s.key, s.size, s.origin(),
                      tuple(str(p) for p in s.manifest.get("user_requirements") or ()))
            for s in store.list()]
    return sorted(rows, key=lambda r: r.origin, reverse=True)
