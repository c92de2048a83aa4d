"""A runtime's --memory and the memory slider agree: FCMagic.memory decides."""
from __future__ import annotations

from IPython.utils.capture import capture_output

import fc_magic.views as views


def test_runtime_memory_becomes_the_setting_and_the_slider_moves_it(ip, fc, cell, fake_build,
                                                                    monkeypatch):
    sliders = []
    real = views.memory_slider
    monkeypatch.setattr(views, "memory_slider",
                        lambda memory, *a, **k: sliders.append(real(memory, *a, display_now=False,
                                                                    **k)) or sliders[-1])
    fc.view = "widget"
    with capture_output():
        cell("%%fc_runtime mem_rt --memory 512\n# nothing but Lithops' own packages\n")
    assert fc.memory == 512
    assert len(sliders) == 1 and sliders[0].memory.value == fc.memory and sliders[0].slider.value == 512
    fc.view = "text"
    cell("def ident(x):\n    return x")
    assert cell("%fc_map ident [1] --quiet").memory_mb == 512
    # The slider shown by %%fc_runtime is bound to FCMagic.memory: moving it
    # changes the next map's memory.
    slider = sliders[0]
    slider.slider.value = 1024
    assert fc.memory == 1024
    assert cell("%fc_map ident [1] --quiet").memory_mb == 1024
    assert cell("%fc_map ident [1] --quiet --memory 256").memory_mb == 256
