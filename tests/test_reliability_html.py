"""Hostile strings from users and packages, rendered through every HTML view: none becomes markup.

A requirement marker, a captured module name, a function's result, its input,
its exception message and traceback, a build's log and notes: each can carry
`<img onerror>` or `<svg/onload>`. Each view's HTML is parsed as a browser
would, and no element or event attribute of the attacker's may appear.
"""
from __future__ import annotations

from html.parser import HTMLParser

from IPython.utils.capture import capture_output

from fc_magic.results import MapResult, TaskFailure, TaskStats
from fc_magic.runtime import BuildSnapshot, PackageSize
from fc_magic.setting import Setting

IMG = "<img src=x onerror=alert(1)>"
SVG = "<svg/onload=alert(2)>"
SCRIPT = "</pre><script>alert(3)</script>"
HOSTILE = (IMG, SVG, SCRIPT)


class _Markup(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.events = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.events += [name for name, _ in attrs if name.lower().startswith("on")]


def assert_inert(html: str) -> None:
    """No script, no img, no event attribute: the hostile strings stayed text."""
    parsed = _Markup()
    parsed.feed(html)
    assert not {"script", "img"} & set(parsed.tags), html
    assert parsed.events == [], html
    assert "<svg/" not in html and "<script" not in html, html


def html_outputs(captured) -> list[str]:
    return [o.data["text/html"] for o in captured.outputs if "text/html" in o.data]


def hostile_result() -> MapResult:
    values = [IMG, TaskFailure(1, SVG, "ValueError", f"bad {IMG}",
                               f"Traceback (most recent call last):\n  File \"x\", line 1\n"
                               f"ValueError: {SCRIPT}")]
    return MapResult(values=values, inputs=[SVG, SCRIPT],
                     stats=[TaskStats(0, 1.0, 100.0), TaskStats(1, 2.0, 120.0)],
                     elapsed_s=1.0, memory_mb=1024, function=SVG, where=IMG)


def test_map_result_and_its_panel_escape_everything(tally, fc):
    from fc_magic.views.memory import MemorySlider
    from fc_magic.views.widgets import WidgetMapView

    tally.attacks_tried += 1
    result = hostile_result()
    assert_inert(result._repr_html_())
    view = WidgetMapView(display_now=False)
    view.show_result(result, on_retry=lambda: None, memory=Setting(fc, "memory"))
    pieces = [w.value for w in _html_widgets(view.box)]
    assert pieces and all(assert_inert(p) is None for p in pieces)
    slider = MemorySlider(Setting(fc, "memory"), result=result)
    assert_inert(slider.info.value)


def _html_widgets(widget):
    import ipywidgets as w

    found = [widget] if isinstance(widget, w.HTML) else []
    for child in getattr(widget, "children", ()):
        found += _html_widgets(child)
    return found


def test_build_view_escapes_log_notes_and_package_names(tally):
    from fc_magic.views.build import WidgetBuildView

    tally.attacks_tried += 1
    view = WidgetBuildView(display_now=False)
    snap = BuildSnapshot(name="rt", target="fc", key="0" * 64, steps=((IMG, "done"),),
                         log_tail=(SVG, SCRIPT), status="running")
    view.draw(snap)
    for status in ("error", "success"):
        view.finish(BuildSnapshot(name="rt", target="fc", key="0" * 64, steps=((IMG, "done"),),
                                  log_tail=(SVG, SCRIPT), notes=(IMG,), status=status,
                                  sizes=(PackageSize(SVG, 10, 5),)))
        for part in (view.head, view.steps, view.log, view.table):
            assert_inert(part.value)


def test_runtime_cell_escapes_markers_and_captured_module_names(ip, fc, cell, fake_build, tally):
    tally.attacks_tried += 1
    fc.view = "widget"
    cell(f"import importlib\ntry:\n    importlib.import_module({SVG!r})\n"
         f"except Exception:\n    pass")
    marker = f'humanize; platform_machine == "{IMG}"'
    with capture_output() as captured:
        cell(f"%%fc_runtime hostile --capture --no-pin\n{marker}\n")
    pages = html_outputs(captured)
    assert pages, "the requirement table was shown as HTML"
    joined = "".join(pages)
    assert "&lt;img" in joined or "&lt;svg" in joined, "the hostile strings are shown, as text"
    for page in pages:
        assert_inert(page)
