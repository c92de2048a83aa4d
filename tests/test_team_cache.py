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

from fc_magic.backends.aliyun_deploy import STAGED_PREFIX
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
def machine_a(tmp_path_factory) -> str:
    """Kernel A's cache (empty until its %%fc_runtime builds)."""
    return str(tmp_path_factory.mktemp("machine-a"))


def _objects(sandbox) -> list[str]:
    with sandbox.store._lock:
        return sorted(k for k in sandbox.store._buckets.get(DEFAULT_BUCKET, {})
                      if k.startswith(PREFIX))


def test_a_second_machine_gets_a_team_hit_builds_nothing_and_maps(
        ip, fc, cell, config_file, sandbox, tmp_path, monkeypatch):
    import socket

    from fc_magic.runtime import fcpackage, installer

    fc.backend, fc.config_file = "aliyun_fc", config_file
    fc.cache_dir = str(tmp_path / "machine-a")
    for key in _objects(sandbox):   # whatever other tests of this module published
        sandbox.store.handle("DELETE", DEFAULT_BUCKET, key, {}, {}, b"")
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
    # A fresh FCMagic, as in a new kernel, with an empty cache.
    ip.run_line_magic("unload_ext", "fc_magic")
    ip.run_line_magic("load_ext", "fc_magic")
    fc = ip.magics_manager.registry["FCMagic"]
    fc.view, fc.progress_after = "text", 0.0
    fc.backend, fc.config_file = "aliyun_fc", config_file
    fc.cache_dir = str(tmp_path / "machine-b")
    assert fc.current_runtime is None
    put_before = sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{PREFIX}{key}.zip")
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
    with capture_output() as cap:
        cell("%fc_runtime")
    assert f"oss://{DEFAULT_BUCKET}/{PREFIX}{key}.zip (team cache)" in cap.stdout
    assert f"by {socket.gethostname()} on {today} (team cache)" in cap.stdout
    cell(FUNC)
    result = cell("%fc_map fmt range(4) --memory 512")
    assert result.values == ["0", "1,000", "2,000", "3,000"]
    assert sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{PREFIX}{key}.zip") == put_before, \
        "B uploaded no package"
    assert not sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{STAGED_PREFIX}"), "nor staged one"
    assert sandbox.traffic.reads.get(f"{DEFAULT_BUCKET}/{PREFIX}{key}.zip", 0) == 0
    assert hit_s < 10, f"a team hit took {hit_s:.1f} s"
    # Both machines' names are in the bucket, each under its own cache's id.
    from fc_magic.backends.aliyun_store import machine_id, names_key
    from fc_magic.runtime import cache
    for machine in ("machine-a", "machine-b"):
        mid = machine_id(cache.runtimes_root(str(tmp_path / machine)))
        names = json.loads(sandbox.store.get_bytes(DEFAULT_BUCKET, names_key(mid)))
        assert names["names"] == {"team": key}, machine

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


@pytest.fixture
def gc_bucket(sandbox, tmp_path):
    """A bucket of its own (other tests' packages not in play), its Lithops config,
    a RuntimeStore on it and a tiny package to publish under made-up keys."""
    import types
    import zipfile

    import oss2
    import yaml

    from fc_magic.backends.aliyun_store import RuntimeStore

    def make(name: str) -> types.SimpleNamespace:
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(sandbox.lithops_config(name)))
        bucket = oss2.Bucket(oss2.Auth(sandbox.access_key_id, sandbox.access_key_secret),
                             sandbox.endpoint, name)
        bucket.create_bucket()
        package = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(package, "w") as zf:
            zf.writestr("entry_point.py", "def main(event, context):\n    return {}\n")
        return types.SimpleNamespace(name=name, config=config, bucket=bucket,
                                     store=RuntimeStore(bucket, name), package=package)
    return make


def test_gc_remote_deletes_only_runtimes_no_name_uses_and_not_used_for_an_hour(
        fc, cell, sandbox, tmp_path, monkeypatch, gc_bucket):
    import builtins

    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as open_models

    from fc_magic.backends import aliyun_gc
    from fc_magic.runtime import cache

    made = gc_bucket("gc-test")
    bucket_name, config, bucket, store, package = (made.name, made.config, made.bucket,
                                                   made.store, made.package)
    client = Client(open_models.Config(
        access_key_id=sandbox.access_key_id, access_key_secret=sandbox.access_key_secret,
        endpoint=sandbox.host, protocol="http", region_id=sandbox.region))
    gone, kept = "c" * 64, "d" * 64
    for key in (gone, kept):
        store.publish(key, str(package), {"user_requirements": ["x"]})
        client.create_function(fc_models.CreateFunctionRequest(body=fc_models.CreateFunctionInput(
            function_name=f"lithops-worker-gc{key[0]}-v3-8-0-0123456789", runtime="python3.12",
            handler="entry_point.main", memory_size=256, timeout=60,
            description=f"fc_magic runtime {key} sha256:{'0' * 16}",
            code=fc_models.InputCodeLocation(oss_bucket_name=bucket_name,
                                             oss_object_name=f"{PREFIX}{key}.zip"))))
    fc.backend, fc.config_file = "aliyun_fc", str(config)
    fc.cache_dir = str(tmp_path / "cache")
    cache.set_name(cache.runtimes_root(fc.cache_dir), "mine", "fc", kept)
    answers = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": answers.append(prompt) or "n")

    with capture_output() as cap:
        cell("%fc_runtime --gc --remote")
    assert "kept" in cap.stdout and gone[:8] in cap.stdout, "used in the last hour: kept"
    assert not answers, "nothing to delete: nothing asked"

    monkeypatch.setattr(aliyun_gc, "IDLE_S", 0.0)  # an hour later
    with capture_output() as cap:
        cell("%fc_runtime --gc --remote")
    assert "would delete" in cap.stdout and gone[:8] in cap.stdout
    assert kept[:8] not in cap.stdout.split("would delete")[1].split("\n")[0]
    assert answers and "remote: nothing deleted" in cap.stdout
    assert bucket.object_exists(f"{PREFIX}{gone}.zip")

    with capture_output() as cap:
        cell("%fc_runtime --gc --remote --yes")
    # (This module's other runtime, if a test before mapped with it and no name here
    # points to it, goes too: it is garbage by the same rule.)
    line = next(l for l in cap.stdout.splitlines() if l.startswith("remote: deleted "))
    assert gone[:8] in line and kept[:8] not in line
    assert not bucket.object_exists(f"{PREFIX}{gone}.zip")
    assert not bucket.object_exists(f"{PREFIX}{gone}.json")
    assert "lithops-worker-gcc-v3-8-0-0123456789" not in sandbox.functions._functions
    assert bucket.object_exists(f"{PREFIX}{kept}.zip"), "a named runtime stays"
    assert "lithops-worker-gcd-v3-8-0-0123456789" in sandbox.functions._functions


def test_published_manifests_hold_no_url_credentials_and_are_corrected(sandbox, tmp_path):
    import oss2

    from fc_magic.backends.aliyun_store import RuntimeStore

    sandbox.store.handle("PUT", DEFAULT_BUCKET, "", {}, {}, b"")
    store = RuntimeStore(oss2.Bucket(oss2.Auth(sandbox.access_key_id,
                                               sandbox.access_key_secret),
                                     sandbox.endpoint, DEFAULT_BUCKET), DEFAULT_BUCKET)
    key = "e" * 64
    package = tmp_path / "p.zip"
    package.write_bytes(b"first")
    line = "pkg @ https://alice:s3cr3t-token@pypi.example.com/pkg-1.0.whl#sha256=" + "0" * 64
    shared, uploaded = store.publish(key, str(package), {"requirements": [line]})
    assert uploaded
    text = sandbox.store.get_bytes(DEFAULT_BUCKET, f"{PREFIX}{key}.json").decode()
    assert "s3cr3t-token" not in text and "alice" not in text and "https://****@" in text
    # The package replaced by hand: the next publisher corrects the manifest.
    sandbox.store.handle("DELETE", DEFAULT_BUCKET, f"{PREFIX}{key}.zip", {}, {}, b"")
    package.write_bytes(b"second build")
    again, uploaded = store.publish(key, str(package), {"requirements": [line]})
    assert uploaded and again.size == len(b"second build") != shared.size
    assert store.lookup(key).sha256 == again.sha256


def test_gc_remote_keeps_what_any_machines_names_use(fc, cell, sandbox, tmp_path, monkeypatch,
                                                     gc_bucket):
    """Two machines (two caches), one bucket: each one's gc keeps the other's runtimes."""
    import oss2

    from fc_magic.backends import aliyun_gc
    from fc_magic.backends.aliyun_store import NAMES_PREFIX, machine_id, names_key
    from fc_magic.runtime import cache

    made = gc_bucket("gc-machines")
    config, bucket, store, package = made.config, made.bucket, made.store, made.package
    ka, kb, orphan = "a" * 64, "b" * 64, "e" * 64
    for key in (ka, kb, orphan):
        store.publish(key, str(package), {"user_requirements": ["x"]})
    fc.backend, fc.config_file = "aliyun_fc", str(config)
    dirs = {m: str(tmp_path / m) for m in ("machine-a", "machine-b")}
    cache.set_name(cache.runtimes_root(dirs["machine-a"]), "rt_a", "fc", ka)
    cache.set_name(cache.runtimes_root(dirs["machine-b"]), "rt_b", "fc", kb)

    def gc(machine, *flags):
        fc.cache_dir = dirs[machine]
        with capture_output() as cap:
            cell("%fc_runtime --gc --remote --yes " + " ".join(flags))
        return next(l for l in cap.stdout.splitlines() if l.startswith("remote: "))

    # (FC functions are per account: other tests' functions may show up in these lines.)
    line = gc("machine-b")   # everything was used within the hour: nothing goes
    assert "deleted" not in line and orphan[:8] in line.split("kept")[1], line
    mid_b = machine_id(cache.runtimes_root(dirs["machine-b"]))
    published = json.loads(bucket.get_object(names_key(mid_b)).read())
    assert published["names"] == {"rt_b": kb}

    monkeypatch.setattr(aliyun_gc, "IDLE_S", 0.0)  # an hour later
    line = gc("machine-a")
    assert line.startswith("remote: deleted ") and orphan[:8] in line, line
    assert ka[:8] not in line and kb[:8] not in line
    assert "the names of 2 machine(s)" in line
    assert bucket.object_exists(f"{PREFIX}{kb}.zip"), "machine B's name keeps its runtime"
    assert bucket.object_exists(f"{PREFIX}{ka}.zip")
    assert not bucket.object_exists(f"{PREFIX}{orphan}.zip")

    # B forgets its name: B's next gc publishes that, and the runtime no one names goes.
    fc.cache_dir = dirs["machine-b"]
    with capture_output():
        cell("%fc_runtime --remove rt_b")
    line = gc("machine-b")
    assert line.startswith("remote: deleted ") and kb[:8] in line and ka[:8] not in line, line
    assert not bucket.object_exists(f"{PREFIX}{kb}.zip")
    assert bucket.object_exists(f"{PREFIX}{ka}.zip"), "machine A's name keeps its runtime"
    names = sorted(o.key for o in oss2.ObjectIterator(bucket, prefix=NAMES_PREFIX))
    assert len(names) == 2


def test_the_cli_lists_the_team_cache_too(sandbox, tmp_path, gc_bucket):
    """`fc-magic runtimes list --config FILE`, run as a user runs it, on the sandbox."""
    import socket

    import yaml

    made = gc_bucket("cli-team")
    bucket_name, config, package = made.name, made.config, made.package
    key = "f" * 64
    made.store.publish(key, str(package), {"user_requirements": ["humanize==4.9.0"]})
    fc_magic = os.path.join(os.path.dirname(sys.executable), "fc-magic")

    def run(*args):
        return subprocess.run([fc_magic, "runtimes", "list", "--cache-dir",
                               str(tmp_path / "cache"), *args],
                              capture_output=True, text=True, timeout=120)

    done = run("--config", str(config))
    assert done.returncode == 0, done.stderr
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert "no runtimes cached yet" in done.stdout
    assert f"team cache (oss://{bucket_name}/{PREFIX})" in done.stdout
    row = next(line for line in done.stdout.splitlines() if key[:8] in line)
    assert f"built by {socket.gethostname()} on {today}" in row and "humanize==4.9.0" in row
    assert sandbox.access_key_secret not in done.stdout + done.stderr

    local_only = run()
    assert local_only.returncode == 0 and "team cache" not in local_only.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"aliyun_oss": {"storage_bucket": bucket_name}}))
    refused = run("--team", "--config", str(bad))
    assert refused.returncode == 2 and refused.stdout.count("team cache") == 0
    assert refused.stderr.startswith("fc-magic runtimes list: backend 'aliyun_fc' needs ")
    assert refused.stderr.count("\n") == 1
