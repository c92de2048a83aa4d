"""fc_magic: run notebook functions on Alibaba Cloud Function Compute via Lithops.

    %load_ext fc_magic
    %fc_map score range(1000) --out results
"""
from __future__ import annotations

__version__ = "0.1.0"


def load_ipython_extension(ip) -> None:
    """Register `FCMagic` (magics and its traitlets config) and nothing else.

    On a Python that Function Compute maps cannot use, say so in one line now
    rather than at the first aliyun_fc map: localhost maps still work.
    """
    import sys

    from .limits import python_problem
    from .magics import FCMagic

    if "FCMagic" in ip.magics_manager.registry:
        return
    problem = python_problem()
    if problem:
        print(f"fc_magic: {problem} (localhost maps work here)", file=sys.stderr)
    # register_magics also adds it to ip.configurables, so %config sees it.
    ip.register_magics(FCMagic(shell=ip))


def unload_ipython_extension(ip) -> None:
    """Release what `load_ipython_extension` registered, and stop its background maps."""
    import sys

    if "fc_magic.background" in sys.modules:  # only if a background map was ever started
        sys.modules["fc_magic.background"].cancel_all()
    manager = ip.magics_manager
    magics = manager.registry.pop("FCMagic", None)
    if magics is None:
        return
    ip.configurables[:] = [c for c in ip.configurables if c is not magics]
    ip.unobserve(magics._on_exit_now, names="exit_now")
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
