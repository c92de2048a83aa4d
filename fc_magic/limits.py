"""Function Compute 3.0 limits, in one place.

Everything fc_magic refuses or warns about because of a Function Compute rule
reads the rule from here, so the numbers (Alibaba Cloud's FC 3.0 quotas) are
written once and the error messages that quote them stay in step.
"""
from __future__ import annotations

MEMORY_MIN_MB = 128
MEMORY_MAX_MB = 32 * 1024
MEMORY_STEP_MB = 64

TIMEOUT_MIN_S = 1
TIMEOUT_MAX_S = 86_400

#: FC's built-in Python runtimes; the client's Python must be one of them
#: because Lithops pickles functions with the client's bytecode.
FC_PYTHONS = ("3.9", "3.10", "3.12")

CODE_INLINE_MAX_BYTES = 100 * 1024 * 1024
CODE_OSS_MAX_BYTES = 500 * 1024 * 1024
UNPACKED_DISK_MAX_BYTES = 10 * 1024 * 1024 * 1024


def memory_problem(mb: object) -> str | None:
    """Say what is wrong with a memory size in MB, or None when FC accepts it."""
    if isinstance(mb, bool) or not isinstance(mb, int):
        return f"memory must be a whole number of MB, got {mb!r}"
    if not MEMORY_MIN_MB <= mb <= MEMORY_MAX_MB:
        return (f"memory {mb} MB is outside Function Compute's range "
                f"{MEMORY_MIN_MB}..{MEMORY_MAX_MB} MB")
    if mb % MEMORY_STEP_MB:
        lower = mb - mb % MEMORY_STEP_MB
        nearest = max(lower, MEMORY_MIN_MB)
        return (f"memory {mb} MB is not a multiple of {MEMORY_STEP_MB} MB "
                f"(try {nearest} or {nearest + MEMORY_STEP_MB})")
    return None


def timeout_problem(seconds: object) -> str | None:
    """Say what is wrong with a per-task timeout in seconds, or None."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        return f"timeout must be a whole number of seconds, got {seconds!r}"
    if not TIMEOUT_MIN_S <= seconds <= TIMEOUT_MAX_S:
        return (f"timeout {seconds} s is outside Function Compute's range "
                f"{TIMEOUT_MIN_S}..{TIMEOUT_MAX_S} s")
    return None
