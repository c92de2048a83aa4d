"""What Lithops itself decides (worker packages, function names, its version), asked of Lithops.

Other modules need these facts without running a map: the requirement list
adds Lithops' worker packages, the runtime-name check needs Lithops' function
naming rule. They are read from the installed Lithops, so a Lithops upgrade
changes them in one place.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os

#: The Lithops versions the test suite runs against (pyproject pins the same range).
TESTED_LITHOPS = (">=3.8", "<3.9")


#: fc_magic's FC handler (`fc_entry_point`), shipped as ``entry_point.py`` in every FC package.
FC_HANDLER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fc_entry_point.py")


@functools.lru_cache(maxsize=1)
def fc_handler_digest() -> str:
    """sha256 of the FC handler's source: part of an FC runtime's key, so a new handler rebuilds."""
    import hashlib

    with open(FC_HANDLER_FILE, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def lithops_version() -> str:
    """The installed Lithops version (part of every runtime's content key)."""
    return importlib.metadata.version("lithops")


def fc_function_name(runtime_name: str, memory_mb: int) -> str:
    """The FC function name Lithops' aliyun_fc backend derives from (runtime, memory).

    Asked of Lithops itself (its naming method uses no instance state) so the
    runtime-name limit fc_magic enforces follows whatever Lithops does.
    """
    from lithops.serverless.backends.aliyun_fc.aliyun_fc import AliyunFunctionComputeBackend

    return AliyunFunctionComputeBackend._format_function_name(None, runtime_name, memory_mb)


def fc_worker_requirements() -> list[str]:
    """The requirement lines Lithops installs into its aliyun_fc zip runtime."""
    from lithops.serverless.backends.aliyun_fc import config

    lines = (line.split("#", 1)[0].strip() for line in config.REQUIREMENTS_FILE.splitlines())
    return [line for line in lines if line]


@functools.lru_cache(maxsize=1)
def worker_sources() -> tuple[str, ...]:
    """The source text of Lithops' worker modules (read, never imported)."""
    spec = importlib.util.find_spec("lithops")
    if spec is None or not spec.submodule_search_locations:
        return ()
    worker = os.path.join(list(spec.submodule_search_locations)[0], "worker")
    sources = []
    for name in sorted(os.listdir(worker)):
        if name.endswith(".py"):
            with open(os.path.join(worker, name), encoding="utf-8") as fh:
                sources.append(fh.read())
    return tuple(sources)
