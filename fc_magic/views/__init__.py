"""Views of a map: an ipywidgets bar in a kernel, a text line elsewhere.

Both implement `fc_magic.progress.MapView` and are fed `MapSnapshot`s only;
nothing here calls Lithops. ipywidgets is imported only when a widget view
is asked for, so terminal IPython never pays for it.
"""
from __future__ import annotations

import sys
from typing import TextIO

from ..progress import MapView


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def choose_view_kind(shell, preference: str = "auto") -> str:
    """'widget' when the shell has a kernel (a frontend may render it), else 'text'."""
    if preference in ("widget", "text"):
        return preference
    has_kernel = getattr(shell, "kernel", None) is not None
    return "widget" if has_kernel and widgets_available() else "text"


def make_map_view(kind: str, *, stream: TextIO | None = None) -> MapView:
    if kind == "widget":
        from .widgets import WidgetMapView
        return WidgetMapView()
    from .text import TextMapView
    return TextMapView(stream or sys.stdout)


def show_failures(result, kind: str, *, stream: TextIO | None = None) -> None:
    """Tell the user how many tasks failed, with the first remote traceback, short."""
    if kind == "widget":
        from .widgets import show_failures as show
        show(result)
    else:
        from .text import failure_report
        (stream or sys.stdout).write(failure_report(result) + "\n")
