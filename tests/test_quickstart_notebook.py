"""The quickstart notebook, executed headless by nbclient as `make demo` does."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from fc_magic.notebooks import cell_texts, execute

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quickstart_runs_and_shows_results(tmp_path):
    out = tmp_path / "quickstart.executed.ipynb"
    nb = execute(ROOT / "notebooks" / "quickstart.ipynb", out, timeout=300)
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
    # The saved copy carries the widget views, with a text fallback.
    saved = nbformat.read(out, as_version=4)
    mimes = {k for c in saved.cells if c.cell_type == "code"
             for o in c.outputs for k in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in mimes
