"""ipywidgets map view: a bar and a status label, green or red at the end.

Its plain-text form (what `jupyter execute`, nbconvert to text, or a
frontend without the widget manager shows) is the same status line as the
text view: at the end the display is updated with a bundle carrying both the
widget and the final text, so a saved notebook reads well everywhere.
"""
from __future__ import annotations

import html

import ipywidgets as w
from IPython.display import display

from ..progress import CANCELLED, ERROR, SUCCESS, MapSnapshot
from .text import status_line

_STYLE = {SUCCESS: "success", ERROR: "danger", CANCELLED: "warning"}


class WidgetMapView:
    """A progress bar plus one HTML status line."""

    def __init__(self, display_now: bool = True):
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                 layout=w.Layout(width="40%"))
        self.label = w.HTML()
        self.box = w.HBox([self.bar, self.label])
        self._text = ""
        self._handle = display(self, display_id=True) if display_now else None

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self._text or "fc_map: starting"
        return bundle

    def draw(self, snapshot: MapSnapshot) -> None:
        self.bar.max = max(snapshot.total, 1)
        self.bar.value = snapshot.finished
        self._text = status_line(snapshot)
        self.label.value = html.escape(self._text)

    def finish(self, snapshot: MapSnapshot) -> None:
        self.draw(snapshot)
        self.bar.bar_style = _STYLE.get(snapshot.status, "")
        if self._handle is not None:
            self._handle.update(self)


def show_failures(result) -> None:
    """A red summary with the first remote traceback folded in a <details>."""
    from .text import failure_report

    failures = result.failures
    first = failures[0]
    summary = html.escape(f"{len(failures)} of {len(result)} tasks failed "
                          f"(the other results are kept; see .failures). First: task "
                          f"#{first.index}, input {first.input_repr}: {first.exc_type}: "
                          f"{first.message}")
    body = (f"<div style='color:#c62828'>{summary}</div><details><summary>remote traceback"
            f"</summary><pre>{html.escape(first.short_traceback())}</pre></details>")
    display({"text/html": body, "text/plain": failure_report(result)}, raw=True)
