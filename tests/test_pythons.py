"""Which Pythons fc_magic supports: one fact in limits.py, and pip, README, magics agree."""
from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output
from packaging.specifiers import SpecifierSet

from conftest import find_python
from fc_magic import limits

ROOT = Path(__file__).resolve().parent.parent


def test_supported_pythons_are_the_fc_runtimes_the_installed_lithops_runs_on():
    from lithops.serverless.backends.aliyun_fc import config as fc_config

    lithops_pythons = SpecifierSet(md.metadata("lithops")["Requires-Python"])
    assert set(limits.FC_PYTHONS) <= set(fc_config.AVAILABLE_PY_RUNTIMES)
    assert limits.SUPPORTED_PYTHONS == tuple(
        p for p in limits.FC_PYTHONS if lithops_pythons.contains(f"{p}.0"))
    assert limits.SUPPORTED_PYTHONS == ("3.10", "3.12")
    assert lithops_pythons.contains(f"{limits.LITHOPS_MIN_PYTHON}.0")


def test_pyproject_states_the_same_pythons():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == f">={limits.LITHOPS_MIN_PYTHON}"
    stated = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert tuple(stated) == limits.SUPPORTED_PYTHONS
    assert project["license"] == "Apache-2.0"


def test_readme_states_the_same_pythons():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Supported Pythons", 1)[1].split("\n#", 1)[0]
    assert "fc_magic supports kernels on **Python 3.10 and 3.12**" in section
    assert "pip refuses\nto install fc_magic on 3.9" in section
    assert "On 3.9 or 3.10 the package works the same" not in readme


def test_this_python_is_supported_and_loads_quietly(ip):
    assert limits.python_problem() is None
    ip.run_line_magic("unload_ext", "fc_magic")
    with capture_output() as cap:
        ip.run_line_magic("load_ext", "fc_magic")
    assert cap.stdout == "" and cap.stderr == ""


@pytest.mark.parametrize("python", ["3.9", "3.11", "3.13"])
def test_load_ext_on_another_python_says_which_work_and_why_in_one_line(ip, monkeypatch, python):
    monkeypatch.setattr(limits, "python_version", lambda: python)
    ip.run_line_magic("unload_ext", "fc_magic")
    with capture_output() as cap:
        ip.run_line_magic("load_ext", "fc_magic")
    assert cap.stdout == ""
    lines = cap.stderr.splitlines()
    assert len(lines) == 1, cap.stderr
    assert lines[0].startswith(f"fc_magic: Python {python} cannot run maps on Function Compute: "
                               f"fc_magic supports Python 3.10 and 3.12, the FC runtimes "
                               f"Lithops >= 3.8 runs on, because the kernel's Python and the "
                               f"FC runtime's must match")
    assert lines[0].endswith("(localhost maps work here)")
    # The magics are there all the same: localhost maps do not depend on FC's runtimes.
    assert "FCMagic" in ip.magics_manager.registry


def test_pip_refuses_to_install_on_python_3_9(tmp_path):
    python, how = find_python("3.9")
    if python is None:
        pytest.skip(how)
    # A copy, so that building metadata leaves nothing in the worktree.
    project = tmp_path / "fc_magic_src"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "fc_magic", project / "fc_magic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--no-deps",
                          "--disable-pip-version-check", str(project)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert re.search(r"Package 'fc-magic' requires a different Python: 3\.9\.\d+ not in "
                     r"'>=3\.10'", out.stderr), out.stderr[-2000:]
