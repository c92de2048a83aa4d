"""`fc-magic requirements NOTEBOOK.ipynb ...`, run as a user runs it."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys

import nbformat
import pytest

from conftest import install_distribution

FC_MAGIC = os.path.join(os.path.dirname(sys.executable), "fc-magic")


def fc_magic(*args, cwd=None, env=None):
    return subprocess.run([FC_MAGIC, *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


def write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return str(path)


def test_prints_pinned_requirements_and_warns_on_stderr(tmp_path):
    path = write_notebook(tmp_path / "work.ipynb", [
        "import sklearn.ensemble\nfrom PIL import Image\nimport yaml, os, json\n",
        "%%time\nimport bs4\n",
        "%pip install pycryptodome\nfrom Crypto.Cipher import AES\nimport nacl.signing\n",
        "import IPython\nimport ipywidgets\nimport lithops\nimport fc_magic\n",
        "import surely_absent_pkg\n",
        "print(\n",
    ])
    done = fc_magic("requirements", path)
    assert done.returncode == 0, done.stderr
    expected = sorted(f"{name}=={md.version(dist)}" for name, dist in [
        ("beautifulsoup4", "beautifulsoup4"), ("pillow", "Pillow"),
        ("pycryptodome", "pycryptodome"), ("pynacl", "PyNaCl"), ("pyyaml", "PyYAML"),
        ("scikit-learn", "scikit-learn")])
    assert done.stdout.splitlines() == expected
    warnings = done.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: work.ipynb code cell 6 skipped: invalid syntax")
    assert warnings[1].startswith("warning: no installed distribution provides surely_absent_pkg")


def test_no_pin_and_several_notebooks_with_their_own_local_modules(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "yaml_helpers.py").write_text("import yaml\n")
    a = write_notebook(one / "a.ipynb", ["import yaml_helpers\nimport bs4\n"])
    # yaml_helpers is local to one/ only: from two/ it is an unknown module.
    b = write_notebook(two / "b.ipynb", ["import nacl\nimport yaml_helpers\n"])
    done = fc_magic("requirements", "--no-pin", a, b)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["beautifulsoup4", "pynacl"]
    assert "yaml_helpers" in done.stderr


def test_old_format_notebooks_are_converted(tmp_path):
    nb = nbformat.v3.new_notebook()
    nb.worksheets.append(nbformat.v3.new_worksheet(
        cells=[nbformat.v3.new_code_cell(input="import yaml\n")]))
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.v3.writes_json(nb))
    done = fc_magic("requirements", "--no-pin", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["pyyaml"]


@pytest.mark.parametrize("content, message", [
    (None, "no such notebook"),
    ("{ not json", "is not a readable notebook"),
    (json.dumps({"cells": []}), "is not a notebook"),
    (json.dumps({"nbformat": 4, "cells": "x"}), "is not a notebook"),
])
def test_missing_or_invalid_notebook_exits_2(tmp_path, content, message):
    path = tmp_path / "broken.ipynb"
    if content is not None:
        path.write_text(content)
    good = write_notebook(tmp_path / "good.ipynb", ["import yaml\n"])
    done = fc_magic("requirements", good, str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("fc-magic requirements: ")
    assert message in done.stderr and "broken.ipynb" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_colab_notebook_names_what_nothing_provides_and_keeps_quiet_otherwise(tmp_path):
    """Several distributions share the `google` namespace; Colab's google.colab is none of
    them. The user's regex with an invalid escape is theirs to fix, not fc-magic's to print."""
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "google-auth", ["google/auth/__init__.py",
                                               "google/oauth2/__init__.py"])
    install_distribution(site, "protobuf", ["google/protobuf/__init__.py",
                                            "google/protobuf/message.py"])
    install_distribution(site, "googleapis-common-protos", ["google/api/__init__.py"])
    path = write_notebook(tmp_path / "colab.ipynb", [
        "from google.colab import files\nimport google.auth\n",
        "from google.protobuf import message\n",
        'import re\nDIGITS = re.compile("\\d+")\n',
    ])
    done = fc_magic("requirements", path, "--no-pin", env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["google-auth", "protobuf"]
    assert done.stderr.splitlines() == [
        "warning: no installed distribution provides google.colab; not added (install it "
        "here or declare its package in %%fc_runtime)"]
