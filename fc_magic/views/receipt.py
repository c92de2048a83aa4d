"""The static receipt of a finished map: HTML and text that need no kernel and no widget manager.

When a map ends, its live row is replaced by this: the status line (counts,
timing, where it ran), the failures with their tracebacks and task output,
and the sizing hint in one line; the preview, the histograms and the cost
sit behind one ``<details>`` disclosure. It is plain HTML with a text/plain
twin, so a saved notebook reopened in JupyterLab, Notebook 7, VS Code,
nbviewer, GitHub or ``nbconvert --to html`` keeps the record. Every
user-supplied string (inputs, messages, tracebacks, task output) is escaped,
and every part is bounded, so a 10,000-task map saves a few kilobytes.
"""
from __future__ import annotations

import html
import logging

from .. import pricing
from ..ansi import strip_ansi
from ..results import MapResult, short_repr
from .charts import fmt_duration, fmt_mb, svg_histogram
from .text import fmt_rate, fmt_seconds

logger = logging.getLogger(__name__)

#: Bounds on what a receipt holds, whatever the map's size.
MAX_FAILURES_SHOWN = 20
PREVIEW_ROWS = 8
#: The tail of a task's output a receipt shows (all of it stays in `MapResult.output(i)`).
OUTPUT_SHOWN_CHARS = 2_000
#: Failures (the first ones) with a "copy traceback" box: each repeats its traceback, and a
#: saved notebook must stay small; the others' tracebacks are selectable in their <pre>.
COPY_BOXES = 3
#: A message longer than this is shown whole in `.failures`, its head here.
MESSAGE_SHOWN_CHARS = 1_000

#: JupyterLab's theme variables (light and dark), then VS Code's, then a colour
#: readable on a light or a dark background for other frontends.
OK_COLOUR = "var(--jp-success-color1, var(--vscode-testing-iconPassed, #43a047))"
BAD_COLOUR = "var(--jp-error-color1, var(--vscode-errorForeground, #e53935))"
WARN_COLOUR = "var(--jp-warn-color1, var(--vscode-editorWarning-foreground, #f57c00))"
MUTED = "var(--jp-ui-font-color2, var(--vscode-descriptionForeground, #8a8a8a))"
CODE_BACKGROUND = "var(--jp-layout-color2, var(--vscode-textCodeBlock-background, rgba(127, 127, 127, 0.12)))"


def verdict(result: MapResult) -> tuple[str, str]:
    """('ok' | 'FAILED' | 'CANCELLED', its colour)."""
    if result.cancelled:
        return "CANCELLED", WARN_COLOUR
    if result.failures:
        return "FAILED", BAD_COLOUR
    return "ok", OK_COLOUR


def counts(result: MapResult) -> tuple[int, int, int]:
    """(done, failed on their own, cancelled)."""
    failed = len(result.failures_not_cancelled)
    return len(result.results), failed, len(result.failures) - failed


def status_text(result: MapResult) -> str:
    """'score: 290/300 done · 7 failed · 3 cancelled · 12.3s · 24 tasks/s · on localhost, 2 workers · 256 MB'."""
    done, failed, cancelled = counts(result)
    parts = [f"{done}/{len(result)} done"]
    if failed:
        parts.append(f"{failed} failed")
    if cancelled:
        parts.append(f"{cancelled} cancelled")
    parts.append(fmt_seconds(result.elapsed_s))
    rate = fmt_rate(len(result) - cancelled, result.elapsed_s)
    if rate:
        parts.append(rate)
    where = result.where or result.backend
    if where:
        parts.append(f"on {where}")
    if result.memory_mb:
        parts.append(f"{result.memory_mb} MB")
    head = f"{result.function}: " if result.function else ""
    return f"{head}{' · '.join(parts)} [{verdict(result)[0]}]"


def message_text(message: str) -> str:
    """A failure's message whole, or its head and how much was left out when it is huge."""
    message = strip_ansi(message)
    if len(message) <= MESSAGE_SHOWN_CHARS:
        return message
    return (message[:MESSAGE_SHOWN_CHARS]
            + f" … [{len(message) - MESSAGE_SHOWN_CHARS:,} more characters in .failures]")


def output_tail(text: str, limit: int = OUTPUT_SHOWN_CHARS) -> str:
    """The end of a task's output, saying how much of it the receipt leaves out."""
    text = strip_ansi(text)
    if len(text) <= limit:
        return text
    return f"[… {len(text) - limit:,} earlier characters; all in .output(i)]\n" + text[-limit:]


def hint_text(result: MapResult) -> str | None:
    hint = pricing.sizing_hint(result)
    return f"Memory: {hint.describe()}" if hint is not None else None


def cost_text(result: MapResult) -> str | None:
    """'Cost on Function Compute at 1024 MB: ≈ $0.0012 (...) ; assumes: ...'."""
    if not result.stats or not result.memory_mb:
        return None
    est = pricing.estimate_result(result, result.memory_mb, result.cpu)
    said = pricing.assumptions(result)
    return (f"Cost on Function Compute at {result.memory_mb} MB: {est.describe()}"
            + (f"; {'; '.join(said)}" if said else ""))


def traceback_text(failure) -> str:
    """A failure's remote traceback as shown: its frames nearest the error, no escapes."""
    return strip_ansi(failure.short_traceback())


# ------------------------------------------------------------------ text
def receipt_text(result: MapResult) -> str:
    """The receipt as text: status, failures (first with its traceback), hint."""
    lines = [status_text(result)]
    if result.reducer:
        lines.append(result.reduce_summary())
    failures = result.failures_not_cancelled
    if failures:
        lines.append(f"{len(failures)} of {len(result)} tasks failed (the other results are "
                     f"kept; r.failures, r.raise_for_failures(), %fc_map --retry NAME):")
        for n, f in enumerate(failures[:MAX_FAILURES_SHOWN]):
            lines.append(f"  #{f.index} input {f.input_repr}: {f.exc_type}: "
                         f"{message_text(f.message)}")
            if f.request_id:
                lines.append(f"    FC request id {f.request_id}")
            if n == 0 and f.traceback:
                lines.extend("    " + line for line in traceback_text(f).splitlines())
            output = result.output(f.index)
            if n == 0 and output:
                lines.append("    task output (tail):")
                lines.extend("    | " + line for line in output_tail(output, 800).splitlines())
        if len(failures) > MAX_FAILURES_SHOWN:
            lines.append(f"  … {len(failures) - MAX_FAILURES_SHOWN} more in .failures")
        if result.logs:
            lines.append(strip_ansi(result.logs))
    hint = hint_text(result)
    if hint:
        lines.append(hint)
    return "\n".join(lines)


# ------------------------------------------------------------------ HTML
def _pre(text: str) -> str:
    return (f"<pre style='font-size:11px;margin:2px 0 4px 16px;padding:4px;white-space:pre-wrap;"
            f"background:{CODE_BACKGROUND}'>{html.escape(text)}</pre>")


#: Copies the box next to it; a frontend that strips scripts from untrusted output (JupyterLab,
#: Notebook 7) leaves the button inert and the read-only box still selectable.
_COPY_ONCLICK = ("var t=this.parentNode.querySelector('textarea');t.select();"
                 "navigator.clipboard.writeText(t.value).then(()=>{this.textContent='copied'})")


def failure_copy_text(failure) -> str:
    """What "copy traceback" copies: the task, its request id, the traceback (or the message)."""
    lines = [f"task #{failure.index}, input {failure.input_repr}"]
    if failure.request_id:
        lines.append(f"FC request id {failure.request_id}")
    if failure.traceback:
        lines.append(strip_ansi(failure.traceback.rstrip()))
    else:
        lines.append(f"{failure.exc_type}: {strip_ansi(failure.message)}")
    return "\n".join(lines)


def copy_html(failure) -> str:
    """A "copy traceback" disclosure: a read-only box (select it, copy) and a copy button.

    Works with no kernel: the box is plain HTML that every frontend keeps
    (click in it, Ctrl/Cmd+A, Ctrl/Cmd+C); the button copies in one click
    where inline handlers run (a trusted notebook, VS Code, nbconvert's HTML).
    """
    text = failure_copy_text(failure)
    rows = min(text.count("\n") + 1, 12)
    return (f"<details class='fc-magic-copy'><summary style='font-size:11px;color:{MUTED}'>"
            f"copy traceback</summary>"
            f"<button type='button' title='Copy the traceback to the clipboard' "
            f"onclick=\"{_COPY_ONCLICK}\">copy</button><small> or click in the box, "
            f"Ctrl/Cmd+A, Ctrl/Cmd+C</small>"
            f"<textarea readonly rows='{rows}' wrap='off' style='display:block;width:95%'>"
            f"{html.escape(text)}</textarea></details>")


def failure_html(result: MapResult, failures) -> str:
    """Each failure as a <details> (the first one open): message, traceback, task output."""
    rows = []
    for n, f in enumerate(failures[:MAX_FAILURES_SHOWN]):
        head = html.escape(f"#{f.index}  input {f.input_repr}  →  {f.exc_type}: "
                           f"{message_text(f.message)}")
        body = _pre(traceback_text(f)) if f.traceback else \
            f"<div style='color:{MUTED}'>(no remote traceback)</div>"
        if f.request_id:
            body = (f"<div style='font-size:11px;color:{MUTED}'>FC request id "
                    f"<code>{html.escape(f.request_id)}</code></div>") + body
        output = result.output(f.index)
        if output:
            body += (f"<div style='font-size:11px;color:{MUTED}'>task output</div>"
                     + _pre(output_tail(output)))
        if n < COPY_BOXES:
            body += copy_html(f)
        rows.append(f"<details{' open' if n == 0 else ''}><summary><code>{head}</code>"
                    f"</summary>{body}</details>")
    if len(failures) > MAX_FAILURES_SHOWN:
        rows.append(f"<div>… {len(failures) - MAX_FAILURES_SHOWN} more in "
                    f"<code>.failures</code></div>")
    return "".join(rows)


def preview_html(result: MapResult, rows: int = PREVIEW_ROWS) -> str:
    """The first results as a compact table of truncated reprs."""
    esc = html.escape
    cell = "<td style='padding:0 10px 0 0'>"
    body = "".join(
        f"<tr>{cell}{i}</td>{cell}<code>"
        f"{esc(short_repr(result.inputs[i], 30) if i < len(result.inputs) else '')}</code></td>"
        f"{cell}<code>{esc(short_repr(v, 50))}</code></td></tr>"
        for i, v in enumerate(result.values[:rows]))
    more = (f"<tr><td colspan=3>… {len(result) - rows} more in <code>.values</code></td></tr>"
            if len(result) > rows else "")
    return ("<table style='font-size:12px;border-collapse:collapse;line-height:1.3'>"
            "<tr><th>#</th><th>input</th><th>result</th></tr>"
            f"{body}{more}</table>")


def charts_html(result: MapResult) -> str:
    durations = [s.duration_s for s in result.stats if s.duration_s is not None]
    peaks = [s.peak_memory_mb for s in result.stats if s.peak_memory_mb]
    charts = ""
    if durations:
        charts += svg_histogram(durations, "task duration", fmt_duration, unit="duration")
    if peaks:
        charts += svg_histogram(peaks, "peak memory", fmt_mb, unit="peak memory",
                                colour="var(--jp-brand-color2, #ab47bc)")
    return f"<div>{charts}</div>" if charts else ""


def details_html(result: MapResult) -> str:
    """Preview, charts and cost behind one disclosure ('' when there is nothing to show)."""
    parts = []
    if result.results:
        parts.append(preview_html(result))
    parts.append(charts_html(result))
    cost = cost_text(result)
    if cost:
        parts.append(f"<div style='font-size:12px'>{html.escape(cost)}</div>")
    inner = "".join(p for p in parts if p)
    if not inner:
        return ""
    return (f"<details><summary style='font-size:12px;color:{MUTED}'>details: preview, "
            f"durations, memory, cost</summary>{inner}</details>")


def receipt_class(key: str) -> str:
    """The class that names one map's static receipt, so its live controls can hide it."""
    return f"fc-magic-receipt-{key}"


def receipt_html(result: MapResult, key: str | None = None) -> str:
    """The receipt as HTML; ``key`` adds the class `receipt_class(key)` (`widgets.MapControls`)."""
    word, colour = verdict(result)
    status = html.escape(status_text(result).removesuffix(f" [{word}]"))
    parts = [f"<div style='font-size:13px'><b style='color:{colour}'>{html.escape(word)}</b> "
             f"<span>{status}</span></div>"]
    if result.reducer:
        parts.append(f"<div style='font-size:12px'><code>{html.escape(result.reduce_summary())}"
                     f"</code></div>")
    failures = result.failures_not_cancelled
    if failures:
        parts.append(f"<div style='font-size:12px;color:{BAD_COLOUR}'>{len(failures)} of "
                     f"{len(result)} tasks failed; the other results are kept "
                     f"(<code>r.failures</code>; <code>r.raise_for_failures()</code> raises "
                     f"the first in this notebook; <code>%fc_map --retry NAME</code>)</div>")
        parts.append(failure_html(result, failures))
        if result.logs:
            parts.append(f"<div style='font-size:12px;color:{MUTED}'>"
                         f"{html.escape(strip_ansi(result.logs))}</div>")
    hint = hint_text(result)
    if hint:
        parts.append(f"<div style='font-size:12px'>{html.escape(hint)}</div>")
    parts.append(details_html(result))
    classes = "fc-magic-receipt" + (f" {receipt_class(key)}" if key else "")
    return f"<div class='{classes}'>" + "".join(parts) + "</div>"


class Receipt:
    """A finished map as a display object: text/html and text/plain, nothing live."""

    def __init__(self, result: MapResult, key: str | None = None):
        self.result, self.key = result, key

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": receipt_html(self.result, self.key),
                "text/plain": receipt_text(self.result)}
