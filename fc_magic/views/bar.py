"""The live row's stacked bar: the done share, then the failed share in red, as plain HTML.

A progress widget has one fill colour, so failures would only show as a red
bar at the very end. This bar is a flex row of two segments drawn in the
theme's colours (JupyterLab's variables, then VS Code's, then colours that
read on a light and a dark background), so a map that is failing is seen to
fail while it runs. The numbers travel as ``data-*`` attributes too: the
widget state says what the bar shows without parsing widths.
"""
from __future__ import annotations

import logging

from ..progress import CANCELLED, ERROR, RUNNING, SUCCESS

logger = logging.getLogger(__name__)

#: Fill of the done share while the map runs, and once it ended.
RUNNING_FILL = "var(--jp-brand-color1, var(--vscode-progressBar-background, #1e88e5))"
DONE_FILL = {SUCCESS: "var(--jp-success-color1, var(--vscode-testing-iconPassed, #43a047))",
             ERROR: "var(--jp-success-color1, var(--vscode-testing-iconPassed, #43a047))",
             CANCELLED: "var(--jp-warn-color1, var(--vscode-editorWarning-foreground, #f57c00))"}
#: Red that reads as a fill on light and dark themes alike (JupyterLab's dark
#: theme defines its own --jp-error-color1).
FAILED_FILL = "var(--jp-error-color1, var(--vscode-errorForeground, #e53935))"
TRACK = "var(--jp-layout-color3, rgba(127, 127, 127, 0.25))"


def _share(part: int, total: int) -> str:
    return f"{100.0 * part / total:.2f}%" if total else "0%"


def bar_html(done: int, failed: int, total: int, status: str = RUNNING) -> str:
    """The bar at one instant: ``done`` then ``failed`` out of ``total`` tasks."""
    total = max(total, done + failed, 1)
    fill = DONE_FILL.get(status, RUNNING_FILL)
    title = f"{done} done, {failed} failed of {total}"
    return (f"<div class='fc-magic-bar' data-done='{done}' data-failed='{failed}' "
            f"data-total='{total}' data-status='{status}' title='{title}' "
            f"style='display:flex;height:14px;margin-top:6px;border-radius:3px;overflow:hidden;"
            f"background:{TRACK}'>"
            f"<div class='fc-magic-bar-done' style='width:{_share(done, total)};background:{fill}'>"
            f"</div><div class='fc-magic-bar-failed' style='width:{_share(failed, total)};"
            f"background:{FAILED_FILL}'></div></div>")
