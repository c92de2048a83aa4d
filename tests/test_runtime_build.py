"""Real runtime builds (small PyPI packages), each target built once per session.

What a user sees: `%%fc_runtime` builds, shows, caches; `%fc_map` then runs
in that runtime, where an undeclared package the kernel has is missing; the
FC code package runs Lithops' handler under FC's Python; the cache survives
races, failures and damage.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
from bs4 import BeautifulSoup
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic.requirements import resolve_requirements
from fc_magic.runtime import BuildFailed, ensure_runtime, list_runtimes

from conftest import python_or_skip, watch_files

pytestmark = pytest.mark.slow

#: humanize: small, pure Python, not installed in the project's venv.
CELL = "humanize\n"
#: A package the kernel has (fc_magic depends on it) that no runtime here declares.
UNDECLARED = "traitlets"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("runtime-cache"))


def _build_once(name: str, backend: str, target: str, cache_dir: str):
    """A real build of CELL; (entry, snapshots seen). The cwd must not move."""
    cwd = os.getcwd()
    seen = []
    reqs = resolve_requirements(CELL, backend=backend)
    entry = ensure_runtime(name, reqs, target=target, cache_dir=cache_dir,
                           on_snapshot=seen.append)
    assert os.getcwd() == cwd
    return entry, seen


@pytest.fixture(scope="session")
def local_build(session_cache):
    """The local runtime of CELL, built once."""
    return _build_once("rt_local", "localhost", "local", session_cache)


@pytest.fixture(scope="session")
def fc_build(session_cache):
    """The FC code package of CELL, built once."""
    return _build_once("rt_fc", "aliyun_fc", "fc", session_cache)


def _tree(root: str) -> dict:
    """Every path under root with its bytes' hash (or 'dir'): a byte-for-byte picture."""
    out = {}
    for base, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(base, d), root)] = "dir"
        for f in files:
            path = os.path.join(base, f)
            if os.path.islink(path):
                out[os.path.relpath(path, root)] = "link:" + os.readlink(path)
            else:
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ------------------------------------------------------------------ local target
def test_local_build_reports_steps_and_sizes(local_build):
    entry, seen = local_build
    assert entry.target == "local" and entry.deploy_name == f"rt_local-{entry.key[:8]}"
    assert os.path.isabs(entry.interpreter) and os.access(entry.interpreter, os.X_OK)
    assert [s for s in seen if s.log_tail], "the installer's output reached the view"
    final = seen[-1]
    assert final.status == "success" and not final.cache_hit
    assert all(state == "done" for _label, state in final.steps)
    assert "humanize" in {p.name for p in final.sizes}
    assert any(line.startswith("humanize") for line in entry.requirements)
    # The venv is the kernel's Python, without the kernel's packages.
    out = subprocess.run([entry.interpreter, "-c", textwrap.dedent(f"""
        import sys, humanize
        try:
            import {UNDECLARED}
        except ImportError:
            print(sys.version_info[:2], "refused")
        """)], capture_output=True, text=True, cwd=os.sep)
    assert out.stdout.strip() == f"{tuple(sys.version_info[:2])} refused", out.stderr


def test_map_runs_in_the_runtime_and_undeclared_package_is_missing(ip, fc, cell,
                                                                    session_cache, local_build):
    entry, _ = local_build
    fc.cache_dir = session_cache
    cwd = os.getcwd()
    with capture_output() as cap:
        cell(f"%%fc_runtime rt_local --memory 512\n{CELL}")
    assert "cache hit" in cap.stdout and len(cap.stdout.splitlines()) == 1
    assert fc.current_runtime.interpreter == entry.interpreter
    cell("def uses_declared(x):\n    import humanize, sys\n"
         "    return humanize.intcomma(x * 1000), sys.executable\n"
         f"def uses_undeclared(x):\n    import {UNDECLARED}\n    return x\n")
    ok = cell("%fc_map uses_declared [1, 2] --quiet")
    assert ok.values == [("1,000", entry.interpreter), ("2,000", entry.interpreter)]
    assert ok.memory_mb == 512  # the runtime's --memory is the default
    with pytest.raises(UsageError, match=UNDECLARED):   # %fc_map's check before sending
        cell("%fc_map uses_undeclared [1] --quiet")
    # Past that check, the task itself cannot import it: the kernel's copy is
    # not shipped along (Lithops would, for a pure-Python package).
    from fc_magic.engine import MapRequest, run_map
    from fc_magic.runtime import map_fields

    request = MapRequest(**map_fields(entry, "localhost"))
    assert request.runtime == entry.interpreter
    bad = run_map(ip.user_ns["uses_undeclared"], [1], request)
    assert bad.failures and bad.failures[0].exc_type == "ModuleNotFoundError"
    assert UNDECLARED in bad.failures[0].message
    assert os.getcwd() == cwd


def test_second_run_of_the_cell_is_a_hit_without_subprocess(ip, fc, cell, session_cache,
                                                             local_build, monkeypatch):
    fc.cache_dir = session_cache
    cell(f"%%fc_runtime rt_local\n{CELL}")
    first = fc.current_runtime

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a cache hit started a subprocess: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    with capture_output() as cap:
        cell(f"%%fc_runtime rt_local\n{CELL}")
    assert fc.current_runtime.key == first.key
    # One line, nothing else: the table was shown when it was built.
    assert cap.stdout.startswith("rt_local: cache hit") and cap.stdout.count("\n") == 1
    # In a notebook: one line, the requirement and size tables behind a disclosure,
    # static HTML (a saved notebook keeps it), and no slider.
    fc.view = "widget"
    with capture_output() as cap:
        cell(f"%%fc_runtime rt_local\n{CELL}")
    assert len(cap.outputs) == 1 and cap.stdout == ""
    data = cap.outputs[0].data
    assert "application/vnd.jupyter.widget-view+json" not in data
    assert data["text/plain"].startswith("rt_local: cache hit") and "\n" not in data["text/plain"]
    soup = BeautifulSoup(data["text/html"], "html.parser")
    details = soup.find("details")
    assert details is not None and details.summary.get_text().startswith("rt_local: cache hit")
    tables = [t.get("class") for t in details.find_all("table")]
    assert tables == [["fc-magic-requirements"], ["fc-magic-sizes"]]
    assert "humanize" in details.find("table").get_text()
    fc.view = "text"
    with capture_output() as cap:
        cell("%fc_runtime")
    assert "runtime rt_local (local venv" in cap.stdout and "humanize" in cap.stdout
    assert first.key[:16] in cap.stdout


def test_a_cache_hit_does_the_same_small_work_however_big_the_runtime(
        ip, fc, cell, tmp_path, session_cache, local_build, monkeypatch):
    """A hit reads the manifest and stats the files it names: no walk, no hashing."""
    entry, _ = local_build
    fc.cache_dir = str(tmp_path / "own")
    shutil.copytree(session_cache, fc.cache_dir, symlinks=True)
    own = entry.path.replace(session_cache, fc.cache_dir)

    def hit(seen) -> list[str]:
        seen.clear()
        with capture_output() as cap:
            cell(f"%%fc_runtime rt_local\n{CELL}")
        assert "rt_local: cache hit" in cap.stdout and fc.current_runtime.path == own
        return sorted(seen.touched())

    seen = watch_files(monkeypatch, own)
    small = hit(seen)
    assert small, "the hit touched nothing in its entry: the count would prove nothing"
    # The manifest and the few files it names (the entry folder itself is stat'ed once per
    # path the manifest names, to check each resolves inside it): a few distinct files.
    assert len(set(small)) <= 20, small
    # The same runtime, grown by 2,000 files in 40 packages: the hit's work is unchanged.
    site = next(p for p, dirs, _ in os.walk(own) if p.endswith("site-packages"))
    for n in range(40):
        pkg = os.path.join(site, f"zz_grown_{n}")
        os.makedirs(pkg)
        for i in range(50):
            with open(os.path.join(pkg, f"m{i}.py"), "w") as fh:
                fh.write("x = 1\n" * 20)
    grown = hit(seen)
    assert grown == small
    assert not [p for p in grown if "zz_grown_" in p]


def test_failing_build_leaves_cache_and_current_runtime_unchanged(ip, fc, cell, session_cache,
                                                                  local_build):
    fc.cache_dir = session_cache
    cell(f"%%fc_runtime rt_local\n{CELL}")
    before_runtime = fc.current_runtime
    before = _tree(session_cache)
    with capture_output() as cap, pytest.raises(UsageError) as err:
        cell("%%fc_runtime broken\nfc-magic-no-such-package-xyz==1.0\n")
    message = str(err.value)
    assert "\n" not in message and message.startswith("%%fc_runtime: building broken failed")
    assert "fc-magic-no-such-package-xyz" in message
    assert "build FAILED" in cap.stdout
    assert _tree(session_cache) == before
    assert fc.current_runtime is before_runtime


def test_uv_colour_codes_never_reach_the_build_log_or_the_headline(ip, fc, cell, tmp_path,
                                                                    monkeypatch):
    """A kernel started with FORCE_COLOR makes uv colour its errors even into a pipe."""
    from fc_magic.runtime import installer

    monkeypatch.setattr(installer, "ENV_ALLOWED", installer.ENV_ALLOWED | {"FORCE_COLOR"})
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("FC_MAGIC_INSTALLER", "uv")
    fc.cache_dir = str(tmp_path / "c")
    with capture_output() as cap, pytest.raises(UsageError) as err:
        cell("%%fc_runtime colours\nfc-magic-no-such-package-xyz==1.0\n")
    message = str(err.value)
    # The red headline and the error are uv's words without escapes: "cause: Because ..."
    # is found and quoted, not "\x1b[1m\x1b[31mcause\x1b[39m...".
    assert "\x1b" not in message and "\x1b" not in cap.stdout
    assert "Because fc-magic-no-such-package-xyz was not found" in message
    assert "build FAILED" in cap.stdout and "error: No solution found" in cap.stdout


def _orphan(cache_dir: str, name: str) -> None:
    """Make the builds of ``name`` unused, as re-defining it with another list does."""
    from fc_magic.runtime import cache

    cache.remove_name(cache.runtimes_root(cache_dir), name)


def _unused_dirs(cache_dir: str) -> dict[str, int]:
    """The folder of every cached build no name uses, with its size in bytes."""
    from fc_magic.runtime import cache

    root = cache.runtimes_root(cache_dir)
    unused = {cache.entry_dir(root, r.target, r.key) for r in list_runtimes(cache_dir)
              if r.name is None}
    return {path: cache.folder_size(path) for path in unused}


def _gc_really_deletes(cache_dir: str, run_gc) -> None:
    """gc deletes exactly the unused builds from disk and says how many and how much."""
    from fc_magic.runtime.sizes import human

    named = {r.name: r.key for r in list_runtimes(cache_dir) if r.name}
    unused = _unused_dirs(cache_dir)
    assert unused, "nothing unused: the gc would prove nothing"
    said = run_gc()
    assert said == (f"removed {len(unused)} unused cached build(s), "
                    f"freed {human(sum(unused.values()))}"), said
    assert not [path for path in unused if os.path.exists(path)], "gc left an unused build"
    assert {r.name: r.key for r in list_runtimes(cache_dir)} == named   # the named ones stay
    assert run_gc() == "removed 0 unused cached build(s), freed 0 B"


def test_line_forms_list_remove_gc(ip, fc, cell, tmp_path, session_cache, local_build):
    entry, _ = local_build
    fc.cache_dir = str(tmp_path / "own")
    shutil.copytree(session_cache, fc.cache_dir, symlinks=True)
    own = entry.path.replace(session_cache, fc.cache_dir)
    with capture_output() as cap:
        cell("%fc_runtime --list")
    assert "rt_local" in cap.stdout and entry.key[:8] in cap.stdout
    with capture_output() as cap:
        cell("%fc_runtime rt_local")      # switch to a cached runtime by name
    assert fc.current_runtime.name == "rt_local"
    with capture_output() as cap:
        cell(f"%%fc_runtime rt_alias\n{CELL}")   # the same list: a hit on the same build
    assert "cache hit" in cap.stdout and fc.current_runtime.path == own
    with capture_output() as cap:
        cell("%fc_runtime --remove rt_alias")
    assert cap.stdout.strip() == "removed runtime rt_alias"   # rt_local still uses the build
    assert os.path.isdir(own)
    with capture_output() as cap:
        cell("%fc_runtime --remove rt_local")
    assert "removed runtime rt_local and 1 cached build" in cap.stdout
    assert not os.path.exists(own)
    assert fc.current_runtime is None
    assert "rt_local" not in {r.name for r in list_runtimes(fc.cache_dir)}
    with pytest.raises(UsageError, match="no runtime named 'rt_local'"):
        cell("%fc_runtime --remove rt_local")

    # --gc on another copy in which rt_local's build is no longer used by any name.
    fc.cache_dir = str(tmp_path / "gc")
    shutil.copytree(session_cache, fc.cache_dir, symlinks=True)
    _orphan(fc.cache_dir, "rt_local")

    def magic_gc() -> str:
        with capture_output() as cap:
            cell("%fc_runtime --gc")
        return cap.stdout.strip()

    _gc_really_deletes(fc.cache_dir, magic_gc)
    with capture_output() as cap:
        cell("%fc_runtime --list")
    assert "(unused)" not in cap.stdout


def test_two_processes_racing_on_one_key_build_once(tmp_path):
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import json, os, sys, time
        from fc_magic.requirements import resolve_requirements
        from fc_magic.runtime import ensure_runtime
        reqs = resolve_requirements("six\\n", backend="localhost")
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        seen = []
        entry = ensure_runtime("race", reqs, target="local", cache_dir={str(tmp_path / 'c')!r},
                               on_snapshot=seen.append)
        print(json.dumps({{"hit": seen[-1].cache_hit, "built_by": entry.manifest["built_by"],
                           "path": entry.path}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    import time
    time.sleep(1.0)  # both interpreters are up and polling for the go file
    go.write_text("go")
    results = []
    for proc in procs:
        out, errs = proc.communicate(timeout=300)
        assert proc.returncode == 0, errs
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["hit"] for r in results) == [False, True]
    assert results[0]["built_by"] == results[1]["built_by"]
    assert results[0]["path"] == results[1]["path"]
    runtimes = os.path.join(tmp_path / "c", "runtimes")
    # Besides the index, only the entry (and the kernels' leases on it).
    assert sorted(n for n in os.listdir(runtimes)
                  if not n.endswith(".json") and n != ".leases") == \
        [os.path.basename(results[0]["path"])]


# ------------------------------------------------------------------ fc target
def _unpack(zip_path: str, dest) -> str:
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.testzip() is None
        zf.extractall(dest)
    return str(dest)


@pytest.fixture(scope="session")
def fc_builtins(tmp_path_factory):
    """A stand-in for FC's preinstalled packages, per Python X.Y.

    Lithops' zip runtime (and ours) relies on the FC Python runtime's own
    requests/oss2, which FC puts on sys.path after the code folder. The
    packages are the ones the local venv needs on top of the FC list.
    """
    from fc_magic.runtime import fcpackage, installer

    made = {}

    def get(python: str) -> str:
        if python not in made:
            extra = sorted(set(resolve_requirements("", backend="localhost").lines())
                           - set(resolve_requirements("", backend="aliyun_fc",
                                                      python=python).lines()))
            folder = tmp_path_factory.mktemp(f"fc-builtins-{python}")
            req = folder / "requirements.txt"
            req.write_text("\n".join(extra) + "\n")
            target = str(folder / "site")
            kind = installer.choose_installer()
            installer.run(fcpackage.install_command(kind, python, target, str(req)),
                          cwd=str(folder), env=installer.installer_env(kind),
                          log=installer.CommandLog(), what="installing FC's builtins")
            made[python] = target
        return made[python]

    return get


_HANDLER_CHECK = textwrap.dedent("""
    import json, sys, types
    sys.path.insert(0, sys.argv[1])
    sys.path.append(sys.argv[2])   # FC's preinstalled packages come after the code
    import humanize, entry_point
    meta = entry_point.main(json.dumps({"get_metadata": True, "log_level": "WARNING"}),
                            types.SimpleNamespace(request_id="req-1"))
    try:
        import %s
        refused = False
    except ImportError:
        refused = True
    import os
    code = sys.argv[1] + os.sep
    from_code = [os.path.relpath(m.__cached__, code) for m in list(sys.modules.values())
                 if (getattr(m, "__file__", None) or "").startswith(code)
                 and m.__file__.endswith(".py")]
    print(json.dumps({"python": meta["python_version"], "lithops": meta["lithops_version"],
                      "preinstalls": len(meta["preinstalls"]), "refused": refused,
                      "humanize": humanize.__file__, "from_code": from_code}))
""" % UNDECLARED)


def _run_handler(python: str, unpacked: str, builtins: str) -> dict:
    # -I -S: the standard library, the unpacked package and FC's builtins only.
    out = subprocess.run([python, "-I", "-S", "-c", _HANDLER_CHECK, unpacked, builtins],
                         capture_output=True, text=True, cwd=unpacked, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fc_package_runs_lithops_handler_under_fc_python(fc_build, tmp_path, fc_builtins):
    entry, seen = fc_build
    assert entry.target == "fc" and entry.interpreter is None
    with zipfile.ZipFile(entry.package) as zf:
        names = zf.namelist()
    assert "entry_point.py" in names and "lithops/worker/handler.py" in names
    # Bytecode for what instances import (FC's code folder is read-only): the
    # declared packages each instance preloads, the handlers, Lithops and its
    # worker's packages; hash-based and unchecked: FC's unzip keeps no mtimes.
    pycs = [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert entry.manifest["preload"] == ["humanize"]
    assert "lithops/worker/__pycache__/handler.cpython-312.pyc" in pycs
    assert "__pycache__/entry_point.cpython-312.pyc" in pycs
    assert "humanize/__pycache__/__init__.cpython-312.pyc" in pycs
    with zipfile.ZipFile(entry.package) as zf:
        header = zf.read("humanize/__pycache__/__init__.cpython-312.pyc")[:16]
        assert json.loads(zf.read("fc_magic_preload.json")) == {"modules": ["humanize"]}
    assert int.from_bytes(header[4:8], "little") == 0b01, "hash-based, source not checked"
    assert not [n for n in names if n.startswith(("bin/", "."))]
    final = seen[-1]
    assert final.package_bytes == os.path.getsize(entry.package)
    assert {"humanize", "lithops"} <= {p.name for p in final.sizes}
    assert all(p.zipped_bytes is not None for p in final.sizes)
    python = python_or_skip("3.12")
    meta = _run_handler(python, _unpack(entry.package, tmp_path / "u"), fc_builtins("3.12"))
    assert meta["python"] == "3.12" and meta["refused"] and meta["preinstalls"] > 0
    assert meta["humanize"].startswith(str(tmp_path / "u"))
    # Every module the handler and the preload import from the package comes
    # with its bytecode: a cold instance compiles nothing.
    assert len(meta["from_code"]) > 50
    assert not [m for m in meta["from_code"] if m not in pycs], \
        [m for m in meta["from_code"] if m not in pycs][:5]


def test_fc_package_for_python_3_10(session_cache, tmp_path, fc_builtins):
    python = python_or_skip("3.10")
    reqs = resolve_requirements(CELL, backend="aliyun_fc", python="3.10")
    entry = ensure_runtime("rt_fc310", reqs, target="fc", cache_dir=session_cache)
    assert entry.python == "3.10"
    meta = _run_handler(python, _unpack(entry.package, tmp_path / "u"), fc_builtins("3.10"))
    assert meta["python"] == "3.10" and meta["refused"]


def test_truncated_package_is_rebuilt_with_a_warning(fc_build, tmp_path, caplog):
    entry, _ = fc_build
    cache_dir = str(tmp_path / "c")
    shutil.copytree(os.path.dirname(os.path.dirname(entry.path)), cache_dir, symlinks=True)
    damaged = os.path.join(cache_dir, "runtimes", os.path.basename(entry.path), "package.zip")
    size = os.path.getsize(damaged)
    with open(damaged, "r+b") as fh:
        fh.truncate(size // 2)
    seen = []
    reqs = resolve_requirements(CELL, backend="aliyun_fc")
    again = ensure_runtime("rt_fc", reqs, target="fc", cache_dir=cache_dir,
                           on_snapshot=seen.append)
    assert not seen[-1].cache_hit
    assert any("damaged" in n and "rebuilding" in n for n in seen[-1].notes)
    assert "damaged" in caplog.text
    assert os.path.getsize(again.package) == again.manifest["check_files"]["package.zip"]
    with zipfile.ZipFile(again.package) as zf:
        assert zf.testzip() is None


def test_fc_build_with_pip_gives_a_working_package(tmp_path, fc_builtins):
    """The path without uv: pip --target --platform --only-binary."""
    python = python_or_skip("3.12")
    reqs = resolve_requirements(CELL, backend="aliyun_fc")
    entry = ensure_runtime("rt_pip", reqs, target="fc", cache_dir=str(tmp_path / "c"),
                           installer="pip")
    assert entry.manifest["installer"] == "pip"
    meta = _run_handler(python, _unpack(entry.package, tmp_path / "u"), fc_builtins("3.12"))
    assert meta["python"] == "3.12" and meta["refused"]
    assert meta["humanize"].startswith(str(tmp_path / "u"))


def test_build_failure_names_the_missing_package_and_leaves_nothing(tmp_path):
    reqs = resolve_requirements("fc-magic-no-such-package-xyz==1.0\n", backend="aliyun_fc")
    with pytest.raises(BuildFailed, match="fc-magic-no-such-package-xyz"):
        ensure_runtime("nope", reqs, target="fc", cache_dir=str(tmp_path / "c"))
    assert os.listdir(tmp_path / "c" / "runtimes") == []


# ------------------------------------------------------------------ views and CLI
def test_widget_view_renders_build_and_hit(local_build):
    from fc_magic.views.build import WidgetBuildView

    entry, seen = local_build
    view = WidgetBuildView(display_now=False)
    for snapshot in seen[:-1]:
        view.draw(snapshot)
    assert "building" in view.head.value
    view.finish(seen[-1])
    assert "built local runtime" in view.head.value and "humanize" in view.table.value
    assert "humanize" in view._repr_mimebundle_()["text/plain"]
    from dataclasses import replace
    hit = WidgetBuildView(display_now=False)
    hit.finish(replace(seen[-1], cache_hit=True))
    assert "cache hit" in hit.head.value and hit.table.value == ""


def test_cli_build_list_and_gc(tmp_path, session_cache, local_build, capsys):
    from fc_magic.cli import main

    cache_dir = str(tmp_path / "c")
    shutil.copytree(session_cache, cache_dir, symlinks=True)
    req = tmp_path / "requirements.txt"
    req.write_text(CELL)
    assert main(["build", str(req), "--name", "cli_rt", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    assert "cli_rt: cache hit" in out  # same content as rt_local: the same entry
    assert out.strip().splitlines()[-1] == local_build[0].interpreter.replace(
        session_cache, cache_dir)
    assert main(["runtimes", "list", "--cache-dir", cache_dir]) == 0
    assert "cli_rt" in capsys.readouterr().out
    assert main(["runtimes", "remove", "nobody", "--cache-dir", cache_dir]) == 2
    assert "no runtime named 'nobody'" in capsys.readouterr().err
    missing = tmp_path / "nope.txt"
    assert main(["build", str(missing), "--name", "x", "--cache-dir", cache_dir]) == 2
    capsys.readouterr()
    # rt_local and cli_rt share one build: removing one name keeps it ...
    shared = local_build[0].path.replace(session_cache, cache_dir)
    assert main(["runtimes", "remove", "rt_local", "--cache-dir", cache_dir]) == 0
    assert capsys.readouterr().out.strip() == "removed runtime rt_local"
    assert os.path.isdir(shared)
    # ... and once no name uses it, `runtimes gc` deletes it (and every other unused build).
    _orphan(cache_dir, "cli_rt")
    # `fc-magic build` ran in this process: as when that command exits, its lease ends.
    from fc_magic.runtime import cache

    cache.drop_lease(cache.runtimes_root(cache_dir), os.path.basename(shared))
    assert shared in _unused_dirs(cache_dir)

    def cli_gc() -> str:
        assert main(["runtimes", "gc", "--cache-dir", cache_dir]) == 0
        return capsys.readouterr().out.strip()

    _gc_really_deletes(cache_dir, cli_gc)
    assert not os.path.exists(shared)


# ------------------------------------------------------------------ more user paths
def test_capture_adds_the_notebooks_imports_pinned(ip, fc, cell, session_cache):
    """--capture: a package the notebook imported is built in, at the kernel's version."""
    from importlib.metadata import version

    fc.cache_dir = session_cache
    ip.run_cell("import tabulate", store_history=True)   # as a notebook cell runs
    with capture_output() as cap:
        cell("%%fc_runtime rt_cap --capture\n# what the notebook imports\n")
    pin = f"tabulate=={version('tabulate')}"
    assert pin in fc.current_runtime.requirements
    assert "captured" in cap.stdout and "rt_cap: built local runtime" in cap.stdout
    cell("def table(x):\n    import tabulate\n    return tabulate.__version__\n")
    assert cell("%fc_map table [1] --quiet").values == [version("tabulate")]


def test_rebuild_builds_again_and_replaces_the_entry(ip, fc, cell, tmp_path, session_cache,
                                                     local_build):
    entry, _ = local_build
    fc.cache_dir = str(tmp_path / "own")
    shutil.copytree(session_cache, fc.cache_dir, symlinks=True)
    with capture_output() as cap:
        cell(f"%%fc_runtime rt_local --rebuild\n{CELL}")
    assert "rt_local: built local runtime" in cap.stdout
    rebuilt = fc.current_runtime
    assert rebuilt.key == entry.key and rebuilt.created >= entry.created
    assert rebuilt.manifest["built_by"]["pid"] == os.getpid()
    out = subprocess.run([rebuilt.interpreter, "-c", "import humanize"], cwd=os.sep)
    assert out.returncode == 0
    leftovers = [n for n in os.listdir(os.path.join(fc.cache_dir, "runtimes"))
                 if n.startswith(".") and n != ".leases"]   # the kernel's lease stays
    assert leftovers == []


def test_interrupted_build_leaves_nothing(tmp_path):
    """Ctrl-C while the installer runs: the installer is stopped, the temp folder removed."""
    def interrupt(snapshot):
        if snapshot.log_tail:
            raise KeyboardInterrupt

    reqs = resolve_requirements("six\n", backend="localhost")
    with pytest.raises(KeyboardInterrupt):
        ensure_runtime("stop", reqs, target="local", cache_dir=str(tmp_path),
                       on_snapshot=interrupt)
    assert os.listdir(tmp_path / "runtimes") == []


def test_local_build_with_pip(tmp_path):
    """The path without uv: python -m venv + pip, same isolation."""
    reqs = resolve_requirements(CELL, backend="localhost")
    entry = ensure_runtime("rt_pip_local", reqs, target="local",
                           cache_dir=str(tmp_path / "c"), installer="pip")
    assert entry.manifest["installer"] == "pip"
    code = f"import humanize\ntry:\n    import {UNDECLARED}\nexcept ImportError:\n    print('refused')"
    out = subprocess.run([entry.interpreter, "-c", code], capture_output=True, text=True,
                         cwd=os.sep)
    assert out.stdout.strip() == "refused", out.stderr


@pytest.mark.parametrize("source, expected", [
    ("%%fc_runtime\nhumanize\n", "%%fc_runtime: a runtime NAME is required"),
    ("%%fc_runtime 9bad\nhumanize\n", "%%fc_runtime: runtime name '9bad' is not valid"),
    ("%%fc_runtime ok --memory 100\nhumanize\n", "%%fc_runtime: memory 100 MB is outside"),
    ("%fc_runtime nothing_cached", "%fc_runtime: no cached local runtime named 'nothing_cached'"),
    ("%%fc_runtime ok --list\nhumanize\n", "%%fc_runtime: --list, --remove and --gc are line"),
])
def test_mistakes_are_one_line_usage_errors(ip, cell, source, expected):
    with pytest.raises(UsageError) as err:
        cell(source)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_help_documents_every_option(ip):
    doc = ip.magics_manager.registry["FCMagic"].fc_runtime.__doc__
    for option in ("--capture", "--no-pin", "--memory", "--rebuild", "--list", "--remove",
                   "--gc", "Examples"):
        assert option in doc


def test_gc_drops_only_entries_no_name_uses(tmp_path, session_cache, local_build, fc_build):
    from fc_magic.runtime import cache, gc_runtimes

    cache_dir = str(tmp_path / "c")
    shutil.copytree(session_cache, cache_dir, symlinks=True)
    root = cache.runtimes_root(cache_dir)
    fc_entry, _ = fc_build
    cache.remove_name(root, "rt_fc")      # as if its name now pointed elsewhere
    before = {r.name for r in list_runtimes(cache_dir)}
    assert None in before                 # the orphan shows as "(unused)"
    done = gc_runtimes(cache_dir)
    assert done.removed == [os.path.basename(fc_entry.path)] and not done.kept
    assert done.freed >= os.path.getsize(fc_entry.package)
    assert not os.path.exists(os.path.join(root, os.path.basename(fc_entry.path)))
    assert os.path.exists(local_build[0].interpreter.replace(session_cache, cache_dir))


def test_executed_notebook_shows_widget_build_view_and_uses_the_runtime(tmp_path):
    """In a real kernel: the requirements table, the widget build view with its text
    fallback, then a map in that runtime; a second %%fc_runtime cell is a hit."""
    import nbformat

    from fc_magic.notebooks import cell_texts, execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (
        f"%load_ext fc_magic\n%config FCMagic.cache_dir = {str(tmp_path / 'cache')!r}",
        f"%%fc_runtime rt_nb\n{CELL}",
        f"%%fc_runtime rt_nb\n{CELL}",
        "def words(x):\n    import humanize\n    return humanize.intword(x)\n"
        "%fc_map words [1_200_000] --quiet",
    )]
    path = tmp_path / "rt.ipynb"
    nbformat.write(nb, path)
    executed = execute(path, tmp_path / "rt.executed.ipynb", timeout=300)
    texts = [text for _n, _first, text in cell_texts(executed)]
    assert "humanize" in texts[1] and "declared" in texts[1]
    assert "rt_nb: built local runtime rt_nb-" in texts[1]
    assert "rt_nb: cache hit" in texts[2]
    assert "1.2 million" in texts[3]
    mimes = {k for o in executed.cells[1].outputs for k in o.get("data", {})}
    assert {"application/vnd.jupyter.widget-view+json", "text/html"} <= mimes
