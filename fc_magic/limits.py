"""Function Compute 3.0 limits, in one place.

Everything fc_magic refuses or warns about because of a Function Compute rule
reads the rule from here, so the numbers (Alibaba Cloud's FC 3.0 quotas) are
written once and the error messages that quote them stay in step.
"""
from __future__ import annotations

import math
import re
import sys

MEMORY_MIN_MB = 128
MEMORY_MAX_MB = 32 * 1024
MEMORY_STEP_MB = 64

#: vCPU per function (FC 3.0): multiples of 0.05 in 0.05..16, and vCPU :
#: memory GB between 1:1 and 1:4.
CPU_STEP = 0.05
CPU_MIN = 0.05
CPU_MAX = 16.0
GB_PER_VCPU_MIN = 1.0
GB_PER_VCPU_MAX = 4.0
#: Disk sizes FC offers (MB); fc_magic always asks for the smaller, unbilled one.
DISK_SIZES_MB = (512, 10240)
DISK_MB = 512

TIMEOUT_MIN_S = 1
TIMEOUT_MAX_S = 86_400

#: FC's built-in Python runtimes (x86_64), from Alibaba Cloud's FC 3.0 docs.
FC_PYTHONS = ("3.9", "3.10", "3.12")
#: Lithops >= 3.8's own floor (its Requires-Python): pip installs neither
#: Lithops nor fc_magic below it. pyproject.toml's requires-python says the same.
LITHOPS_MIN_PYTHON = "3.10"


def _as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


#: The kernels fc_magic supports: the FC runtimes Lithops runs on. The kernel's
#: Python must be one of them because Lithops pickles the function with the
#: kernel's bytecode and the FC runtime of the same version unpickles it.
SUPPORTED_PYTHONS = tuple(p for p in FC_PYTHONS
                          if _as_tuple(p) >= _as_tuple(LITHOPS_MIN_PYTHON))

#: Code packages up to this size go inline in CreateFunction (base64 in the
#: request, FC's SDK limit); larger ones through an OSS code location.
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


def _cpu_steps(value: float, up: bool) -> int:
    steps = round(value / CPU_STEP, 9)
    return int(math.ceil(steps) if up else math.floor(steps))


def cpu_range(memory_mb: int) -> tuple[float, float]:
    """(least, most) vCPU Function Compute allows with ``memory_mb`` of memory."""
    gb = memory_mb / 1024
    low = max(_cpu_steps(gb / GB_PER_VCPU_MAX, up=True) * CPU_STEP, CPU_MIN)
    high = min(_cpu_steps(gb / GB_PER_VCPU_MIN, up=False) * CPU_STEP, CPU_MAX)
    return round(low, 2), round(high, 2)


def default_cpu(memory_mb: int) -> float:
    """The vCPU a map gets when none is chosen: the least FC allows (its 1:4 ratio)."""
    return cpu_range(memory_mb)[0]


def cpu_problem(cpu: object, memory_mb: int | None = None) -> str | None:
    """Say what is wrong with a vCPU value (for ``memory_mb``, if given), or None."""
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu != cpu:
        return f"cpu must be a number of vCPU, got {cpu!r}"
    if not CPU_MIN <= cpu <= CPU_MAX or abs(round(cpu / CPU_STEP) * CPU_STEP - cpu) > 1e-9:
        return (f"cpu {cpu:g} is not a multiple of {CPU_STEP} vCPU in "
                f"{CPU_MIN}..{CPU_MAX:g}")
    if memory_mb is not None:
        low, high = cpu_range(memory_mb)
        if not low - 1e-9 <= cpu <= high + 1e-9:
            return (f"cpu {cpu:g} does not fit {memory_mb} MB: Function Compute needs vCPU : "
                    f"memory GB between 1:1 and 1:4, so {low:g}..{high:g} vCPU at "
                    f"{memory_mb} MB")
    return None


def timeout_problem(seconds: object) -> str | None:
    """Say what is wrong with a per-task timeout in seconds, or None."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        return f"timeout must be a whole number of seconds, got {seconds!r}"
    if not TIMEOUT_MIN_S <= seconds <= TIMEOUT_MAX_S:
        return (f"timeout {seconds} s is outside Function Compute's range "
                f"{TIMEOUT_MIN_S}..{TIMEOUT_MAX_S} s")
    return None


#: Function Compute's limit on a function name (FC 3.0 API, functionName).
FC_FUNCTION_NAME_MAX = 64
#: FC function names: a letter or `_` first, then letters, digits, `_`, `-` (a full match).
FC_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")

#: Function Compute's preinstalled Python packages per runtime and their versions, as
#: Alibaba Cloud's "Python runtime / built-in modules" pages list them
#: (help.aliyun.com/document_detail/2512973.html for 3.12, 158208 for 3.10 and 3.9;
#: read 2026). The sandbox installs exactly these versions as each runtime's base
#: environment. "" where the page gives no version pip can install: PyMySQL "1.4.6"
#: and alibabacloud-sts20150401 "3.1.0" (3.12; the latter is aliyun-python-sdk-sts's)
#: and pyOpenSSL "1.0.2" (3.10, the OpenSSL version) exist on no index, and the
#: page's 3.9 scrapy row has none; those install at their latest. The 3.9 table is
#: longer than what is listed here; a package missing from this list only makes the
#: pre-flight ask the user to declare it, which is safe.
FC_BUILTIN_VERSIONS: dict[str, dict[str, str]] = {
    "3.12": {"oss2": "2.18.6", "alibabacloud-ecs20140526": "4.1.9",
             "alibabacloud-vpc20160428": "6.7.2", "alibabacloud-rds20140815": "6.0.1",
             "alibabacloud-kms20160120": "2.2.1", "alibabacloud-mns-open20220119": "1.0.3",
             "alibabacloud-cdn20180510": "4.0.0", "alibabacloud-ram20150501": "1.1.0",
             "alibabacloud-sts20150401": "", "alibabacloud-iot20180120": "5.1.0",
             "alibabacloud-sls20201230": "5.2.2", "wand": "0.6.11", "scrapy": "2.11.2",
             "pymysql": "", "elasticsearch": "8.14.0", "pillow": "10.4.0",
             "pyopenssl": "24.2.1", "redis": "5.0.7", "requests": "2.32.3"},
    "3.10": {"oss2": "2.16.0", "tablestore": "5.4.1", "aliyun-fc2": "2.5.2",
             "aliyun-python-sdk-ecs": "4.24.26", "aliyun-python-sdk-vpc": "3.0.27",
             "aliyun-python-sdk-rds": "2.7.2", "aliyun-python-sdk-kms": "2.16.0",
             "aliyun-mns": "1.1.5", "aliyun-python-sdk-cdn": "3.7.8",
             "aliyun-python-sdk-ram": "3.2.0", "aliyun-python-sdk-sts": "3.1.0",
             "aliyun-python-sdk-iot": "8.47.0", "aliyun-log-python-sdk": "0.8.0",
             "wand": "0.6.10", "scrapy": "2.7.1", "pymysql": "1.0.2",
             "elasticsearch": "8.5.2", "pillow": "9.3.0", "pyopenssl": "", "redis": "4.4.0",
             "requests": "2.28.1"},
    "3.9": {"oss2": "2.15.0", "tablestore": "5.2.1", "aliyun-fc2": "2.5.0",
            "aliyun-python-sdk-ecs": "4.24.11", "aliyun-python-sdk-vpc": "3.0.15",
            "aliyun-python-sdk-rds": "2.6.1", "aliyun-python-sdk-kms": "2.15.0",
            "aliyun-mns": "1.1.5", "aliyun-python-sdk-cdn": "3.6.7",
            "aliyun-python-sdk-ram": "3.2.0", "aliyun-python-sdk-sts": "3.1.0",
            "aliyun-python-sdk-iot": "8.30.0", "aliyun-log-python-sdk": "0.7.3",
            "wand": "0.6.7", "opencv-python": "4.5.4.58", "numpy": "1.21.4",
            "scipy": "1.7.2", "matplotlib": "3.4.3", "scrapy": ""},
}
#: The distributions alone (what the pre-flight check trusts FC to have).
FC_BUILTIN_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    python: tuple(versions) for python, versions in FC_BUILTIN_VERSIONS.items()}


def fc_builtin_pins(python: str) -> tuple[str, ...]:
    """pip requirements for FC's preinstalled packages on a Python, at FC's versions."""
    return tuple(f"{name}=={version}" if version else name
                 for name, version in FC_BUILTIN_VERSIONS.get(python, {}).items())


def python_version() -> str:
    """This interpreter's Python as "X.Y", the form FC runtimes are named by."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def python_problem(python: str | None = None) -> str | None:
    """One line saying why Python `python` (default: this one) cannot map on FC, or None."""
    python = python or python_version()
    if python in SUPPORTED_PYTHONS:
        return None
    *rest, last = SUPPORTED_PYTHONS
    pythons = f"{', '.join(rest)} and {last}" if rest else last
    return (f"Python {python} cannot run maps on Function Compute: fc_magic supports "
            f"Python {pythons}, the FC runtimes Lithops >= 3.8 runs on, because the "
            f"kernel's Python and the FC runtime's must match (Lithops sends your function "
            f"as this Python's bytecode); start the kernel with one of those")
