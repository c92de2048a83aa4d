"""The quickstart notebook, executed headless by `make demo`'s own command."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fc_magic.notebooks import cell_texts

ROOT = Path(__file__).resolve().parent.parent
#: What a newcomer reads as trouble. The quickstart's own failing task prints
#: "ZeroDivisionError: division by zero", which is its result, not noise.
NOISE = re.compile(r"warning|deprecat|\berror\b", re.IGNORECASE)


@pytest.mark.slow
def test_quickstart_runs_and_shows_results(tmp_path):
    out = tmp_path / "quickstart.executed.ipynb"
    # `make demo` runs exactly this (after a quiet install into .venv).
    fc_magic_cli = Path(sys.executable).parent / "fc-magic"
    run = subprocess.run([str(fc_magic_cli), "run", "notebooks/quickstart.ipynb",
                          "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    printed = (run.stdout + run.stderr).splitlines()
    assert [line for line in printed if NOISE.search(line)] == []
    assert run.stderr == ""
    assert "      primes below 29,900: 3238" in printed
    assert printed[-1] == f"executed copy saved to {out}"
    nb = nbformat.read(out, as_version=4)
    texts = {first: text for _, first, text in cell_texts(nb)}
    # On a busy machine the map may outlast progress_after and draw its bar
    # first; the cell's value is always its last line.
    assert texts["def add_seven(x):"].splitlines()[-1] == "[7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"
    primes = texts["def count_primes(n):"]
    assert "300/300 done" in primes and "[ok]" in primes
    summary = texts['print(f"{len(primes)} tasks, ok={primes.ok}, elapsed {primes.elapsed_s:.2f}s")']
    assert "300 tasks, ok=True" in summary
    assert "primes below 29,900: 3238" in summary  # pi(29899) = 3238
    failures = texts["def inverse(x):"]
    assert "1 of 7 tasks failed" in failures and "in inverse" in failures
    assert "__fc_magic_task__" not in failures
    assert "3 0 ZeroDivisionError division by zero" in texts['print("ok:", inv.ok)']
    # A background map returns at once and is complete after %fc_wait.
    assert "returned at once; done: False" in texts["import time"]
    assert "ok: True sum: 20540" in texts["%fc_wait bg"]  # sum of squares below 40
    # The saved copy carries the widget views, with a text fallback.
    mimes = {k for c in nb.cells if c.cell_type == "code"
             for o in c.outputs for k in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in mimes
