"""`fc-magic requirements` against `pipreqs --scan-notebooks` on one 1,000-cell notebook.

The notebook is generated here (fixed seed): markdown, IPython syntax
(`%timeit`, `!ls`, `%pip`), functions with imports in their bodies, and the
six packages whose import name is not their distribution name (sklearn,
PIL, yaml, Crypto, bs4, nacl) plus numpy and requests. pipreqs runs from its
own venv under bench/.work (created here on first use), with `--use-local` so
neither side asks PyPI, and with this project's site-packages appended to its
path (a .pth file) so both tools see the same installed distributions.

Both tools run as the user runs them (a fresh process each time); rounds
alternate, medians count. Prints which tool names each mismatched
distribution correctly (canonical name and installed version), then, last,
the time ratio fc-magic / pipreqs.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
from packaging.utils import canonicalize_name

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import emit  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "capture"
PIPREQS_VENV = HERE / ".work" / "pipreqs-venv"
FC_MAGIC = Path(sys.executable).with_name("fc-magic")
CELLS = 1000
ROUNDS = 3
MISMATCHED = {"sklearn": "scikit-learn", "PIL": "Pillow", "yaml": "PyYAML",
              "Crypto": "pycryptodome", "bs4": "beautifulsoup4", "nacl": "PyNaCl"}
EXPECTED = [*MISMATCHED.values(), "numpy", "requests"]

IMPORT_FORMS = [
    "import sklearn.linear_model as lm", "from sklearn.ensemble import RandomForestClassifier",
    "from PIL import Image", "import PIL.ImageOps", "import yaml",
    "from yaml import safe_load", "from Crypto.Cipher import AES", "import Crypto.Hash.SHA256",
    "from bs4 import BeautifulSoup", "import bs4", "import nacl.secret",
    "from nacl.signing import SigningKey", "import numpy as np", "import requests",
    "import os", "import json", "from collections import Counter", "import itertools as it",
    "from pathlib import Path", "import re",
]
BODY = [
    "values = [x * {k} for x in range({n})]",
    "total = sum(v for v in values if v % {k} == 0)",
    "counts = dict(zip(range({k}), range({n})))",
    "label = f'run {k}: ' + str(total)",
    "result = sorted(counts.items(), key=lambda kv: -kv[1])[:{k}]",
]


def make_notebook(path: Path) -> None:
    rnd = random.Random(20261130)
    nb = nbformat.v4.new_notebook()
    for i in range(CELLS):
        roll = rnd.random()
        if roll < 0.1:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"## Step {i}\nSome notes on step {i}."))
            continue
        lines = []
        if roll < 0.35:
            lines += rnd.sample(IMPORT_FORMS, rnd.randint(1, 3))
        if roll > 0.9:
            lines.append(rnd.choice(["%timeit sum(range(100))", "!ls -la", "%pip list",
                                     "%matplotlib inline", "len?"]))
        k, n = rnd.randint(2, 9), rnd.randint(10, 999)
        if rnd.random() < 0.3:
            imp = rnd.choice(IMPORT_FORMS)
            lines.append(f"def step_{i}(x):")
            lines.append(f"    {imp}")
            lines += ["    " + b.format(k=k, n=n) for b in rnd.sample(BODY, 3)]
            lines.append("    return x")
        else:
            lines += [b.format(k=k, n=n) for b in rnd.sample(BODY, rnd.randint(2, 5))]
        nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines) + "\n"))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def ensure_pipreqs() -> Path:
    """pipreqs in its own venv; this project's packages visible after its own."""
    python = PIPREQS_VENV / "bin" / "python"
    if not (PIPREQS_VENV / "bin" / "pipreqs").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PIPREQS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pipreqs"], check=True)
    purelib = subprocess.run([str(python), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "fc_magic_bench_shared.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    return PIPREQS_VENV / "bin" / "pipreqs"


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return took, done.stdout


def named(output: str) -> dict[str, str]:
    """{canonical name: version or ''} from requirements.txt lines."""
    found = {}
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        found[canonicalize_name(name)] = version.strip()
    return found


def main() -> None:
    notebook = WORK / "nb" / "analysis.ipynb"
    make_notebook(notebook)
    pipreqs = ensure_pipreqs()
    ours_cmd = [str(FC_MAGIC), "requirements", str(notebook)]
    theirs_cmd = [str(pipreqs), "--scan-notebooks", "--use-local", "--print",
                  str(notebook.parent)]
    ours, theirs = [], []
    timed(ours_cmd), timed(theirs_cmd)  # warm file caches on both sides
    for _ in range(ROUNDS):
        took, ours_out = timed(ours_cmd)
        ours.append(took)
        took, theirs_out = timed(theirs_cmd)
        theirs.append(took)

    print(f"notebook: {CELLS} cells ({notebook.stat().st_size // 1024} KB), rounds: {ROUNDS}")
    print(f"fc-magic requirements: {statistics.median(ours):.3f} s (median)")
    print(f"pipreqs --scan-notebooks --use-local: {statistics.median(theirs):.3f} s (median)")
    print()
    results = {"fc-magic": named(ours_out), "pipreqs": named(theirs_out)}
    print(f"{'distribution':16} {'installed':10} {'fc-magic':22} {'pipreqs':22}")
    correct = {tool: 0 for tool in results}
    for dist in EXPECTED:
        version = md.version(dist)
        cells = []
        for tool, found in results.items():
            got = found.get(canonicalize_name(dist))
            ok = got == version
            correct[tool] += ok
            cells.append(("ok " if ok else "NO ") + (f"=={got}" if got else "(missing)"))
        print(f"{dist:16} {version:10} {cells[0]:22} {cells[1]:22}")
    expected = {canonicalize_name(d) for d in EXPECTED}
    for tool, found in results.items():
        extra = sorted(set(found) - expected)
        print(f"{tool}: {correct[tool]}/{len(EXPECTED)} named and pinned correctly"
              + (f"; also listed: {', '.join(extra)}" if extra else ""))
    version = subprocess.run([str(PIPREQS_VENV / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('pipreqs'))"],
                             capture_output=True, text=True).stdout.strip()
    print(f"(pipreqs {version} --use-local knows only distributions that ship a "
          f"top_level.txt, and compares its mapped names case-sensitively with the "
          f"dist-info folder names; without --use-local it asks PyPI for the latest "
          f"versions instead of the installed ones)")
    print()
    emit("requirements capture, 1,000-cell notebook (fc-magic / pipreqs)",
         statistics.median(ours), statistics.median(theirs), "< 1")


if __name__ == "__main__":
    main()
