"""Function Compute cost ESTIMATES, with FC's price table written once.

Function Compute 3.0 bills in Compute Units (CU): 0.15 CU per GB-second of
memory, 1 CU per vCPU-second and 75 CU per 10,000 invocations, at about
$0.000020 per CU in the first pay-as-you-go tier. Every figure fc_magic shows
(the memory slider, the right-sizing hint) comes from here and is labelled an
estimate: real bills round durations, add idle/cold-start time, vary with the
region and tier, and Lithops' worker adds its own time to each call.

The vCPU is the one the function is created with: `FCMagic.cpu` / `--cpu`
when set, otherwise the *smallest* vCPU FC's 1:1..1:4 rule allows for the
memory (memory_GB / 4, rounded up to 0.05; `limits.default_cpu`), which
fc_magic then passes explicitly, so the estimate assumes what FC runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from . import limits

CU_PER_GB_S = 0.15
CU_PER_VCPU_S = 1.0
CU_PER_INVOCATION = 75 / 10_000
USD_PER_CU = 0.000020

VCPU_RULE = "smallest vCPU FC allows: memory GB / 4 (FC's 1:4 ratio), in 0.05 steps"

#: Head-room over the measured peak when suggesting a smaller memory size.
HEADROOM = 1.25


def vcpu_for_memory(memory_mb: int, cpu: float | None = None) -> float:
    """The vCPU a function of this memory size runs with: ``cpu``, or `VCPU_RULE`'s."""
    return cpu if cpu else limits.default_cpu(memory_mb)


def cu_per_second(memory_mb: int, cpu: float | None = None) -> float:
    """Compute Units one instance of this memory size (and vCPU) uses per second."""
    return CU_PER_GB_S * memory_mb / 1024 + CU_PER_VCPU_S * vcpu_for_memory(memory_mb, cpu)


@dataclass(frozen=True)
class CostEstimate:
    """An estimated bill for a set of task durations at one memory size."""

    memory_mb: int
    vcpu: float
    tasks: int
    billed_s: float
    cu: float

    @property
    def usd(self) -> float:
        return self.cu * USD_PER_CU

    def describe(self) -> str:
        """'≈ $0.0012 (60 CU) for 300 invocations at 512 MB / 0.15 vCPU (estimate)'."""
        return (f"≈ {fmt_usd(self.usd)} ({fmt_cu(self.cu)} CU) for {self.tasks} "
                f"invocation{'s' if self.tasks != 1 else ''} at "
                f"{self.memory_mb} MB / {self.vcpu:g} vCPU (estimate)")


def _significant(x: float, digits: int) -> str:
    """``x`` with ``digits`` significant digits in plain notation (no exponent)."""
    if x == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    return f"{x:,.{decimals}f}"


def fmt_usd(usd: float) -> str:
    """Amounts as a person writes them: '$0.00012', '$0.042', '$1.23', '$1,234'."""
    if usd >= 100:
        return f"${usd:,.0f}"
    if usd >= 1:
        return f"${usd:,.2f}"
    return "$" + _significant(usd, 2)


def fmt_cu(cu: float) -> str:
    """Compute Units to three significant digits: '0.0750', '12.4', '1,240'."""
    return f"{cu:,.0f}" if cu >= 1000 else _significant(cu, 3)


def estimate(durations_s: Iterable[float | None], memory_mb: int,
             cpu: float | None = None, invocations: int | None = None) -> CostEstimate:
    """Estimate what these task durations would cost at ``memory_mb``.

    Tasks without a measured duration are still invoked (and billed for the
    invocation) but add no seconds: the estimate errs low, and says so.
    ``invocations``: how many calls were sent (default: one per duration).
    """
    durations = list(durations_s)
    calls = len(durations) if invocations is None else invocations
    billed = sum(d for d in durations if d is not None and d > 0)
    cu = billed * cu_per_second(memory_mb, cpu) + CU_PER_INVOCATION * calls
    return CostEstimate(memory_mb, vcpu_for_memory(memory_mb, cpu), calls, billed, cu)


def never_sent(result) -> int:
    """Tasks of a cancelled map that never ran (cancelled, nothing measured): not invocations."""
    return sum(1 for value, stats in zip(result.values, result.stats)
               if getattr(value, "cancelled", False) and stats.duration_s is None)


#: Said next to every "N x cheaper": the estimate does not model CPU speed.
SAME_DURATIONS = "if each task takes as long at that size"


def assumptions(result) -> list[str]:
    """What an estimate of ``result`` assumes, in a few words each."""
    said = []
    if result.backend == "localhost":
        said.append("durations measured on this machine, not on Function Compute")
    skipped = never_sent(result)
    if skipped:
        said.append(f"{skipped} cancelled task{'s' if skipped != 1 else ''} never sent, "
                    f"not counted")
    return said


def fitting_cpu(cpu: float | None, memory_mb: int) -> float | None:
    """``cpu`` if FC allows it with ``memory_mb``, else None (the default for that size)."""
    if cpu and limits.cpu_problem(cpu, memory_mb) is None:
        return cpu
    return None


def estimate_result(result, memory_mb: int | None = None,
                    cpu: float | None = None) -> CostEstimate:
    """Cost of a finished `MapResult`'s measured durations at a memory size (and vCPU).

    A chosen vCPU that the memory size does not allow (the slider moved to a
    size where it breaks FC's ratio) falls back to that size's default.
    """
    memory = memory_mb or result.memory_mb or limits.MEMORY_MIN_MB
    return estimate((s.duration_s for s in result.stats), memory, fitting_cpu(cpu, memory),
                    invocations=len(result.stats) - never_sent(result))


def round_up_memory(mb: float) -> int:
    """The smallest memory size FC accepts that holds ``mb``."""
    step = limits.MEMORY_STEP_MB
    value = int(math.ceil(mb / step)) * step
    return min(max(value, limits.MEMORY_MIN_MB), limits.MEMORY_MAX_MB)


@dataclass(frozen=True)
class SizingHint:
    """What the measured peak says about the memory size of a map."""

    peak_mb: float
    memory_mb: int
    suggested_mb: int
    #: cost at memory_mb / cost at suggested_mb for the measured durations.
    factor: float

    #: Below this saving a smaller size is not worth a line of output.
    MIN_FACTOR = 1.5

    @property
    def worth_saying(self) -> bool:
        """A real saving, or a peak near the limit; not "1.0x cheaper"."""
        return self.suggested_mb > self.memory_mb or (
            self.suggested_mb < self.memory_mb and self.factor >= self.MIN_FACTOR)

    def describe(self) -> str:
        if self.suggested_mb < self.memory_mb and self.factor < self.MIN_FACTOR:
            return (f"peak {self.peak_mb:.0f} MB of {self.memory_mb} MB: {self.suggested_mb} MB "
                    f"would do; the saving is small for tasks this short (estimate)")
        if self.suggested_mb < self.memory_mb:
            return (f"peak {self.peak_mb:.0f} MB of {self.memory_mb} MB: {self.suggested_mb} MB "
                    f"would do, about {self.factor:.1f}x cheaper ({SAME_DURATIONS}; "
                    f"estimate)")
        if self.suggested_mb > self.memory_mb:
            return (f"peak {self.peak_mb:.0f} MB of {self.memory_mb} MB: close to the limit; "
                    f"{self.suggested_mb} MB would be safer")
        return f"peak {self.peak_mb:.0f} MB of {self.memory_mb} MB: a good fit"


def sizing_hint(result) -> SizingHint | None:
    """Right-size a finished map from its measured peak memory (None: nothing measured)."""
    peaks = [s.peak_memory_mb for s in result.stats if s.peak_memory_mb]
    if not peaks or not result.memory_mb:
        return None
    peak = max(peaks)
    suggested = round_up_memory(peak * HEADROOM)
    now = estimate_result(result, result.memory_mb, result.cpu)
    then = estimate_result(result, suggested, result.cpu)
    factor = now.cu / then.cu if then.cu else 1.0
    return SizingHint(peak, result.memory_mb, suggested, factor)
