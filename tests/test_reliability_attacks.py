"""Attacks on the client side of fc_magic, each tried as an attacker would.

Network: a plain-HTTP endpoint (whose answers Lithops unpickles) is refused
before any request, and the defaults speak HTTPS. Local users: Lithops' job
folder is private and a folder planted by someone else is refused. Runaway
tasks: nothing a task started survives its map. HTML: hostile strings from
users and packages are escaped in every view.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
import yaml
from IPython.core.error import UsageError

from fc_magic import backends
from fc_magic.backends import aliyun_fc
from fc_magic.engine import MapRequest
from fc_magic.errors import ServiceUnavailable

FAKE_CONFIG = {"lithops": {"backend": "aliyun_fc", "storage": "aliyun_oss"},
               "aliyun": {"account_id": "1234567890", "access_key_id": "LTAIexampleKeyId0000",
                          "access_key_secret": "exampleSecretThatMustNotLeak00",
                          "region": "cn-hangzhou"},
               "aliyun_fc": {"role_arn": "acs:ram::1234567890:role/fc"},
               "aliyun_oss": {"storage_bucket": "fc-magic-attack-test"}}


class RecordingProxy:
    """An HTTP proxy on loopback that would rewrite OSS answers: it records and refuses."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self):
                seen.append(self.requestline)
                body = b"<Error>rewritten in transit</Error>"
                self.send_response(502)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_CONNECT = _refuse

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(monkeypatch):
    p = RecordingProxy()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, p.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield p
    p.close()


@pytest.fixture
def fake_config(tmp_path) -> Path:
    path = tmp_path / "lithops.yaml"
    path.write_text(yaml.safe_dump(FAKE_CONFIG))
    return path


@pytest.mark.parametrize("where", ["trait", "lithops config"])
def test_a_plain_http_oss_endpoint_is_refused_before_any_request(ip, fc, cell, proxy, tmp_path,
                                                                 fake_config, tally, where):
    tally.attacks_tried += 1
    endpoint = "http://oss-cn-hangzhou.aliyuncs.com"
    if where == "trait":
        fc.oss_endpoint = endpoint
    else:
        data = dict(FAKE_CONFIG, aliyun_oss={**FAKE_CONFIG["aliyun_oss"], "endpoint": endpoint})
        fake_config.write_text(yaml.safe_dump(data))
    fc.config_file = str(fake_config)
    fc.backend = "aliyun_fc"
    cell("def f(x):\n    return x")
    with pytest.raises(UsageError) as err:
        cell("%fc_map f [1]")
    message = str(err.value)
    assert "\n" not in message and "is plain HTTP to another machine" in message
    assert message.endswith("use https://")
    assert proxy.seen == [], "nothing may be sent to a plain-HTTP endpoint"


def test_default_oss_endpoints_speak_https_so_a_proxy_cannot_rewrite_them(proxy, fake_config,
                                                                          tally):
    tally.attacks_tried += 1
    request = MapRequest(backend="aliyun_fc", config_file=str(fake_config))
    config, endpoints = aliyun_fc.aliyun_settings(request)
    assert endpoints.oss_public.startswith("https://")
    assert endpoints.oss_internal.startswith("https://")
    # Through Lithops and oss2 for real: whatever reaches the proxy is a TLS
    # tunnel request, never a plain request whose answer it could rewrite.
    # The proxy refuses the tunnel (no network here): one line naming OSS, no plain request.
    with pytest.raises(ServiceUnavailable, match=r"^OSS did not answer"):
        executor = backends.get("aliyun_fc").executor(request)
        storage = executor.internal_storage
        storage.storage.get_object(storage.bucket, "lithops.jobs/x/status.json")
    assert proxy.seen, "the request went through the proxy"
    assert all(line.startswith("CONNECT ") for line in proxy.seen), proxy.seen


def test_a_loopback_http_endpoint_is_still_allowed_for_the_sandbox(fake_config):
    request = MapRequest(backend="aliyun_fc", config_file=str(fake_config),
                         fc_endpoint="http://127.0.0.1:9", oss_endpoint="http://localhost:9")
    _config, endpoints = aliyun_fc.aliyun_settings(request)
    assert (endpoints.fc, endpoints.oss_public) == ("http://127.0.0.1:9", "http://localhost:9")
    # A bare host means HTTPS, except to this machine, where plain HTTP was always meant.
    secure = aliyun_fc.secure_endpoint
    assert secure("oss-cn-hangzhou.aliyuncs.com", "x") == "https://oss-cn-hangzhou.aliyuncs.com"
    assert secure("127.0.0.1:8080", "x") == "http://127.0.0.1:8080"


# ------------------------------------------------------------------ local users
OTHER_USER = "nobody"


def _as_other_user(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", OTHER_USER, "--", *cmd], capture_output=True,
                          text=True, timeout=30)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="a second local user is played with runuser, which needs root")

MAP_SCRIPT = textwrap.dedent("""
    import sys
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fc_magic")
    magic = ip.magics_manager.registry["FCMagic"]
    magic.view, magic.cache_dir = "text", sys.argv[1]
    ip.run_cell("import time\\ndef slow(x):\\n    time.sleep(float(x))\\n    return x")
    try:
        r = ip.run_line_magic("fc_map", "slow [3, 3] --quiet")
        print("RESULT", r.values)
    except Exception as exc:
        print("ERROR", type(exc).__name__, exc)
""")


def _shared_tmp(tmp_path: Path) -> Path:
    """A temp folder like /tmp: world-writable with the sticky bit."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    for parent in [tmp_path, *tmp_path.parents]:  # let the other user reach it
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    return shared


def _map_process(tmp_path: Path, shared: Path) -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(shared), USER="fcmagicvictim")
    return subprocess.Popen([sys.executable, "-c", MAP_SCRIPT, str(tmp_path / "cache")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_root
@pytest.mark.timeout(180)
def test_another_user_cannot_read_a_running_maps_data(tmp_path, tally):
    tally.attacks_tried += 1
    shared = _shared_tmp(tmp_path)
    job_dir = shared / "lithops-fcmagicvictim"
    proc = _map_process(tmp_path, shared)
    try:
        deadline = time.monotonic() + 60
        pickles: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None and not pickles:
            pickles = [p for p in job_dir.rglob("*") if p.is_file()] if job_dir.exists() else []
            time.sleep(0.2)
        assert pickles, "the map wrote its data while it ran"
        assert (job_dir.stat().st_mode & 0o777) == 0o700
        listing = _as_other_user("ls", str(job_dir))
        assert listing.returncode != 0 and "Permission denied" in listing.stderr
        reading = _as_other_user("cat", str(pickles[0]))
        assert reading.returncode != 0 and "Permission denied" in reading.stderr
    finally:
        out, err = proc.communicate(timeout=120)
    assert "RESULT [3, 3]" in out, err


@needs_root
@pytest.mark.timeout(180)
def test_a_folder_planted_by_another_user_is_refused_and_its_code_never_runs(tmp_path, tally):
    tally.attacks_tried += 1
    shared = _shared_tmp(tmp_path)
    planted = shared / "lithops-fcmagicvictim"
    marker = shared / "pwned"
    _as_other_user("mkdir", "-m", "0777", str(planted)).check_returncode()
    runner = f"open({str(marker)!r}, 'w').write('ran')\n"
    for name in ("localhost-runner-v1.py", "localhost-runner-v2.py"):
        _as_other_user("sh", "-c", f"printf %s {json.dumps(runner)} > {planted / name}")
    proc = _map_process(tmp_path, shared)
    out, err = proc.communicate(timeout=120)
    assert "ERROR UsageError %fc_map: Lithops' job folder" in out, (out, err)
    assert "belongs to another user" in out and f"rm -rf {planted}" in out
    assert not marker.exists(), "the planted runner ran"


# ------------------------------------------------------------------ runaway tasks
def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(120)
def test_a_task_that_ignores_sigterm_does_not_outlive_its_timeout(ip, cell, tmp_path, tally):
    tally.attacks_tried += 1
    pid_file = tmp_path / "pid"
    cell(textwrap.dedent(f"""
        import os, signal, time
        def stubborn(x):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(300)
    """))
    result = ip.run_line_magic("fc_map", "stubborn [1] --quiet --timeout 2")
    failure = result.values[0]
    assert failure.exc_type == "TimeoutError" and "maximum time of 2 seconds" in failure.message
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the task kept running after the map"


@pytest.mark.timeout(120)
def test_a_background_process_a_task_started_ends_with_the_map(ip, cell, tmp_path, tally):
    tally.attacks_tried += 1
    pid_file = tmp_path / "pid"
    cell(textwrap.dedent(f"""
        import subprocess
        def spawner(x):
            child = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            open({str(pid_file)!r}, "w").write(str(child.pid))
            return x
    """))
    started = time.monotonic()
    result = ip.run_line_magic("fc_map", "spawner [7] --quiet --timeout 60")
    assert result.values == [7]
    assert time.monotonic() - started < 30, "the background process did not hold the map"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the background process outlived the map"
