"""Execute a notebook headless and summarise what its cells showed.

Used by `fc-magic run` (and so by `make demo`) and by the tests, so the
notebook a user opens is the notebook that is checked.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def execute(path: str | os.PathLike, output: str | os.PathLike | None = None, *,
            timeout: int = 600, kernel_name: str = "python3", env: dict | None = None):
    """Run every cell of a notebook in a fresh kernel, in the notebook's folder.

    Returns the executed `nbformat.NotebookNode`, also written to ``output``
    when given (the executed copy a user can open). Raises nbclient's
    CellExecutionError, which names the failing cell, on the first error.
    """
    import nbclient
    import nbformat
    from traitlets.config import Config

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    config = Config()
    ipc_dir = None
    if os.name == "posix":
        # The kernel talks over Unix sockets in a folder only this user can
        # open, rather than loopback TCP that any local user could reach
        # (ipykernel warns about exactly that on every start).
        ipc_dir = tempfile.mkdtemp(prefix="fc-magic-kernel-")
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(ipc_dir, "kernel")
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(path.parent)}},
                                     config=config)
    if env is not None:
        # The kernel inherits this process's environment; tests pass their own.
        old = os.environ.copy()
        os.environ.update(env)
    try:
        client.execute()
    finally:
        if env is not None:
            os.environ.clear()
            os.environ.update(old)
        if output is not None:
            nbformat.write(nb, output)
        if ipc_dir is not None:
            shutil.rmtree(ipc_dir, ignore_errors=True)
    return nb


def cell_texts(nb) -> list[tuple[int, str, str]]:
    """(cell number, first source line, plain-text output) for each code cell."""
    rows = []
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        texts = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                texts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                texts.append(out.get("data", {}).get("text/plain", ""))
            elif out.output_type == "error":
                texts.append(f"{out.ename}: {out.evalue}")
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        rows.append((number, first, "".join(t if t.endswith("\n") else t + "\n"
                                            for t in texts if t).rstrip()))
    return rows


def summary(nb, max_lines: int = 6) -> str:
    """A short, readable account of what every code cell printed."""
    lines = []
    for number, first, text in cell_texts(nb):
        lines.append(f"[{number}] {first}")
        out_lines = text.splitlines()
        for line in out_lines[:max_lines]:
            lines.append(f"      {line[:110]}")
        if len(out_lines) > max_lines:
            lines.append(f"      … {len(out_lines) - max_lines} more lines")
    return "\n".join(lines)
