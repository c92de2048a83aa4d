"""The record a notebook keeps of a map: executed with nbclient, saved, read back, rendered by nbconvert.

One kernel runs a map with failures, task output and a task that prints
1 MB; the saved notebook must hold the static receipt (status, failures,
the traceback's cell and source line, task output escaped) as text/html with
no widget needed, Out[] must not repeat it, and `jupyter nbconvert --to html`
must show the same text. Task output capture is checked through the same map.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from fc_magic.notebooks import execute

WIDGET = "application/vnd.jupyter.widget-view+json"

CELLS = [
    "%load_ext fc_magic\n%config FCMagic.progress_after = 0.0\n%config FCMagic.workers = 2",
    # In[2]: the function, defined in a cell (its traceback must name this cell)
    "def flaky(x):\n"
    "    print(f'\\x1b[1m<b>row</b>\\x1b[0m {x}')\n"
    "    if x % 3 == 1:\n"
    "        raise KeyError(f'row {x}')\n"
    "    if x == 6:\n"
    "        print('y' * 1_000_000 + ' END')\n"
    "    return x * 2",
    "%fc_map flaky range(8) --out r",
    "print(len(r.output(6)), repr(r.output(6)[:160]), repr(r.output(6)[-4:]))\n"
    "print(repr(r.outputs[0]))\n"
    "print(repr(r.failures[0].message), r.failures[0].exc_type)",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The executed notebook as saved on disk, and its path."""
    folder = tmp_path_factory.mktemp("receipt")
    src, out = folder / "map.ipynb", folder / "map.out.ipynb"
    nbformat.write(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in CELLS]), src)
    execute(src, out, timeout=240)
    return nbformat.read(out, as_version=4), out


def _text(html: str) -> str:
    return " ".join(BeautifulSoup(html, "html.parser").get_text(" ").split())


def _map_outputs(nb):
    return nb.cells[2].outputs


def test_the_saved_notebook_keeps_a_static_receipt_with_failures_and_source(saved):
    nb, _path = saved
    outputs = _map_outputs(nb)
    receipts = [o for o in outputs if "text/html" in o.get("data", {})
                and "fc-magic-receipt" in o["data"]["text/html"]]
    assert len(receipts) == 1
    receipt = receipts[0]["data"]
    assert WIDGET not in receipt  # renders with no kernel and no widget manager
    text = _text(receipt["text/html"])
    assert "FAILED flaky: 5/8 done · 3 failed" in text and "on localhost, 2 worker processes" in text
    assert "3 of 8 tasks failed" in text
    assert "#1 input 1 → KeyError: 'row 1'" in text  # whole, not double-quoted
    assert "Cell In[2], line 4, in flaky" in text  # the cell, as IPython names it
    assert "raise KeyError(f'row {x}')" in text  # and its source line
    # Task output is shown per failure, escaped: the task's "<b>" is text, not markup.
    assert "<b>row</b> 1" in text and "&lt;b&gt;row&lt;/b&gt; 1" in receipt["text/html"]
    assert "<b>row</b>" not in receipt["text/html"]
    # Colour codes the task printed are gone from what is shown (not from r.output(i)).
    assert "\x1b" not in receipt["text/html"] and "\x1b" not in receipt["text/plain"]
    # The same record as plain text, for frontends that show text only.
    plain = receipt["text/plain"]
    assert "flaky: 5/8 done · 3 failed" in plain and "Cell In[2], line 4, in flaky" in plain
    # Details (preview, charts, cost) sit behind one disclosure.
    assert receipt["text/html"].count("details: preview") == 1


def test_out_does_not_repeat_the_receipt(saved):
    nb, _path = saved
    results = [o for o in _map_outputs(nb) if o.output_type == "execute_result"]
    assert len(results) == 1
    data = results[0]["data"]
    assert "<table" not in data["text/html"] and len(data["text/html"]) < 300
    assert data["text/plain"].startswith("<MapResult flaky over 8 inputs")


@pytest.fixture(scope="module")
def converted(saved) -> str:
    """The saved notebook as `jupyter nbconvert --to html` renders it (run once)."""
    _nb, path = saved
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                    str(path)], check=True, capture_output=True, timeout=120)
    return Path(path).with_suffix(".html").read_text(encoding="utf-8")


def test_nbconvert_html_shows_the_same_record(converted):
    page = _text(converted)
    for expected in ("FAILED flaky: 5/8 done · 3 failed", "#1 input 1 → KeyError: 'row 1'",
                     "Cell In[2], line 4, in flaky", "raise KeyError(f'row {x}')",
                     "<b>row</b> 1"):
        assert expected in page, expected
    assert "Error displaying widget" not in page


def test_task_output_is_captured_bounded_and_escaped(saved):
    nb, _path = saved
    printed = "".join(o.get("text", "") for o in nb.cells[3].outputs).splitlines()
    length, rest = printed[0].split(" ", 1)
    # 1 MB printed: the last 64 kB kept, after one line saying what was cut.
    assert 64 * 1024 < int(length) < 64 * 1024 + 200
    cut = len("\x1b[1m<b>row</b>\x1b[0m 6\n") + 1_000_000 + len(" END\n") - 64 * 1024
    assert f"[fc_magic: the first {cut} characters of this task's output were cut" in rest
    assert rest.endswith("'END\\n'")  # the tail is kept
    # A task's output, returned with its value as it printed it (colour codes included).
    assert printed[1] == "'\\x1b[1m<b>row</b>\\x1b[0m 0\\n'"
    assert printed[2] == "\"'row 1'\" KeyError"  # str(KeyError) as Python prints it


def test_each_failure_has_a_copy_traceback_box_that_needs_no_kernel(saved, converted):
    nb, _path = saved
    html = next(o["data"]["text/html"] for o in _map_outputs(nb)
                if "text/html" in o.get("data", {}) and "fc-magic-receipt" in o["data"]["text/html"])
    for source in (html, converted):  # the saved output, and nbconvert's page of it
        soup = BeautifulSoup(source, "html.parser")
        boxes = soup.select("details.fc-magic-copy")
        assert len(boxes) == 3  # one per failure (up to receipt.COPY_BOXES)
        first = boxes[0]
        assert first.summary.get_text() == "copy traceback"
        copied = first.textarea.get_text()  # exactly what a select-all in the box copies
        assert copied.startswith("task #1, input 1\nTraceback (most recent call last):")
        assert "Cell In[2], line 4, in flaky" in copied and "raise KeyError(f'row {x}')" in copied
        assert copied.rstrip().endswith("KeyError: 'row 1'") and "\x1b" not in copied
        assert first.textarea.has_attr("readonly")
        button = first.button
        assert button.get_text() == "copy" and "navigator.clipboard" in button["onclick"]
        assert "r.raise_for_failures()" in soup.get_text()
