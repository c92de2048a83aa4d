"""Plain-function tests of the runtime builder: installer output, pip config, slimming, locks."""
from __future__ import annotations

import os
import threading
import time
import zipfile

import pytest

from fc_magic.runtime import cache, fcpackage, installer
from fc_magic.runtime.sizes import folder_table


def test_error_line_picks_uv_cause_and_pip_error():
    uv_out = ["Using CPython 3.12.1", "error: No solution found when resolving dependencies",
              "  cause: Because nope-pkg was not found in the package registry and you "
              "require nope-pkg, we can conclude that your requirements are unsatisfiable."]
    assert installer.error_line(uv_out).startswith("Because nope-pkg was not found")
    pip_out = ["Looking in indexes: https://pypi.org/simple",
               "ERROR: Could not find a version that satisfies the requirement nope-pkg "
               "(from versions: none)", "ERROR: No matching distribution found for nope-pkg"]
    assert installer.error_line(pip_out) == "No matching distribution found for nope-pkg"


def test_pip_config_becomes_uv_sources(tmp_path):
    constraint = tmp_path / "c.txt"
    constraint.write_text("torch<=2\n")
    text = (f"global.cert='/etc/ssl/certs/ca.crt'\n"
            f"global.constraint='{constraint}'\n"
            "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'\n"
            "global.find-links='/opt/wheels'\n"
            ":env:.find-links='/opt/wheels'\n")
    sources = installer.parse_pip_config(text)
    assert sources.extra_index_urls == ("file:///opt/a/simple", "file:///opt/b/simple")
    assert sources.find_links == ("/opt/wheels",)
    assert sources.cert == "/etc/ssl/certs/ca.crt"
    # Index URLs can hold passwords: environment only, never the (world-readable) argv.
    assert sources.uv_args() == ["--constraint", str(constraint)]
    env = sources.uv_env()
    assert env["UV_EXTRA_INDEX_URL"] == "file:///opt/a/simple file:///opt/b/simple"
    assert env["UV_FIND_LINKS"] == "/opt/wheels"
    # pip merges every source; uv must be told to, or it stops at the first index.
    assert env["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    assert installer.parse_pip_config("").uv_args() == []
    assert installer.parse_pip_config("").uv_env() == {}


def test_slim_drops_bytecode_tests_and_scripts_but_keeps_top_level_tests(tmp_path):
    stage = tmp_path / "stage"
    for rel in ("pkg/__init__.py", "pkg/tests/test_x.py", "pkg/__pycache__/a.pyc",
                "pkg/core.pyi", "tests/__init__.py", "bin/tool", ".lock", "mod.py"):
        path = stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n")
    saved = fcpackage.slim(str(stage))
    left = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    assert left == ["mod.py", "pkg/__init__.py", "tests/__init__.py"]
    assert saved == 5 * len("x = 1\n")


def test_zip_is_deterministic_and_sized_per_package(tmp_path):
    stage = tmp_path / "s"
    (stage / "a").mkdir(parents=True)
    (stage / "a" / "__init__.py").write_text("print('a')\n" * 200)
    (stage / "b.py").write_text("B = 2\n")
    one, two = tmp_path / "1.zip", tmp_path / "2.zip"
    members = fcpackage.write_zip(str(stage), str(one))
    time.sleep(0.01)
    os.utime(stage / "b.py")
    fcpackage.write_zip(str(stage), str(two))
    assert one.read_bytes() == two.read_bytes()
    assert [m[0] for m in members] == ["a/__init__.py", "b.py"]
    assert zipfile.ZipFile(one).read("b.py") == b"B = 2\n"


def test_limits_note_oss_over_100mb_and_refuse_over_500mb():
    from fc_magic.runtime.sizes import PackageSize

    rows = [PackageSize("torch", 900 << 20, 450 << 20), PackageSize("numpy", 60 << 20, 20 << 20)]
    assert fcpackage.check_limits(50 << 20, 200 << 20, rows) == []
    notes = fcpackage.check_limits(150 << 20, 400 << 20, rows)
    assert "OSS code location" in notes[0] and "torch" in notes[0]
    from fc_magic.inputs import InputProblem
    with pytest.raises(InputProblem, match="over Function Compute's 500.0 MB limit; largest: torch"):
        fcpackage.check_limits(501 << 20, 1 << 30, rows)


def test_fc_python_must_be_an_fc_runtime():
    from fc_magic.inputs import InputProblem
    fcpackage.check_python("3.10")
    fcpackage.check_python("3.12")
    # 3.9 is an FC runtime, but Lithops >= 3.8 does not run on it.
    for python in ("3.9", "3.11"):
        with pytest.raises(InputProblem, match=rf"^Python {python} cannot run maps on Function "
                                               rf"Compute: fc_magic supports Python 3\.10 and "
                                               rf"3\.12"):
            fcpackage.check_python(python)


def test_key_lock_excludes_and_leaves_no_file(tmp_path):
    inside, overlaps = [], []

    def hold():
        with cache.key_lock(str(tmp_path), "local", "k"):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
    assert os.listdir(tmp_path) == []


def test_folder_table_groups_files_by_distribution(tmp_path):
    site = tmp_path / "site"
    (site / "foo").mkdir(parents=True)
    (site / "foo" / "__init__.py").write_text("x" * 100)
    info = site / "foo_bar-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("foo/__init__.py,,100\nfoo_bar-1.0.dist-info/RECORD,,\n")
    (site / "loose.py").write_text("y" * 10)
    rows = {r.name: r.unpacked_bytes for r in folder_table(str(site))}
    assert rows["foo-bar"] == 100 + (info / "RECORD").stat().st_size
    assert rows["loose"] == 10


def test_platform_follows_each_fc_runtimes_glibc():
    assert fcpackage.uv_platform("3.12") == "x86_64-manylinux_2_28"
    assert fcpackage.uv_platform("3.9") == "x86_64-manylinux_2_17"   # glibc 2.24: no uv name
    tags = fcpackage.pip_platforms("3.9")
    assert tags[0] == "manylinux_2_24_x86_64" and "manylinux_2_28_x86_64" not in tags
    assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64"} <= set(tags)


def test_uv_accepts_the_platform_names(tmp_path):
    uv = installer.find_uv()
    if uv is None:
        pytest.skip("uv is not installed")
    import subprocess

    def dry_run(python: str, platform: str):
        return subprocess.run([uv, "pip", "install", "--no-config", "--dry-run", "--target",
                               str(tmp_path), "--python-version", python, "--python-platform",
                               platform, "--only-binary", ":all:", "--offline", "--no-index",
                               "fc-magic-nothing"],
                              capture_output=True, text=True, cwd=str(tmp_path), timeout=120)

    # A name uv does not know stops at argument parsing (exit 2) ...
    wrong = dry_run("3.12", "x86_64-manylinux_9_99")
    assert wrong.returncode == 2 and "invalid value" in wrong.stderr, wrong.stderr
    for python in ("3.9", "3.10", "3.12"):
        # ... ours get as far as resolving, whose only failure is the missing package.
        out = dry_run(python, fcpackage.uv_platform(python))
        assert out.returncode == 1, out.stderr
        assert "fc-magic-nothing was not found" in out.stderr, out.stderr
        assert "invalid value" not in out.stderr, out.stderr
