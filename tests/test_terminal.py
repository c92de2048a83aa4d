"""Terminal IPython in a real 80-column terminal (tmux): a 300-task map leaves at most 3 lines.

The progress line is redrawn in place; a line wider than the terminal would
wrap and leave one line behind per redraw. tmux gives a real pty of a known
size, and `capture-pane` reads back what the user sees.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fc_magic.progress import RUNNING, MapSnapshot
from fc_magic.views.text import fit_line

SCRIPT = """\
%load_ext fc_magic
%config FCMagic.progress_after = 0.0
%config FCMagic.workers = 2
import time
def nap(x):
    time.sleep(0.01)
    return x
r = %fc_map nap range(300)
print("END", r.ok, len(r))
"""


def test_the_line_fits_the_width_bar_shrinking_first():
    s = MapSnapshot(total=300, done=120, failed=3, running=8, elapsed_s=12.5, status=RUNNING,
                    label="a_rather_long_function_name")
    for columns in (40, 60, 80, 120, 200):
        line = fit_line(s, columns)
        assert len(line) < columns, (columns, line)
    assert fit_line(s, 200).startswith("[####") and "ETA" in fit_line(s, 200)
    assert not fit_line(s, 60).startswith("[") and fit_line(s, 60).endswith("…")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed "
                    "(apt-get install tmux)")
def test_a_300_task_map_leaves_at_most_three_lines_at_80_columns(tmp_path):
    script = tmp_path / "map.ipy"
    script.write_text(SCRIPT)
    session = f"fc-magic-{uuid.uuid4().hex[:8]}"
    ipython = Path(sys.executable).with_name("ipython")
    command = (f"cd {tmp_path} && TMPDIR={tmp_path} {ipython} --no-banner --colors=NoColor "
               f"--quick {script}; sleep 60")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    command], check=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True, check=True).stdout
            if "END" in pane or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    lines = [line for line in pane.splitlines() if line.strip()]
    assert lines and lines[-1] == "END True 300", pane
    map_lines = lines[:-1]
    assert 1 <= len(map_lines) <= 3, pane
    assert any("nap: 300/300 done" in line and "[ok]" in line for line in map_lines), pane
    assert all(len(line) < 80 for line in map_lines), pane
