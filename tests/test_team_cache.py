"""The team cache: runtimes shared through the bucket, on the sandbox with the real SDKs.

Kernel A builds and publishes a runtime; kernel B (a fresh FCMagic with an
empty cache) writes the same cell and gets it from the bucket without
building or downloading it, then maps with it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from IPython.utils.capture import capture_output

from fc_magic.backends.aliyun_store import PREFIX
from fc_magic.sandbox import DEFAULT_BUCKET, Sandbox

CELL = "%%fc_runtime team\nhumanize\n"
FUNC = ("def fmt(x):\n"
        "    import humanize\n"
        "    return humanize.intcomma(x * 1000)\n")


@pytest.fixture(scope="module")
def sandbox(lithops_cache):
    with Sandbox(concurrency=2, function_pending_s=0.3) as sb:
        yield sb


@pytest.fixture(scope="module")
def config_file(sandbox, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lithops-config") / "config.yaml"
    path.write_text(sandbox.config_yaml())
    return str(path)


@pytest.fixture(scope="module")
def machine_a(tmp_path_factory) -> str:
    """Kernel A's cache (empty until its %%fc_runtime builds)."""
    return str(tmp_path_factory.mktemp("machine-a"))


def _objects(sandbox) -> list[str]:
    with sandbox.store._lock:
        return sorted(k for k in sandbox.store._buckets.get(DEFAULT_BUCKET, {})
                      if k.startswith(PREFIX))


def test_a_second_machine_gets_a_team_hit_builds_nothing_and_maps(
        fc, cell, config_file, machine_a, sandbox, tmp_path, monkeypatch):
    import socket

    from fc_magic.runtime import fcpackage, installer

    fc.backend, fc.config_file = "aliyun_fc", config_file
    fc.cache_dir = machine_a
    with capture_output() as cap:
        cell(CELL)  # kernel A: a miss here and in the bucket: built, then published
    key = fc.current_runtime.key
    assert "published to the team cache: oss://" in cap.stdout
    assert _objects(sandbox) == [f"{PREFIX}{key}.json", f"{PREFIX}{key}.zip"]
    size = os.path.getsize(fc.current_runtime.package)

    # Kernel B: an empty cache on "another machine". No installer may run.
    ran = []
    monkeypatch.setattr(installer, "run", lambda *a, **k: ran.append(a) or 1 / 0)
    monkeypatch.setattr(fcpackage, "build", lambda *a, **k: ran.append(a) or 1 / 0)
    fc.cache_dir = str(tmp_path / "machine-b")
    fc.current_runtime = None
    put_before = sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{PREFIX}")
    started = time.monotonic()
    with capture_output() as cap:
        cell(CELL)
    hit_s = time.monotonic() - started
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert (f"from the team cache (built by {socket.gethostname()} on {today})"
            in cap.stdout), cap.stdout
    assert "nothing built or downloaded" in cap.stdout
    assert not ran, "no installer subprocess on a team hit"
    assert sandbox.traffic.reads.get(f"{DEFAULT_BUCKET}/{PREFIX}{key}.zip", 0) == 0
    entry = fc.current_runtime
    assert entry.key == key and entry.package is None
    cell(FUNC)
    result = cell("%fc_map fmt range(4) --memory 512")
    assert result.values == ["0", "1,000", "2,000", "3,000"]
    assert sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{PREFIX}") == put_before, \
        "B uploaded no package"
    assert sandbox.traffic.reads.get(f"{DEFAULT_BUCKET}/{PREFIX}{key}.zip", 0) == 0
    assert hit_s < 10, f"a team hit took {hit_s:.1f} s"

    with capture_output() as cap:
        cell("%fc_runtime --list")
    assert "team cache (oss://lithops-sandbox/fc_magic/runtimes/)" in cap.stdout
    assert key[:8] in cap.stdout and "humanize" in cap.stdout
    from fc_magic.runtime.sizes import human
    local, team = cap.stdout.split("team cache (")
    assert "team" in local and key[:8] in local, "the local runtime is listed"
    assert f"{key[:8]}  {human(size)}  built by {socket.gethostname()} on {today}" in team


def test_shared_cache_off_keeps_runtimes_local(fc, cell, config_file, machine_a, sandbox,
                                                tmp_path):
    fc.backend, fc.config_file = "aliyun_fc", config_file
    fc.shared_cache = False
    fc.cache_dir = machine_a
    reads = sum(sandbox.traffic.calls.values())
    with capture_output() as cap:
        cell(CELL)
    assert "team cache" not in cap.stdout
    assert sum(sandbox.traffic.calls.values()) == reads, "no OSS call at all"


PUBLISH = r"""
import json, os, sys, time
import oss2
from fc_magic.backends.aliyun_store import RuntimeStore
endpoint, key_id, secret, key, package, start = sys.argv[1:7]
store = RuntimeStore(oss2.Bucket(oss2.Auth(key_id, secret), endpoint, "lithops-sandbox"),
                     "lithops-sandbox")
time.sleep(max(0.0, float(start) - time.time()))
shared, uploaded = store.publish(key, package, {"name": "race"})
print(json.dumps({"sha256": shared.sha256, "uploaded": uploaded}))
"""


def test_two_processes_publishing_one_key_leave_one_object_and_both_succeed(
        sandbox, tmp_path):
    key = "ab" * 32
    packages = []
    for who in ("one", "two"):  # two builds of one key: same content, different bytes
        path = tmp_path / f"{who}.zip"
        path.write_bytes(os.urandom(2 * 2**20))
        packages.append(str(path))
    sandbox.store.handle("PUT", DEFAULT_BUCKET, "", {}, {}, b"")
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", PUBLISH, sandbox.endpoint,
                               sandbox.access_key_id, sandbox.access_key_secret, key, p,
                               str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for p in packages]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0]["sha256"] == outs[1]["sha256"], "both use the one published package"
    assert sorted(o["uploaded"] for o in outs) in ([False, True], [True, True])
    assert [k for k in _objects(sandbox) if key in k] == [f"{PREFIX}{key}.json",
                                                          f"{PREFIX}{key}.zip"]
    stored = sandbox.store.get_bytes(DEFAULT_BUCKET, f"{PREFIX}{key}.zip")
    import hashlib
    assert hashlib.sha256(stored).hexdigest() == outs[0]["sha256"]
    manifest = json.loads(sandbox.store.get_bytes(DEFAULT_BUCKET, f"{PREFIX}{key}.json"))
    assert manifest["sha256"] == outs[0]["sha256"]
