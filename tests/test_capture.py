"""Import capture from saved notebooks and from the live kernel."""
from __future__ import annotations

import importlib.metadata as md
import json
import warnings

import nbformat
import pytest
from packaging.utils import canonicalize_name

from fc_magic.capture import (
    NotebookProblem,
    imported_modules,
    kernel_capture,
    notebook_capture,
    notebook_sources,
)
from fc_magic.requirements import resolve_requirements

CELLS = {
    "aliases": "import sklearn.linear_model as lm\nimport numpy as np, json\n",
    "from": "from PIL import Image\nfrom collections import OrderedDict\n",
    "relative": "from . import sibling\nfrom .pkg import thing\n",
    "function": "def load(path):\n    import yaml\n    return yaml.safe_load(open(path))\n",
    "class": "class Box:\n    def seal(self):\n        from nacl import secret\n        return secret\n",
    "if": "import sys\nif sys.platform == 'linux':\n    import bs4\nelse:\n    import html5lib_not_here\n",
    "try": ("try:\n    import ujson_surely_absent as fastjson\nexcept ImportError:\n"
            "    import json as fastjson\n"
            "try:\n    import scipy\nexcept (ImportError, OSError):\n    scipy = None\n"),
    "dynamic": ("import importlib\ncipher = importlib.import_module('Crypto.Cipher')\n"
                "six = __import__('six')\nname = 'x'\nmod = importlib.import_module(name)\n"),
    "magics": ("%pip install tblib\n!ls -la\n%time import pika\nlen?\n"
               "x = !echo hi\n"),
    "cellmagic": "%%time\nimport cloudpickle\nv = 1\n",
    "bash": "%%bash\nimport not_python_at_all\necho hi\n",
    "syntax": "def broken(:\n    import requests\n",
}


def write_notebook(path, cells, markdown=True):
    nb = nbformat.v4.new_notebook()
    if markdown:
        nb.cells.append(nbformat.v4.new_markdown_cell("import not_code_markdown"))
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def notebook(tmp_path):
    return write_notebook(tmp_path / "analysis.ipynb", list(CELLS.values()))


def test_every_import_form_is_captured(notebook):
    report = notebook_capture(notebook)
    expected = {"sklearn.linear_model", "numpy", "json", "PIL.Image", "collections.OrderedDict",
                "yaml", "nacl.secret", "sys", "bs4", "html5lib_not_here", "json", "scipy",
                "importlib", "Crypto.Cipher", "six", "pika", "cloudpickle"}
    assert report.modules == expected
    assert report.skipped_optional == {"ujson_surely_absent"}
    assert report.cells == len(CELLS)
    assert "sibling" not in report.top_level and "pkg" not in report.top_level
    assert "not_python_at_all" not in report.top_level      # %%bash is not Python
    assert "not_code_markdown" not in report.top_level      # markdown is not run


def test_bad_cells_are_named_in_warnings(notebook):
    report = notebook_capture(notebook)
    syntax_cell = list(CELLS).index("syntax") + 1
    dynamic_cell = list(CELLS).index("dynamic") + 1
    assert any(w.startswith(f"analysis.ipynb code cell {syntax_cell} skipped: invalid syntax")
               for w in report.warnings)
    assert any(w.startswith(f"analysis.ipynb code cell {dynamic_cell} line 5: ")
               and "computed name" in w for w in report.warnings)
    assert "requests" not in report.top_level   # the broken cell is skipped, not half-read
    assert len(report.warnings) == 2


def test_notebook_to_requirements_names_mismatched_distributions(notebook):
    report = notebook_capture(notebook)
    rs = resolve_requirements("", report.modules, backend="localhost",
                              local_dir=str(notebook.parent))
    user = {e.name: e.spec for e in rs.entries if e.source == "captured"}
    for dist in ("scikit-learn", "Pillow", "PyYAML", "pycryptodome", "beautifulsoup4", "PyNaCl",
                 "numpy", "scipy", "six", "pika", "cloudpickle"):
        name = canonicalize_name(dist)
        assert user[name] == f"{name}=={md.version(dist)}"
    assert any("html5lib_not_here" in w for w in rs.warnings)


def test_local_modules_next_to_the_notebook_are_left_out(tmp_path):
    (tmp_path / "features.py").write_text("import yaml\n")
    path = write_notebook(tmp_path / "nb.ipynb", ["import features\nimport yaml\n"])
    rs = resolve_requirements("", notebook_capture(path).modules, backend="localhost",
                              local_dir=str(tmp_path), pin=False)
    assert rs.user_lines() == ["pyyaml"]


def test_plain_sources_without_ipython_transform():
    report = imported_modules(["import a.b\n", "x = 1\n"], transform=lambda s: s,
                              labels=["one", "two"])
    assert report.modules == {"a.b"}
    bad = imported_modules(["%time import a\n"], transform=lambda s: s, labels=["mine"])
    assert bad.modules == set() and bad.warnings[0].startswith("mine skipped: invalid syntax")


@pytest.mark.parametrize("content, reason", [
    (None, "no such notebook"),
    ("{not json", "not a readable notebook"),
    (json.dumps({"hello": 1}), "not a"),
])
def test_unreadable_notebooks(tmp_path, content, reason):
    path = tmp_path / "x.ipynb"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NotebookProblem, match=reason):
        notebook_sources(path)


def test_kernel_capture_sees_executed_cells(ip):
    def run(source):   # as a kernel runs cells: stored in the history
        return ip.run_cell(source, store_history=True)

    first = ip.execution_count
    assert run("import yaml as _y\n").success
    assert run("def _uses_bs4():\n    from bs4 import BeautifulSoup\n    return BeautifulSoup\n").success
    assert run("%time import nacl\n").success
    assert not run("def oops(:\n    pass\n").success   # a syntax error stays in the history
    report = kernel_capture(ip)
    assert {"yaml", "bs4.BeautifulSoup", "nacl"} <= report.modules
    assert f"In [{first + 3}] skipped: invalid syntax at line 1" in "\n".join(report.warnings)


def test_fc_runtime_capture_on_a_colab_notebook(ip, fc, tmp_path, monkeypatch):
    """Through the magic: `google.colab` beside other `google` distributions is named as
    missing (not guessed), and the user's invalid regex escape is not fc-magic's to print."""
    from IPython.utils.capture import capture_output

    from conftest import install_distribution
    from fc_magic.requirements import refresh_environment

    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "google-auth", ["google/auth/__init__.py"])
    install_distribution(site, "protobuf", ["google/protobuf/__init__.py"])
    monkeypatch.syspath_prepend(str(site))
    refresh_environment()
    ip.history_manager.reset()      # capture only what this test's cells import
    try:
        # As on a laptop: Colab's module is not there, the cell fails, it stays in the history.
        assert not ip.run_cell("from google.colab import files\n", store_history=True).success
        assert ip.run_cell("import yaml\n", store_history=True).success
        with capture_output(), warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)   # the kernel's own, as it runs
            assert ip.run_cell('import re\nDIGITS = re.compile("\\d+")\n',
                               store_history=True).success
        with capture_output() as shown, warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            built = ip.run_cell("%%fc_runtime colab_rt --capture\n# what the notebook imports\n",
                                store_history=True)
        assert built.success, built.error_in_exec
    finally:
        monkeypatch.undo()
        refresh_environment()
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert ["pyyaml", f"=={md.version('PyYAML')}", "captured"] in rows
    assert not any(row and row[0] in ("google-auth", "protobuf") for row in rows)
    notes = [line for line in shown.stdout.splitlines() if line.startswith("note:")]
    assert notes == ["note: no installed distribution provides google.colab; not added "
                     "(install it here or declare its package in %%fc_runtime)"]
    assert [str(w.message) for w in warned if issubclass(w.category, SyntaxWarning)] == []
    assert "Warning" not in shown.stderr and "Warning" not in shown.stdout
    assert fc.current_runtime.name == "colab_rt"
