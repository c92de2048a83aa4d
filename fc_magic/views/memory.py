"""The memory slider: FC's valid sizes, bound to a memory `Setting`, with a cost estimate.

Moving the slider sets the trait (so the next map uses it); setting the
trait (`%config FCMagic.memory = 640`) moves every live slider. Next to it,
the estimated cost of the last map at the chosen size, from its measured
durations (`fc_magic.pricing`, labelled an estimate), and a "re-run with
this memory" button when the caller can re-run.
"""
from __future__ import annotations

import html
import logging
import weakref
from typing import Callable

import ipywidgets as w

from .. import limits, pricing
from ..setting import Setting
from .fallback import TextFallback

logger = logging.getLogger(__name__)

#: Slider stops: every 64 MB up to 512, then coarser; any other valid size
#: (set with %config or --memory) is added as its own stop when it is used.
STOPS = (list(range(128, 512, 64)) + list(range(512, 1024, 128)) + list(range(1024, 4096, 256))
         + list(range(4096, 16384, 1024)) + list(range(16384, limits.MEMORY_MAX_MB + 1, 4096)))


def memory_stops(*extra: int | None) -> list[int]:
    """The slider's stops plus any FC-valid sizes that must be selectable."""
    values = set(STOPS)
    values.update(v for v in extra if v is not None and limits.memory_problem(v) is None)
    return sorted(values)


def _label(mb: int) -> str:
    return f"{mb} MB" if mb < 1024 else f"{mb} MB ({mb / 1024:g} GB)"


class MemorySlider(TextFallback):
    """A SelectionSlider over FC's memory sizes, its cost line and re-run button.

    ``memory`` is the `Setting` it shows and moves (FCMagic.memory); with
    ``on_change`` the slider reports there instead and does not follow the
    setting. ``value`` is where it starts (default: the setting's value).
    ``cpu`` (FCMagic.cpu, 0 for FC's least) is the vCPU the sizes and costs
    are shown with; a size where it breaks FC's ratio shows that size's least.
    """

    def __init__(self, memory: Setting, value: int | None = None, *, result=None,
                 on_change: Callable[[int], None] | None = None,
                 on_rerun: Callable[[int, w.Box], None] | None = None, follow: bool = True,
                 cpu: Setting | None = None):
        self.memory = memory
        self.cpu = cpu
        self.result = result
        self._on_change = on_change
        self._on_rerun = on_rerun
        start = value if value is not None else memory.value
        self.slider = w.SelectionSlider(
            options=[(_label(v), v) for v in memory_stops(start, memory.value)],
            value=start, description="memory", continuous_update=False,
            layout=w.Layout(width="480px"), style={"description_width": "initial"})
        self.info = w.HTML()
        self.rerun = w.Button(description="Re-run with this memory", icon="redo",
                              disabled=on_rerun is None or result is None,
                              layout=w.Layout(width="auto", flex="0 0 auto"),
                              tooltip="Run every task of that map again at the chosen memory; "
                                      "its live row shows here and can be cancelled")
        #: Where a re-run started here draws its live row, then its receipt.
        self.stage = w.VBox([])
        self.box = w.VBox([w.HBox([self.slider, self.rerun]), self.info, self.stage])
        self.slider.observe(self._slider_moved, "value")
        self.rerun.on_click(lambda _b: self._rerun())
        if on_change is None and follow:
            # A weak reference, so a slider whose output was cleared does not
            # keep itself alive through the setting's observers.
            ref = weakref.ref(self)
            stop: list[Callable[[], None]] = []

            def follow(new: int) -> None:
                me = ref()
                if me is None or me.slider.comm is None:
                    stop[0]()
                    return
                me.set_value(new)

            stop.append(memory.observe(follow))
        self._describe(start)

    @property
    def value(self) -> int:
        return self.slider.value

    def set_value(self, mb: int) -> None:
        """Show ``mb`` (adding it as a stop when it is not one already)."""
        if mb not in [v for _, v in self.slider.options]:
            self.slider.options = [(_label(v), v) for v in memory_stops(mb, self.slider.value)]
        self.slider.value = mb

    def _slider_moved(self, change) -> None:
        mb = change["new"]
        if self._on_change is not None:
            self._on_change(mb)
        else:
            self.memory.set(mb)
        self._describe(mb)

    def _describe(self, mb: int) -> None:
        if self.result is not None:
            self.rerun.description = f"Re-run {len(self.result)} tasks at {mb} MB"
        chosen = pricing.fitting_cpu(self.cpu.value if self.cpu is not None else None, mb)
        vcpu = pricing.vcpu_for_memory(mb, chosen)
        why = (f"<span title='{html.escape(pricing.VCPU_RULE)}'>(FC's 1:4 rule)</span>"
               if chosen is None else "(FCMagic.cpu)")
        parts = [f"<b>{mb} MB</b> · {vcpu:.2f} vCPU {why}"]
        result = self.result
        if result is not None and result.stats:
            est = pricing.estimate_result(result, mb, chosen)
            at = (pricing.estimate_result(result, result.memory_mb, result.cpu)
                  if result.memory_mb else None)
            line = f"last map ({html.escape(result.function or 'map')}, {est.tasks} " \
                   f"invocations) at {mb} MB: ≈ {pricing.fmt_usd(est.usd)} " \
                   f"({pricing.fmt_cu(est.cu)} CU)"
            if at is not None and result.memory_mb != mb:
                line += f"; ran at {result.memory_mb} MB: ≈ {pricing.fmt_usd(at.usd)}"
                # Durations are the measured ones: a smaller size with less vCPU
                # may run CPU-bound tasks slower, which this does not model.
                line += f" ({html.escape(pricing.SAME_DURATIONS)})"
            parts.append(line)
            parts += [html.escape(a) for a in pricing.assumptions(result)]
        parts.append("<i>estimate: 0.15 CU/GB-s, 1 CU/vCPU-s, 75 CU/10k calls, "
                     f"{pricing.fmt_usd(pricing.USD_PER_CU)}/CU</i>")
        self.info.value = "<div style='font-size:12px'>" + "<br>".join(parts) + "</div>"

    def _rerun(self) -> None:
        if self._on_rerun is not None:
            # The re-run draws its live row (with its cancel) under the slider.
            self.rerun.disabled = True
            try:
                self._on_rerun(self.slider.value, self.stage)
            finally:
                self.rerun.disabled = False

    def plain_text(self) -> str:
        mb = self.slider.value
        chosen = pricing.fitting_cpu(self.cpu.value if self.cpu is not None else None, mb)
        return f"FC memory: {mb} MB, {pricing.vcpu_for_memory(mb, chosen):.2f} vCPU"
