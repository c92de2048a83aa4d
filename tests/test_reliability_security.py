"""Attacks on runtimes, the cache, the installer and %fc_map's inputs (issue #11).

Each test is one attack a user (or another local process) can mount, tried the
way it meets fc_magic: through the magics, the builder, or a second process.
Each fails on the code before its fix; `tally.attacks_tried` counts them.
"""
from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import psutil
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import fc_magic.runtime as runtime_pkg
from fc_magic import engine
from fc_magic.requirements import RequirementProblem, check_runtime_name, resolve_requirements
from fc_magic.results import MapResult
from fc_magic.runtime import cache, ensure_runtime, gc_runtimes, installer

pytestmark = pytest.mark.slow

#: Only Lithops' own worker packages: the cheapest real local build.
REQS = resolve_requirements("", backend="localhost")
SECRET = "S3cr3t-f0r-t3sts-0nly-7d1c"
MISSING = "fc-magic-no-such-package-xyz==1.0"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real local runtime named sec_rt, built once; tests use copies of its cache."""
    cache_dir = str(tmp_path_factory.mktemp("sec-cache"))
    entry = ensure_runtime("sec_rt", REQS, target="local", cache_dir=cache_dir)
    return cache_dir, entry


@pytest.fixture
def own_cache(built, tmp_path):
    """A private copy of the built cache (leases are per cache, so none come along)."""
    src, entry = built
    dest = str(tmp_path / "cache")
    shutil.copytree(src, dest, symlinks=True)
    root = cache.runtimes_root(dest)
    return dest, os.path.join(root, os.path.basename(entry.path))


def _works(interpreter: str) -> bool:
    out = subprocess.run([interpreter, "-c", "import cloudpickle, tblib; print('ok')"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "ok"


def _one_line(info) -> str:
    assert type(info.value) is UsageError, type(info.value)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------ 3, 4: the installer
class _IndexServer:
    """A private package index on loopback that asks for a password and records what came."""

    def __init__(self, hang: bool = False):
        self.auth: list[str] = []
        self.hang = hang
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if outer.hang:       # a build that never finishes resolving
                    outer.release.wait(60)
                    return
                header = self.headers.get("Authorization")
                if not header:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.auth.append(header)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def index_server():
    server = _IndexServer()
    yield server
    server.close()


@pytest.fixture
def recorded_installers(monkeypatch):
    """Every command the builder starts: (argv, env)."""
    seen: list[tuple[list[str], dict]] = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, args, *a, **kw):
            seen.append((list(args), dict(kw.get("env") or os.environ)))
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(installer.subprocess, "Popen", Recording)
    return seen


def test_private_index_password_is_not_on_the_command_line_nor_shown(
        ip, fc, index_server, recorded_installers, monkeypatch, caplog, tally):
    tally.attacks_tried += 1
    real = installer.pip_sources()
    private = f"http://alice:{SECRET}@127.0.0.1:{index_server.port}/simple"
    sources = installer.Sources(real.index_url, real.extra_index_urls + (private,),
                                real.find_links, real.constraints, real.cert)
    monkeypatch.setattr(installer, "pip_sources", lambda: sources)
    monkeypatch.setenv("FC_MAGIC_INSTALLER", "uv")
    with caplog.at_level(logging.DEBUG), capture_output() as cap, \
            pytest.raises(UsageError) as info:
        ip.run_cell_magic("fc_runtime", "leak_rt", MISSING + "\n")
    message = _one_line(info)
    assert "fc-magic-no-such-package-xyz" in message
    # The password still reached the index (through uv's environment) ...
    assert base64.b64encode(f"alice:{SECRET}".encode()).decode() in " ".join(index_server.auth)
    # ... but no command line (readable by every local user in ps) carried it,
    assert recorded_installers and not any(SECRET in " ".join(argv)
                                           for argv, _ in recorded_installers)
    # and nothing the user sees or the logs keep does.
    for text in (message, cap.stdout, cap.stderr, caplog.text):
        assert SECRET not in text


def test_secret_placeholder_in_a_requirement_line_is_refused(ip, fc, monkeypatch, tally):
    tally.attacks_tried += 1

    def must_not_build(*args, **kwargs):
        raise AssertionError("a line with ${...} reached the installer")

    monkeypatch.setattr(runtime_pkg, "ensure_runtime", must_not_build)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    line = ("x @ https://127.0.0.1:9/${ALIBABA_CLOUD_ACCESS_KEY_SECRET}/x-1.0-py3-none-any.whl"
            "#sha256=" + "0" * 64)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("fc_runtime", "exfil_rt", f"six\n{line}\n")
    message = _one_line(info)
    assert "line 2" in message and "${" in message and SECRET not in message
    assert fc.current_runtime is None


def test_installer_sees_no_cloud_credentials(ip, fc, recorded_installers, monkeypatch, tally):
    tally.attacks_tried += 1
    planted = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI" + SECRET,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
               "ALIBABA_CLOUD_SECURITY_TOKEN": SECRET, "LITHOPS_CONFIG": SECRET,
               "LITHOPS_CONFIG_FILE": "/tmp/" + SECRET}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    installer.pip_sources.cache_clear()    # reading pip's config runs pip too: checked as well
    for choice in ("uv", "pip"):
        monkeypatch.setenv("FC_MAGIC_INSTALLER", choice)
        with capture_output(), pytest.raises(UsageError):
            ip.run_cell_magic("fc_runtime", f"env_{choice}", MISSING + "\n")
    assert len(recorded_installers) >= 4   # venv + install, for each installer
    for argv, env in recorded_installers:
        assert not set(planted) & set(env), argv[:3]
        assert SECRET not in json.dumps(env)
        assert env.get("PATH") == os.environ["PATH"]   # what it needs still comes through


# ------------------------------------------------------------------ 7: runtimes in use
_KERNEL = textwrap.dedent("""
    import sys
    from fc_magic.requirements import resolve_requirements
    from fc_magic.runtime import ensure_runtime
    entry = ensure_runtime("sec_rt", resolve_requirements("", backend="localhost"),
                           target="local", cache_dir=sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()      # a kernel that keeps using the runtime until told to stop
""")


def test_runtime_another_kernel_uses_survives_remove_and_gc(ip, fc, own_cache, tally):
    tally.attacks_tried += 1
    fc.cache_dir, path = own_cache
    other = subprocess.Popen([sys.executable, "-c", _KERNEL, fc.cache_dir], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout.readline().strip() == "ready"
        with capture_output() as cap:
            ip.run_line_magic("fc_runtime", "--remove sec_rt")
        assert "removed runtime sec_rt" in cap.stdout
        assert f"kept 1 build(s) in use by running kernel(s) (PID {other.pid})" in cap.stdout
        with capture_output() as cap:
            ip.run_line_magic("fc_runtime", "--gc")
        assert cap.stdout.startswith("removed 0 unused") and f"PID {other.pid}" in cap.stdout
        assert _works(os.path.join(path, "venv", "bin", "python"))
    finally:
        other.stdin.close()
        other.wait(60)
    with capture_output() as cap:      # that kernel ended: its build is garbage now
        ip.run_line_magic("fc_runtime", "--gc")
    assert cap.stdout.startswith("removed 1 unused") and not os.path.exists(path)


@pytest.mark.parametrize("how", ["cache hit", "build"])
def test_gc_between_publishing_and_naming_cannot_delete_the_build(own_cache, monkeypatch,
                                                                  tally, how):
    """A gc in another process lands right when a build is published but not yet named."""
    tally.attacks_tried += 1
    cache_dir, path = own_cache
    cache.remove_name(cache.runtimes_root(cache_dir), "sec_rt")  # no name uses it yet
    real_set_name = cache.set_name
    gc_results = []

    def gc_lands_here(*args, **kwargs):
        worker = threading.Thread(target=lambda: gc_results.append(gc_runtimes(cache_dir)))
        worker.start()
        worker.join(5)     # a gc that waits for the build's lock is fine; one that deletes is not
        real_set_name(*args, **kwargs)

    monkeypatch.setattr(cache, "set_name", gc_lands_here)
    entry = ensure_runtime("race_rt", REQS, target="local", cache_dir=cache_dir,
                           rebuild=how == "build")
    deadline = time.monotonic() + 30
    while not gc_results and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc_results and entry.path == path
    assert _works(entry.interpreter), "the build reported success, then vanished"


def test_map_whose_runtime_vanished_is_one_line(ip, fc, own_cache, monkeypatch, tally):
    tally.attacks_tried += 1
    fc.cache_dir, path = own_cache
    with capture_output():
        ip.run_line_magic("fc_runtime", "sec_rt")          # switch to the cached runtime
    assert fc.current_runtime.path == path
    shutil.rmtree(path)                                     # another user's rm -rf

    def must_not_run(*args, **kwargs):
        raise AssertionError("a map with a vanished runtime was started")

    monkeypatch.setattr(engine, "run_map", must_not_run)
    ip.run_cell("def inc(x):\n    return x + 1")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "inc [1, 2]")
    message = _one_line(info)
    assert "no longer in the cache" in message and "%%fc_runtime sec_rt" in message


# ------------------------------------------------------------------ 10: a tampered cache
def test_tampered_index_cannot_delete_outside_the_cache(ip, fc, own_cache, tmp_path, caplog,
                                                         tally):
    tally.attacks_tried += 1
    fc.cache_dir, path = own_cache
    victim = tmp_path / "my-data"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    index = os.path.join(cache.runtimes_root(fc.cache_dir), cache.INDEX)
    names = json.load(open(index))["names"]
    names.update({"evil": {str(tmp_path / "my"): "data"},   # join() keeps an absolute path
                  "evil2": {"local": "../../../my-data"},
                  "nl\n": {"local": "0" * 64}})
    json.dump({"names": names}, open(index, "w"))
    with caplog.at_level(logging.WARNING, logger="fc_magic"), capture_output():
        for name in ("evil", "evil2"):
            with pytest.raises(UsageError) as info:
                ip.run_line_magic("fc_runtime", f"--remove {name}")
            assert f"no runtime named {name!r}" in _one_line(info)
        ip.run_line_magic("fc_runtime", "--gc")
        ip.run_line_magic("fc_runtime", "--list")
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert "damaged entry 'evil'" in caplog.text and "damaged entry 'nl\\n'" in caplog.text
    assert os.path.isdir(path)                              # the real entry is untouched


@pytest.mark.parametrize("tamper", ["absolute interpreter", "climbing interpreter",
                                    "folder linked outside"])
def test_manifest_naming_a_path_outside_its_entry_is_damaged(own_cache, tmp_path, caplog,
                                                             tally, tamper):
    tally.attacks_tried += 1
    cache_dir, path = own_cache
    evil = tmp_path / "evil"
    (evil / "bin").mkdir(parents=True)
    (evil / "bin" / "python").write_text("#!/bin/sh\necho pwned > /dev/null\n")
    manifest_path = os.path.join(path, cache.MANIFEST)
    manifest = json.load(open(manifest_path))
    if tamper == "absolute interpreter":
        manifest["interpreter_rel"] = str(evil / "bin" / "python")
    elif tamper == "climbing interpreter":
        manifest["interpreter_rel"] = os.path.relpath(evil / "bin" / "python", path)
    else:
        shutil.rmtree(os.path.join(path, "venv", "bin"))
        os.symlink(evil / "bin", os.path.join(path, "venv", "bin"))
    json.dump(manifest, open(manifest_path, "w"))
    with caplog.at_level(logging.WARNING, logger="fc_magic"):
        entry = ensure_runtime("sec_rt", REQS, target="local", cache_dir=cache_dir)
    assert "damaged" in caplog.text and "outside the entry" in caplog.text
    assert os.path.commonpath([entry.path, entry.interpreter]) == entry.path
    assert os.path.realpath(os.path.dirname(entry.interpreter)).startswith(
        os.path.realpath(entry.path))
    assert _works(entry.interpreter)


# ------------------------------------------------------------------ 11: URL requirements
def _wheel(folder, value: int) -> str:
    """A one-module wheel `secwhl` whose module holds VALUE = value."""
    path = os.path.join(folder, "secwhl-1.0-py3-none-any.whl")
    files = {"secwhl.py": f"VALUE = {value}\n",
             "secwhl-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: secwhl\n"
                                              "Version: 1.0\n",
             "secwhl-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                           "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in files) + "secwhl-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in {**files, "secwhl-1.0.dist-info/RECORD": record}.items():
            zf.writestr(name, text)
    return path


def test_url_requirement_without_a_hash_is_refused(ip, fc, monkeypatch, tally):
    tally.attacks_tried += 1
    monkeypatch.setattr(runtime_pkg, "ensure_runtime",
                        lambda *a, **k: pytest.fail("an unpinned URL reached the builder"))
    for body in ("secwhl @ https://files.example.com/secwhl-1.0-py3-none-any.whl",
                 "secwhl @ git+https://example.com/secwhl.git@main"):
        with pytest.raises(UsageError) as info:
            ip.run_cell_magic("fc_runtime", "url_rt", body + "\n")
        message = _one_line(info)
        assert "line 1" in message and ("#sha256=" in message or "commit" in message)


def test_changed_local_wheel_is_a_new_build_not_a_stale_hit(ip, fc, tmp_path, tally):
    tally.attacks_tried += 1
    fc.cache_dir = str(tmp_path / "cache")
    wheel = _wheel(str(tmp_path), 1)
    body = f"secwhl @ file://{wheel}\n"

    def value() -> str:
        out = subprocess.run([fc.current_runtime.interpreter, "-c",
                              "import secwhl; print(secwhl.VALUE)"],
                             capture_output=True, text=True, cwd=os.sep)
        return out.stdout.strip()

    with capture_output():
        ip.run_cell_magic("fc_runtime", "whl_rt", body)
    first = fc.current_runtime.key
    assert value() == "1"
    _wheel(str(tmp_path), 2)            # the same URL, new code behind it
    with capture_output() as cap:
        ip.run_cell_magic("fc_runtime", "whl_rt", body)
    assert "cache hit" not in cap.stdout
    assert fc.current_runtime.key != first and value() == "2"


# ------------------------------------------------------------------ 9: ITERABLE
@pytest.fixture
def guarded(ip, cell, monkeypatch):
    calls = []

    def record(func, items, request, **kwargs):
        calls.append(items)
        return MapResult(values=list(items), inputs=list(items))

    monkeypatch.setattr(engine, "run_map", record)
    cell(textwrap.dedent("""
        import itertools, threading
        def inc(x):
            return x + 1
        def breaks_midway():
            yield 1
            yield 2
            raise ValueError("sensor offline")
        def type_error_inside():
            yield 1
            yield len(5)
        lock = threading.Lock()
        def uses_lock(x):
            with lock:
                return x
    """))
    return calls


ITERABLE_ATTACKS = [
    ("inc itertools.count()", "FCMagic.max_tasks"),
    ("inc (x for x in itertools.repeat(0))", "FCMagic.max_tasks"),
    ("inc breaks_midway()", "raised ValueError: sensor offline after 2 item(s)"),
    ("inc type_error_inside()", "raised TypeError: object of type 'int' has no len()"),
    ("inc [1, lock, 3]", "item 1 (lock) cannot be sent to the workers"),
    ("uses_lock [1, 2]", "FUNC 'uses_lock' cannot be sent to the workers"),
]


@pytest.mark.parametrize("line,expected", ITERABLE_ATTACKS)
def test_hostile_iterables_are_one_line(ip, fc, guarded, tally, line, expected):
    tally.attacks_tried += 1
    assert fc.max_tasks == 200_000
    rss = psutil.Process().memory_info().rss
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", line)
    message = _one_line(info)
    assert message.startswith("%fc_map: ") and expected in message, message
    assert guarded == []
    assert psutil.Process().memory_info().rss - rss < 300 * 2**20


def test_max_tasks_is_a_setting(ip, fc, guarded, cell, tally):
    tally.attacks_tried += 1
    cell("%config FCMagic.max_tasks = 10")
    ip.run_line_magic("fc_map", "inc range(10)")
    assert guarded == [list(range(10))]      # exactly the bound: all of it is mapped
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fc_map", "inc range(11)")
    assert "more than 10 items" in _one_line(info)


# ------------------------------------------------------------------ 14: a killed build
_BUILDER = textwrap.dedent("""
    import sys
    from fc_magic.requirements import resolve_requirements
    from fc_magic.runtime import ensure_runtime
    ensure_runtime("killed_rt", resolve_requirements("six\\n", backend="localhost"),
                   target="local", cache_dir=sys.argv[1], installer="uv")
""")


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def test_build_killed_with_sigkill_is_cleaned_by_the_next_build(tmp_path, tally):
    tally.attacks_tried += 1
    cache_dir = str(tmp_path / "cache")
    root = cache.runtimes_root(cache_dir)
    hanging = _IndexServer(hang=True)     # uv waits on it: the build is mid-install when killed
    env = dict(os.environ, PIP_EXTRA_INDEX_URL=f"http://127.0.0.1:{hanging.port}/simple")
    builder = subprocess.Popen([sys.executable, "-c", _BUILDER, cache_dir], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        groups, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            records = [os.path.join(root, n, cache.BUILDER) for n in os.listdir(root)
                       if n.startswith(".build-")] if os.path.isdir(root) else []
            groups = [g["pid"] for r in records if os.path.exists(r)
                      for g in json.load(open(r))["groups"]]
            if len(groups) == 2:              # uv venv done, uv pip install running
                break
            time.sleep(0.1)
        assert len(groups) == 2, "the build never reached its install step"
        time.sleep(0.5)
        assert _group_alive(groups[-1])
        builder.send_signal(signal.SIGKILL)
        builder.wait(30)
        leftovers = sorted(os.listdir(root))
        assert any(n.startswith(".build-") for n in leftovers)
        assert any(n.startswith(".lock-") for n in leftovers)
        assert _group_alive(groups[-1])       # its own session: SIGKILL did not reach it

        entry = ensure_runtime("next_rt", REQS, target="local", cache_dir=cache_dir)
        assert _works(entry.interpreter)
        assert not _group_alive(groups[-1])
        left = [n for n in os.listdir(root) if n.startswith((".build-", ".lock-"))
                or ".discard-" in n]
        assert left == []
    finally:
        if builder.poll() is None:
            builder.kill()
        hanging.close()


_SPAWNS_A_HELPER = textwrap.dedent("""
    import subprocess, sys, time
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print("helper", helper.pid, flush=True)   # like a build backend the installer starts
    time.sleep(300)
""")


def test_installer_process_group_dies_with_an_interrupted_build(tmp_path, tally):
    """Ctrl-C in the kernel mid-install: neither the installer nor what it started runs on."""
    tally.attacks_tried += 1
    helpers = []

    def on_line(line: str) -> None:
        if line.startswith("helper "):
            helpers.append(int(line.split()[1]))
            raise KeyboardInterrupt   # the user's Ctrl-C, arriving while output streams in

    log = installer.CommandLog(on_line=on_line)
    with pytest.raises(KeyboardInterrupt):
        installer.run([sys.executable, "-c", _SPAWNS_A_HELPER], cwd=str(tmp_path),
                      env=installer.installer_env("uv"), log=log, what="installing")
    assert helpers
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.pid_exists(helpers[0]) \
            and psutil.Process(helpers[0]).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert not psutil.pid_exists(helpers[0]) or \
        psutil.Process(helpers[0]).status() == psutil.STATUS_ZOMBIE


# ------------------------------------------------------------------ 16: names
@pytest.mark.parametrize("name", ["nl\n", "ok_rt\n", "_\n"])
def test_runtime_name_with_trailing_control_character_is_refused(ip, fc, monkeypatch, tally,
                                                                  name):
    tally.attacks_tried += 1
    with pytest.raises(RequirementProblem):
        check_runtime_name(name)
    monkeypatch.setattr(runtime_pkg, "ensure_runtime",
                        lambda *a, **k: pytest.fail("a bad name reached the builder"))
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("fc_runtime", repr(name), "six\n")
    assert "is not valid" in _one_line(info)
