"""`MapRequest`: where and how to run one map, as plain data the magic fills in."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MapRequest:
    """Where and how to run a map; the magic fills it from traits and flags."""

    backend: str = "localhost"
    #: localhost: absolute path of the interpreter that runs tasks (None: this
    #: kernel's). aliyun_fc: the deployed runtime name.
    runtime: str | None = None
    memory_mb: int = 256
    timeout_s: int = 300
    #: Parallel worker processes on localhost (None: one per core).
    workers: int | None = None
    #: Extra Lithops configuration sections merged over the defaults.
    extra_config: dict = field(default_factory=dict)
    #: aliyun_fc: the runtime's code package zip (RuntimeEntry.package), deployed
    #: as the FC function for (runtime, memory) unless FC already has it.
    package: str | None = None
    #: aliyun_fc: the runtime's content key (its package's name in OSS) and its
    #: manifest (published beside the package). A team-cache runtime has a key
    #: and no local package.
    package_key: str | None = None
    package_manifest: dict = field(default_factory=dict)
    #: aliyun_fc: this runtime cache's names -> keys and its machine id
    #: (`aliyun_store.machine_id`), published in the bucket so every machine's
    #: remote gc keeps what these names use.
    runtime_names: dict = field(default_factory=dict)
    machine: str | None = None
    #: aliyun_fc: vCPU of the function (None: the least FC allows for memory_mb).
    cpu: float | None = None
    #: aliyun_fc settings; None takes the Lithops config file's, then Lithops' defaults.
    region: str | None = None
    fc_endpoint: str | None = None
    oss_endpoint: str | None = None
    #: The Lithops config file holding the credentials (None: Lithops' own lookup).
    config_file: str | None = None
    #: aliyun_fc: the aliyun CLI / credentials.ini profile to take credentials from.
    profile: str | None = None
    #: How each task calls FUNC: "item" FUNC(item), "star" FUNC(*item), "kwargs" FUNC(**item).
    call: str = "item"
    #: Keyword arguments every call gets (`--const`), sent once per map with the function.
    constants: dict = field(default_factory=dict, repr=False)
    #: `--reduce G`: run G(list of results in input order) remotely after the map.
    reduce: Any = field(default=None, repr=False)
    #: Run G over the successful results even when some tasks failed.
    reduce_partial: bool = False


def merge_sections(config: dict, extra: dict) -> dict:
    """Merge ``extra`` Lithops config sections over ``config`` (section by section)."""
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config
