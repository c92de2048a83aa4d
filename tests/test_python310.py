"""Python 3.10, the other supported kernel: install, the quickstart, and a sandbox map.

A smoke test in a venv of its own (`.venv-3.10`), found as the Makefile finds
3.12 (PYTHON310=..., a `python3.10` that runs, pyenv's versions/3.10*), and
skipped with the reason when there is none. The venv is built once and reused
while pyproject.toml is unchanged (a stamp holds its digest, as the Makefile's
.venv/.installed does); fc_magic is installed editable, so code changes need
no reinstall. pip's wheel cache makes a rebuild cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path

import nbformat
import pytest
from filelock import FileLock
from packaging.requirements import Requirement

from conftest import find_python
from fc_magic.notebooks import cell_texts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-3.10"
STAMP = VENV / ".installed"
#: The test tools the smoke needs besides fc_magic: `fc-magic run` executes
#: notebooks with nbclient in an ipykernel. Their versions come from the test extra.
SMOKE_TOOLS = ("nbclient", "ipykernel")
NOISE = re.compile(r"warning|deprecat|\berror\b", re.IGNORECASE)


def _pyproject_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def _smoke_requirements() -> list[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = [line for line in extras["optional-dependencies"]["test"]
             if Requirement(line).name in SMOKE_TOOLS]
    assert len(tools) == len(SMOKE_TOOLS), tools
    return tools


@pytest.fixture(scope="module")
def py310() -> Path:
    """The 3.10 venv's interpreter, (re)built only when pyproject.toml changed."""
    python, how = find_python("3.10")
    if python is None:
        pytest.skip(how)
    interpreter = VENV / "bin" / "python"
    with FileLock(str(VENV) + ".lock"):
        digest = _pyproject_digest()
        if STAMP.is_file() and STAMP.read_text() == digest and interpreter.exists():
            return interpreter
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(VENV)], check=True, timeout=300)
        log = VENV / "install.log"
        with open(log, "w") as out:
            done = subprocess.run([str(interpreter), "-m", "pip", "install",
                                   "--disable-pip-version-check", "-e", str(ROOT),
                                   *_smoke_requirements()],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=900)
        assert done.returncode == 0, log.read_text()[-3000:]
        STAMP.write_text(digest)
    return interpreter


def test_install_on_310_states_what_pip_checks(py310):
    out = subprocess.run([str(py310), "-c", textwrap.dedent("""\
        import importlib.metadata as md, sys
        print("%d.%d" % sys.version_info[:2])
        print(md.metadata("fc_magic")["Requires-Python"])
        from fc_magic import limits
        print(limits.python_problem())
        """)], capture_output=True, text=True, timeout=120, cwd=os.sep)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["3.10", ">=3.10", "None"]


def test_quickstart_notebook_on_310(py310, tmp_path):
    out = tmp_path / "quickstart.executed.ipynb"
    run = subprocess.run([str(py310.parent / "fc-magic"), "run", "notebooks/quickstart.ipynb",
                          "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    printed = (run.stdout + run.stderr).splitlines()
    assert [line for line in printed if NOISE.search(line)] == []
    nb = nbformat.read(out, as_version=4)
    # The kernel nbclient started is the 3.10 venv's own.
    assert nb.metadata["language_info"]["version"].startswith("3.10.")
    texts = {first: text for _, first, text in cell_texts(nb)}
    assert texts["def add_seven(x):"].splitlines()[-1] == "[7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"
    summary = texts['print(f"{len(primes)} tasks, ok={primes.ok}, elapsed {primes.elapsed_s:.2f}s")']
    assert "300 tasks, ok=True" in summary and "primes below 29,900: 3238" in summary
    assert "1 of 7 tasks failed" in texts["def inverse(x):"]


SANDBOX_SMOKE = """\
import json, os, sys, tempfile

from IPython.core.interactiveshell import InteractiveShell
from lithops.storage import storage

from fc_magic.sandbox import Sandbox

work = sys.argv[1]
# Lithops' runtime-metadata cache, private to this run.
storage.CACHE_DIR = os.path.join(work, "lithops-cache")


def run(ip, source):
    result = ip.run_cell(source)
    if not result.success:
        raise SystemExit(f"cell failed: {source.splitlines()[0]}: "
                         f"{result.error_before_exec or result.error_in_exec}")
    return result.result


with Sandbox(concurrency=2) as sb:
    config = os.path.join(work, "lithops.yaml")
    with open(config, "w") as fh:
        fh.write(sb.config_yaml())
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fc_magic")
    fc = ip.magics_manager.registry["FCMagic"]
    fc.backend = "aliyun_fc"
    fc.config_file = config
    fc.cache_dir = os.path.join(work, "cache")
    fc.view = "text"
    run(ip, "%%fc_runtime smoke310\\nhumanize\\n")
    run(ip, "def fmt(x):\\n"
            "    import os, sys, humanize\\n"
            "    return [humanize.intcomma(x * 1000), '%d.%d' % sys.version_info[:2],\\n"
            "            os.environ.get('FC_FUNCTION_NAME')]\\n")
    result = run(ip, "%fc_map fmt range(4) --quiet")
    print(json.dumps({"values": result.values, "runtime": fc.current_runtime.python,
                      "functions": sorted(sb.functions._functions)}))
"""


def test_fc_runtime_and_fc_map_on_the_sandbox_with_310_instances(py310, tmp_path):
    script = tmp_path / "smoke.py"
    script.write_text(SANDBOX_SMOKE)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.run([str(py310), str(script), str(tmp_path)], capture_output=True,
                         text=True, timeout=900, cwd=tmp_path, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    [function] = [f for f in report["functions"] if f.startswith("lithops-worker-smoke310-")]
    assert report["runtime"] == "3.10"
    # humanize is only in the code package; '3.10' is the Python the FC instance ran.
    assert report["values"] == [[f"{x * 1000:,}", "3.10", function] for x in range(4)]

