"""The cost estimate and right-sizing arithmetic, figure by figure (FC's price table)."""
from __future__ import annotations

import pytest

from fc_magic.pricing import (
    CU_PER_INVOCATION,
    SizingHint,
    cu_per_second,
    estimate,
    estimate_result,
    sizing_hint,
    vcpu_for_memory,
)
from fc_magic.results import MapResult, TaskStats


@pytest.mark.parametrize("mb, vcpu", [
    (128, 0.05), (512, 0.15), (1024, 0.25), (4096, 1.0),
    (14_144, 3.5),     # 69.0625 steps of 0.05 vCPU: rounded up, by exactly 1024 MB per GB
    (32_768, 8.0),
])
def test_vcpu_is_the_smallest_fc_allows(mb, vcpu):
    assert vcpu_for_memory(mb) == pytest.approx(vcpu)


def test_estimate_bills_measured_seconds_and_every_invocation():
    est = estimate([0.5, None, 0, -1.0, 2.0], 512)
    assert (est.memory_mb, est.vcpu, est.tasks) == (512, pytest.approx(0.15), 5)
    assert est.billed_s == pytest.approx(2.5)          # unknown, zero and negative add nothing
    assert cu_per_second(512) == pytest.approx(0.15 * 0.5 + 0.15)
    assert est.cu == pytest.approx(2.5 * 0.225 + 5 * CU_PER_INVOCATION)
    assert est.usd == pytest.approx(est.cu * 0.000020)


def _result(memory_mb, peaks, durations=None) -> MapResult:
    durations = durations or [1.0] * len(peaks)
    return MapResult(values=list(range(len(peaks))), inputs=list(range(len(peaks))),
                     stats=[TaskStats(i, d, p) for i, (d, p) in enumerate(zip(durations, peaks))],
                     memory_mb=memory_mb)


def test_estimate_result_uses_the_maps_own_memory_unless_told():
    result = _result(512, [100, 120])
    assert estimate_result(result).memory_mb == 512
    assert estimate_result(result, 1024).memory_mb == 1024
    assert estimate_result(_result(None, [100])).memory_mb == 128


def test_sizing_hint_needs_a_peak_and_a_memory_size():
    assert sizing_hint(_result(512, [None, None])) is None
    assert sizing_hint(_result(None, [100, 120])) is None
    hint = sizing_hint(_result(1024, [100, 180]))
    assert (hint.peak_mb, hint.memory_mb, hint.suggested_mb) == (180, 1024, 256)
    now, then = estimate_result(_result(1024, [100, 180]), 1024), estimate_result(
        _result(1024, [100, 180]), 256)
    assert hint.factor == pytest.approx(now.cu / then.cu)


@pytest.mark.parametrize("suggested, factor, says, worth", [
    (256, 2.9, "peak 180 MB of 1024 MB: 256 MB would do, about 2.9x cheaper "
                "(if each task takes as long at that size; estimate)", True),
    (256, 1.5, "peak 180 MB of 1024 MB: 256 MB would do, about 1.5x cheaper "
                "(if each task takes as long at that size; estimate)", True),
    (256, 1.4, "peak 180 MB of 1024 MB: 256 MB would do; the saving is small for tasks this "
               "short (estimate)", False),
    (1024, 1.0, "peak 180 MB of 1024 MB: a good fit", False),
    (1280, 0.8, "peak 180 MB of 1024 MB: close to the limit; 1280 MB would be safer", True),
])
def test_hint_wording_at_its_edges(suggested, factor, says, worth):
    hint = SizingHint(180, 1024, suggested, factor)
    assert hint.describe() == says
    assert hint.worth_saying is worth
