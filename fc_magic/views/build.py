"""Views of a runtime build: steps, a tail of the installer log, the size table.

Fed `fc_magic.runtime.BuildSnapshot`s only (``draw`` while running,
``finish`` once), like the map views. The text view writes a line per step
and a summary; the widget view redraws one box and leaves a plain-text
bundle behind for saved notebooks. A cache hit is one line in both (in HTML
the requirement and size tables sit behind a disclosure).
Also here: how a runtime and the runtime list are shown (`%fc_runtime`).
"""
from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from typing import Sequence, TextIO

from ..runtime import ERROR, SUCCESS, BuildSnapshot, RuntimeEntry
from ..runtime.sizes import human
from .fallback import TextFallback
from .text import fmt_seconds

#: Rows of the size table shown; the rest are summed into one line.
TABLE_ROWS = 12
#: Theme colours (JupyterLab's variables, light and dark), readable fallbacks elsewhere.
OK = "var(--jp-success-color1, #388e3c)"
BAD = "var(--jp-error-color1, #e53935)"
_MARK = {"done": "✓", "running": "…", "failed": "✗"}


def _what(s: BuildSnapshot) -> str:
    return "code package" if s.target == "fc" else "local runtime"


def headline(s: BuildSnapshot) -> str:
    """One line: what happened to the build, e.g. 'my_rt: cache hit (local runtime …)'."""
    size = s.package_bytes if s.package_bytes is not None else s.total_bytes
    if s.cache_hit and s.origin:
        return (f"{s.name}: from the team cache ({s.origin}) — {_what(s)} {s.deploy_name} "
                f"({human(size)}), nothing built or downloaded")
    if s.cache_hit:
        return (f"{s.name}: cache hit — {_what(s)} {s.deploy_name} "
                f"({human(size)}) reused, nothing built")
    if s.status == SUCCESS:
        return (f"{s.name}: built {_what(s)} {s.deploy_name} in {fmt_seconds(s.elapsed_s)} "
                f"({human(size)})")
    if s.status == ERROR:
        return f"{s.name}: build FAILED after {fmt_seconds(s.elapsed_s)}: {s.error}"
    step = s.steps[-1][0] if s.steps else "starting"
    return f"{s.name}: building {_what(s)} — {step} ({fmt_seconds(s.elapsed_s)})"


def size_rows(sizes: Sequence, limit: int = TABLE_ROWS) -> list[tuple[str, str, str]]:
    rows = [(p.name, human(p.unpacked_bytes), human(p.zipped_bytes)) for p in sizes[:limit]]
    rest = sizes[limit:]
    if rest:
        zipped = [p.zipped_bytes for p in rest if p.zipped_bytes is not None]
        rows.append((f"({len(rest)} more)", human(sum(p.unpacked_bytes for p in rest)),
                     human(sum(zipped)) if zipped else "-"))
    return rows


def size_table_text(sizes: Sequence, zipped: bool) -> str:
    header = ("package", "unpacked", "zipped") if zipped else ("package", "size")
    rows = [r if zipped else r[:2] for r in size_rows(sizes)]
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def size_table_html(sizes: Sequence, zipped: bool) -> str:
    header = ("package", "unpacked", "zipped") if zipped else ("package", "size")
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>"
                                    for c in (r if zipped else r[:2])) + "</tr>"
                   for r in size_rows(sizes))
    return (f"<table class='fc-magic-sizes'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def final_text(s: BuildSnapshot) -> str:
    lines = [headline(s)]
    lines += [f"note: {n}" for n in s.notes]
    if s.status == SUCCESS and not s.cache_hit and s.sizes:
        lines.append(size_table_text(s.sizes, zipped=s.target == "fc"))
    if s.status == ERROR and s.log_tail:
        lines.append("installer output (last lines):")
        lines += ["  " + line for line in s.log_tail]
    return "\n".join(lines)


@dataclass(frozen=True)
class Requirements:
    """The requirement table a build view shows before building (and folds away on a hit)."""

    text: str
    html: str


def requirements_shown(rows, notes) -> Requirements:
    """A runtime's requirement table and its notes (each escaped: names come from packages)."""
    from ..requirements import format_table_html, format_table_text

    return Requirements(format_table_text(rows) + "".join(f"\nnote: {n}" for n in notes),
                        format_table_html(rows)
                        + "".join(f"<br>note: {html.escape(n)}" for n in notes))


#: The size and requirement tables: compact, numbers right-aligned, theme colours.
TABLE_CSS = ("<style>.fc-magic-sizes,.fc-magic-requirements{border-collapse:collapse;"
             "font-size:12px;margin:2px 0}.fc-magic-sizes th,.fc-magic-sizes td,"
             ".fc-magic-requirements th,.fc-magic-requirements td{padding:1px 12px 1px 0}"
             ".fc-magic-sizes th,.fc-magic-requirements th{border-bottom:1px solid "
             "var(--jp-border-color2, #bdbdbd)}.fc-magic-sizes td+td{text-align:right;"
             "font-variant-numeric:tabular-nums}</style>")


def hit_html(s: BuildSnapshot, requirements: Requirements | None) -> str:
    """A cache hit: one line, the requirement and size tables behind a disclosure."""
    inner = (requirements.html if requirements else "") + "".join(
        f"<div>note: {html.escape(n)}</div>" for n in s.notes)
    if s.sizes:
        inner += size_table_html(s.sizes, zipped=s.target == "fc")
    line = f"<span style='color:{OK}'>{html.escape(headline(s))}</span>"
    if not inner:
        return f"<div class='fc-magic-build' style='font-size:13px'>{line}</div>"
    return (f"<details class='fc-magic-build' style='font-size:13px'><summary>{line}</summary>"
            f"{TABLE_CSS}{inner}</details>")


class TextBuildView:
    """The requirement table, a line per build step, then the headline and size table.

    A cache hit is its headline alone: nothing was built, the table was
    shown when it was.
    """

    def __init__(self, stream: TextIO | None = None, requirements: Requirements | None = None):
        self.stream = stream or sys.stdout
        self.requirements = requirements
        self._steps_shown = 0

    def _show_requirements(self) -> None:
        if self.requirements is not None:
            self.stream.write(self.requirements.text + "\n")
            self.requirements = None

    def draw(self, s: BuildSnapshot) -> None:
        self._show_requirements()
        for label, _state in s.steps[self._steps_shown:]:
            self.stream.write(f"{s.name}: {label} …\n")
        self._steps_shown = len(s.steps)
        self.stream.flush()

    def finish(self, s: BuildSnapshot) -> None:
        if s.cache_hit:
            self.stream.write(headline(s) + "\n")
        else:
            self.draw(s)
            self.stream.write(final_text(s) + "\n")
        self.stream.flush()


class WidgetBuildView(TextFallback):
    """One box: the requirements, the step list, a scrolling log tail, then the size table.

    Shown at its first step; a cache hit (no step) is instead one static
    line with the tables behind a disclosure (HTML that a saved notebook keeps).
    """

    def __init__(self, display_now: bool = True, requirements: Requirements | None = None):
        import ipywidgets as w

        self.requirements = requirements
        self.reqs = w.HTML()
        self.head = w.HTML()
        self.steps = w.HTML()
        self.log = w.HTML()
        self.table = w.HTML()
        self.box = w.VBox([self.reqs, self.head, self.steps, self.log, self.table])
        self._text = ""
        self._display = display_now
        self._handle = None
        #: The static HTML a cache hit showed instead of this box.
        self.hit_html: str | None = None

    def plain_text(self) -> str:
        return self._text or "fc_runtime: starting"

    def _repr_mimebundle_(self, **kwargs):
        """The widget, its text, and the same box as static HTML for a notebook read later."""
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = ("<div class='fc-magic-build'>"
                               + "".join(part.value for part in self.box.children)
                               + "</div>")
        return bundle

    def _show(self) -> None:
        if self._display and self._handle is None:
            from IPython.display import display

            self._handle = display(self, display_id=True)

    def draw(self, s: BuildSnapshot) -> None:
        if self.requirements is not None and not self.reqs.value:
            self.reqs.value = TABLE_CSS + self.requirements.html
        self._text = headline(s)
        self.head.value = f"<b>{html.escape(self._text)}</b>"
        self.steps.value = "<br>".join(
            f"{_MARK.get(state, '')} {html.escape(label)}" for label, state in s.steps)
        if s.log_tail and not s.final:
            self.log.value = ("<pre style='max-height:12em;overflow:auto;font-size:85%'>"
                              + html.escape("\n".join(s.log_tail)) + "</pre>")
        if not s.final:
            self._show()

    def finish(self, s: BuildSnapshot) -> None:
        if s.cache_hit and self._handle is None:
            self._text = headline(s)
            self.head.value = html.escape(self._text)
            self.hit_html = hit_html(s, self.requirements)
            if self._display:
                from IPython.display import display

                display({"text/html": self.hit_html, "text/plain": self._text}, raw=True)
            return
        self.draw(s)
        # The text twin says what the box says, the requirement table first.
        self._text = (self.requirements.text + "\n" if self.requirements else "") + final_text(s)
        color = BAD if s.status == ERROR else OK
        self.head.value = f"<b style='color:{color}'>{html.escape(headline(s))}</b>"
        notes = "".join(f"<div>note: {html.escape(n)}</div>" for n in s.notes)
        if s.status == ERROR:
            self.log.value = notes + ("<pre style='font-size:85%'>"
                                      + html.escape("\n".join(s.log_tail)) + "</pre>")
        else:
            self.log.value = notes
            self.table.value = TABLE_CSS + size_table_html(s.sizes, zipped=s.target == "fc")
        self._show()
        if self._handle is not None:
            self._handle.update(self)


def make_build_view(kind: str, *, stream: TextIO | None = None,
                    requirements: Requirements | None = None):
    if kind == "widget":
        return WidgetBuildView(requirements=requirements)
    return TextBuildView(stream, requirements)


def build_feed(kind: str, *, stream: TextIO | None = None,
               requirements: Requirements | None = None):
    """The ``on_snapshot`` hook of a build: every step drawn at once, the end always shown.

    ``requirements``: the table shown before a build starts; a cache hit
    folds it away (one line).
    """
    from ..progress import ProgressReporter

    return ProgressReporter(lambda: make_build_view(kind, stream=stream,
                                                    requirements=requirements),
                            progress_after=0.0, interval=0.0, show_quick_success=True)


# ----------------------------------------------------------------- %fc_runtime
def runtime_text(e: RuntimeEntry) -> str:
    m = e.manifest
    where = e.interpreter if e.target == "local" else e.package
    shared = m.get("shared") if isinstance(m.get("shared"), dict) else None
    if where is None and shared:
        where = f"oss://{shared.get('bucket')}/{shared.get('object')} (team cache)"
    lines = [f"runtime {e.name} ({'local venv' if e.target == 'local' else 'FC code package'}"
             f", Python {e.python})",
             f"  key        {e.key[:16]}…  deploy name {e.deploy_name}",
             f"  packages   {', '.join(m.get('user_requirements') or []) or '(none declared)'}",
             f"  with       {len(e.requirements)} requirement lines in all "
             f"(Lithops worker packages included)",
             f"  size       {human(e.total_bytes)}"
             + (f" zipped, {human(m.get('total_bytes'))} unpacked" if e.target == "fc" else ""),
             (f"  built      by {shared.get('host')} on {e.created[:10]} (team cache)"
              if shared else f"  built      {e.created} in {m.get('build_seconds', '?')} s "
                             f"with {m.get('installer', '?')}"),
             f"  at         {where}"]
    lines += [f"  note       {n}" for n in m.get("notes", ())]
    return "\n".join(lines)


def runtime_list_text(rows) -> str:
    if not rows:
        return "no runtimes cached yet; build one with %%fc_runtime NAME"
    table = [("name", "target", "key", "size", "built", "packages")]
    for r in rows:
        size = human(r.size_bytes) if r.complete else "damaged (rebuilt on next use)"
        table.append((r.name or "(unused)", r.target, r.key[:8], size,
                      r.created[:16].replace("T", " "), ", ".join(r.packages) or "-"))
    widths = [max(len(t[i]) for t in table) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t[:5], widths)) + "  " + t[5]
             for t in table]
    return "\n".join(lines)


def shared_list_text(rows, where: str) -> str:
    """The team cache's runtimes (`runtime.shared.SharedRow`s) under a heading."""
    if not rows:
        return f"team cache ({where}): empty"
    table = [("key", "size", "origin", "packages")]
    table += [(r.key[:8], human(r.size_bytes), r.origin, ", ".join(r.packages) or "-")
              for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t[:3], widths)) + "  " + t[3]
             for t in table]
    return f"team cache ({where}):\n" + "\n".join(lines)


def show_requirements(shown: Requirements, kind: str, *, stream: TextIO | None = None) -> None:
    """A runtime's requirement table on its own (when no build view showed it)."""
    show_text(shown.text, kind, html_body=TABLE_CSS + shown.html, stream=stream)


def show_text(text: str, kind: str, *, html_body: str | None = None,
              stream: TextIO | None = None) -> None:
    """Show a block of text: as output (HTML + text bundle) in a kernel, else on stdout."""
    if kind == "widget":
        from IPython.display import display

        body = html_body or f"<pre>{html.escape(text)}</pre>"
        display({"text/plain": text, "text/html": body}, raw=True)
    else:
        out = stream or sys.stdout
        out.write(text + "\n")
        out.flush()
