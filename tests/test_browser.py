"""The quickstart notebook in a real browser: JupyterLab, Debian's headless chromium, Playwright.

One browser session (about a minute): run all cells, check the progress
widgets reached their final state (green for the prime count, red for the
map with failures), press "retry failed" on the failing map, drag
the memory slider and check the kernel's FCMagic.memory followed, retry a map
whose failures then succeed and check the map shows one panel (the stale
receipt hidden, the merged one visible), then start a long map and press its
Cancel button while the cell runs; last, save the notebook and reopen a copy
(a fresh kernel, no widget state): the first run's receipt is the record shown.
Screenshots go to test-artifacts/ (git-ignored).

`make test` installs chromium (apt, as root), Playwright and JupyterLab; the
test is skipped only when /usr/bin/chromium is absent, and says why.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on loopback serving a copy of the quickstart notebook."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing and could not be installed here (make test "
                    f"installs Debian's chromium with apt-get when run as root)")
    base = tmp_path_factory.mktemp("lab")
    notebooks = base / "notebooks"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", notebooks / "quickstart.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    # The server's kernels get their own TMPDIR and no __LITHOPS_* session
    # variables: Lithops exports its session id to child processes, and a
    # kernel numbering its executors like this test process would share job
    # data with it through a shared TMPDIR.
    env = {k: v for k, v in os.environ.items() if not k.startswith("__LITHOPS_")}
    (base / "tmp").mkdir()
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               TMPDIR=str(base / "tmp"))
    log = open(base / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", "--LabApp.extension_manager=readonly",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={notebooks}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.workspaces_dir={base / 'workspaces'}",
         f"--LabApp.user_settings_dir={base / 'settings'}"],
        cwd=notebooks, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("JupyterLab did not start:\n"
                                     + (base / "lab.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
    yield url, token, notebooks
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


JS_STATE = """() => {
  // Until JupyterLab has started, window.jupyterapp is undefined: "not yet", not an error.
  if (!window.jupyterapp || !window.jupyterapp.shell) return null;
  const nb = window.jupyterapp.shell.currentWidget;
  if (!nb || !nb.content || !nb.sessionContext.session || !nb.sessionContext.session.kernel)
    return null;
  const cells = nb.content.widgets.filter(c => c.model.type === 'code');
  return {status: nb.sessionContext.session.kernel.status,
          counts: cells.map(c => c.model.executionCount)};
}"""

JS_ADD_CELL = """(source) => {
  const nb = window.jupyterapp.shell.currentWidget;
  nb.content.activeCellIndex = nb.content.widgets.length - 1;
  return window.jupyterapp.commands.execute('notebook:insert-cell-below').then(() => {
    nb.content.activeCell.model.sharedModel.setSource(source);
    const index = nb.content.activeCellIndex;
    window.jupyterapp.commands.execute('notebook:run-cell');
    return index;
  });
}"""

JS_CELL_TEXT = """(index) => {
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
  if (cell.model.executionCount === null) return null;
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  if (kernel.status !== 'idle') return null;
  return {text: cell.model.outputs.toJSON()
    .map(o => o.text || (o.data && o.data['text/plain']) || '')
    .map(t => Array.isArray(t) ? t.join('') : t).join('')};
}"""


JS_RECEIPTS = """(index) => {
  // Every receipt in a cell: the static one (cell output) and those drawn in widgets.
  const cell = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
  return [...cell.querySelectorAll('.fc-magic-receipt')].map(e => ({
    display: getComputedStyle(e).display, shown: e.getClientRects().length > 0,
    inWidget: e.closest('.widget-html') !== null, text: e.textContent.trim()}));
}"""

JS_CELL_INDEX = """(needle) => window.jupyterapp.shell.currentWidget.content.widgets
  .findIndex(c => c.model.sharedModel.getSource().includes(needle))"""


def _wait(page, fn, arg=None, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(fn, arg) if arg is not None else page.evaluate(fn)
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _all_ran(page) -> bool:
    state = page.evaluate(JS_STATE)
    return bool(state and state["status"] == "idle" and state["counts"]
                and all(c is not None for c in state["counts"]))


def _run_cell(page, source: str, timeout=120.0) -> tuple[int, str]:
    index = page.evaluate(JS_ADD_CELL, source)
    return index, _wait(page, JS_CELL_TEXT, index, timeout, f"cell {source!r}")["text"]


def test_quickstart_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, token, notebooks = lab
    ARTIFACTS.mkdir(exist_ok=True)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"chromium-{secrets.token_hex(4)}"
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{url}/lab/tree/quickstart.ipynb?token={token}")
            _wait(page, f"() => {{ const s = ({JS_STATE})(); return s && s.status === 'idle'; }}",
                  timeout=90, what="the kernel")

            # 1. Run all; the prime count's bar ends green, the failing map's red.
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            deadline = time.monotonic() + 180
            while not _all_ran(page):
                assert time.monotonic() < deadline, "run-all did not finish"
                time.sleep(0.5)
            # Each map ended in its static receipt (plain HTML, no widget).
            page.wait_for_selector(".fc-magic-receipt", timeout=30_000)
            # textContent: JupyterLab skips rendering cells out of view (innerText is then "").
            labels = [t.strip() for t in page.locator(".fc-magic-receipt").all_text_contents()]
            assert any("300/300 done" in t and t.startswith("ok") for t in labels), labels
            assert any("1 failed" in t and t.startswith("FAILED") for t in labels), labels
            no_news = page.get_by_role("button", name="No", exact=True)
            if no_news.count():
                no_news.first.click()  # JupyterLab's "news?" toast would cover the cells
            page.locator(".jp-Cell:has(.fc-magic-receipt)").first.screenshot(
                path=str(ARTIFACTS / "browser-1-primes-done.png"))
            failing = page.locator(".jp-Cell:has(.fc-magic-receipt:has-text('FAILED'))").first
            failing.screenshot(path=str(ARTIFACTS / "browser-1-failures.png"))

            # 2. "Retry 1 failed" on the failing map: it runs again (and fails again:
            # 1/0); its live row, then its receipt, replace the controls' row.
            _run_cell(page, "before = inv.failures[0]")
            failing.locator("button", has_text="Retry 1 failed").click()
            failing.locator(".fc-magic-receipt").nth(1).wait_for(timeout=60_000)
            _, text = _run_cell(page, "print('retried:', len(inv), [f.index for f in inv.failures],"
                                      " inv.failures[0] is not before)")
            assert "retried: 7 [3] True" in text, text
            # One panel for the map: the stale static receipt is hidden, the merged one shows.
            inv_cell = page.evaluate(JS_CELL_INDEX, "inv = %fc_map")
            failing.scroll_into_view_if_needed()
            receipts = page.evaluate(JS_RECEIPTS, inv_cell)
            assert [(r["inWidget"], r["display"], r["shown"]) for r in receipts] == [
                (False, "none", False), (True, "block", True)], receipts

            # 3. Drag the memory slider (the %fc_memory cell's, the last one).
            slider = page.locator(".widget-hslider .slider").last
            slider.scroll_into_view_if_needed()
            readout = page.locator(".widget-hslider .widget-readout").last
            before = readout.inner_text()
            box = slider.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
            _wait(page, "(b) => { const r = [...document.querySelectorAll("
                        "'.widget-hslider .widget-readout')].pop(); return r.innerText !== b; }",
                  before, timeout=20, what="the slider to move")
            shown = int(re.match(r"(\d+) MB", readout.inner_text()).group(1))
            _, text = _run_cell(page, "print('kernel memory:', "
                                      "get_ipython().magics_manager.registry['FCMagic'].memory)")
            assert f"kernel memory: {shown}" in text and shown != 512, (shown, text)
            page.locator(".jp-Cell:has(.widget-hslider)").last.screenshot(
                path=str(ARTIFACTS / "browser-2-slider.png"))

            # 3b. A map whose 3 failures succeed when retried: the click hides the red
            # receipt, the live row then the merged "ok" receipt stand in its place.
            once_cell, _ = _run_cell(
                page, "import os, pathlib\nFLAG = str(pathlib.Path('fail-once').resolve())\n"
                      "pathlib.Path(FLAG).write_text('')\ndef once(x):\n"
                      "    if x % 3 == 1 and os.path.exists(FLAG):\n"
                      "        raise ValueError(f'first run {x}')\n    return x\n"
                      "once_r = %fc_map once range(9)")
            cell = page.locator(".jp-Notebook .jp-Cell").nth(once_cell)
            cell.scroll_into_view_if_needed()
            first = page.evaluate(JS_RECEIPTS, once_cell)
            assert len(first) == 1 and first[0]["shown"], first
            assert first[0]["text"].startswith("FAILED") and "3 failed" in first[0]["text"], first
            cell.screenshot(path=str(ARTIFACTS / "browser-2b-before-retry.png"))
            _run_cell(page, "os.remove(FLAG)")
            cell.locator("button", has_text="Retry 3 failed").click()
            cell.locator(".widget-html .fc-magic-receipt:has-text('9/9 done')").wait_for(
                timeout=60_000)
            cell.scroll_into_view_if_needed()
            receipts = page.evaluate(JS_RECEIPTS, once_cell)
            assert [(r["inWidget"], r["display"], r["shown"]) for r in receipts] == [
                (False, "none", False), (True, "block", True)], receipts
            assert receipts[1]["text"].startswith("ok") and "9/9 done" in receipts[1]["text"]
            assert "failed" not in receipts[1]["text"], receipts[1]
            assert cell.get_by_text("this panel replaces the map's first receipt").is_visible()
            cell.screenshot(path=str(ARTIFACTS / "browser-2b-retried-one-panel.png"))
            _, text = _run_cell(page, "print('once ok:', once_r.ok, once_r.values)")
            assert "once ok: True [0, 1, 2, 3, 4, 5, 6, 7, 8]" in text, text

            # 4. A long map; press Cancel while the cell runs.
            index = page.evaluate(JS_ADD_CELL, "import time\ndef slow(x):\n    time.sleep(0.25)\n"
                                               "    return x\nr_long = %fc_map slow range(400)")
            cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
            cancel = cell.locator("button", has_text="Cancel")
            cancel.wait_for(state="visible", timeout=60_000)
            time.sleep(1.5)  # let some tasks finish first
            cell.screenshot(path=str(ARTIFACTS / "browser-3-running.png"))
            cancel.click()
            cell.locator(".fc-magic-receipt:has-text('CANCELLED')").wait_for(timeout=40_000)
            _wait(page, JS_CELL_TEXT, index, 40, "the cancelled map's cell")
            _, text = _run_cell(page, "print('cancelled:', r_long.cancelled, "
                                      "0 < len(r_long.results) < 400)")
            assert "cancelled: True True" in text, text
            cell.screenshot(path=str(ARTIFACTS / "browser-4-cancelled.png"))

            # 5. Saved and reopened with a fresh kernel and no widget state: the hiding
            # style lived in widget state, so the first run's receipt is what shows. The
            # original stays open in a hidden tab: its live row hides only its own cell's
            # receipt, not the copy's (same class, other cell).
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            saved = notebooks / "quickstart.ipynb"
            deadline = time.monotonic() + 30
            while "once_r = %fc_map" not in saved.read_text() or \
                    "os.remove(FLAG)" not in saved.read_text():
                assert time.monotonic() < deadline, "the notebook was not saved"
                time.sleep(0.3)
            shutil.copy(saved, notebooks / "reopened.ipynb")
            page.goto(f"{url}/lab/tree/reopened.ipynb?token={token}")
            _wait(page, "() => { const s = (" + JS_STATE + ")(); return s && s.status === 'idle'"
                        " && window.jupyterapp.shell.currentWidget.title.label"
                        " === 'reopened.ipynb'; }", timeout=90, what="the reopened notebook")
            once_cell = page.evaluate(JS_CELL_INDEX, "once_r = %fc_map")
            # The restored workspace may hold the first notebook too (hidden): this tab's cells.
            panel = page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
            cell = page.locator(f"[id='{panel}'] .jp-Notebook .jp-Cell").nth(once_cell)
            cell.scroll_into_view_if_needed()
            cell.locator(".fc-magic-receipt").first.wait_for(timeout=30_000)
            receipts = page.evaluate(JS_RECEIPTS, once_cell)
            statics = [r for r in receipts if not r["inWidget"]]
            assert len(statics) == 1 and statics[0]["shown"], receipts
            assert statics[0]["display"] == "block", receipts
            assert statics[0]["text"].startswith("FAILED") and "3 failed" in statics[0]["text"]
            assert "first run 1" in statics[0]["text"]  # the failure, readable with no kernel
            cell.screenshot(path=str(ARTIFACTS / "browser-5-reopened.png"))
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
