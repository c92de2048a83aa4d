"""A local Function Compute 3.0 + OSS on 127.0.0.1, for the real SDKs and Lithops.

``with Sandbox() as sb:`` starts one on a free port with its own AccessKey
pair; ``sb.lithops_config()`` is the configuration that points Lithops (and
fc_magic) at it. ``fc-magic sandbox`` runs one from a terminal.
"""
from __future__ import annotations

from .execution import SandboxSetupError
from .server import DEFAULT_BUCKET, Faults, Sandbox

__all__ = ["Sandbox", "Faults", "SandboxSetupError", "DEFAULT_BUCKET"]
