"""Runtimes by content in OSS: one upload per content key, one function per (memory, vCPU).

One sandbox and one FC runtime build for the module; every test reaches the
sandbox over HTTP with the real SDKs, through the magics where a user would.
"""
from __future__ import annotations

import os
import re
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic.backends.aliyun_store import PREFIX
from fc_magic.sandbox import DEFAULT_BUCKET, Sandbox

CELL = "%%fc_runtime shared\nhumanize\n"
FUNC = ("def cores(x):\n"
        "    import humanize\n"
        "    return humanize.intcomma(x * 1000)\n")


@pytest.fixture(scope="module")
def sandbox(lithops_cache):
    with Sandbox(concurrency=4, function_pending_s=0.3) as sb:
        yield sb


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    """The module's runtime cache: the package is built once for every test."""
    from fc_magic.requirements import resolve_requirements
    from fc_magic.runtime import ensure_runtime

    path = str(tmp_path_factory.mktemp("cache"))
    ensure_runtime("shared", resolve_requirements("humanize\n", backend="aliyun_fc"),
                   target="fc", cache_dir=path)
    return path


@pytest.fixture
def aliyun(fc, cell, config_file, cache_dir):
    fc.backend = "aliyun_fc"
    fc.config_file = config_file
    fc.cache_dir = cache_dir
    with capture_output():
        cell(CELL)
    cell(FUNC)
    return fc


def _functions(sandbox, runtime):
    return {n: r for n, r in sandbox.functions._functions.items()
            if n.startswith(f"lithops-worker-{runtime}-")}


def test_three_memory_sizes_and_two_cpus_upload_the_package_once(aliyun, cell, sandbox):
    entry = aliyun.current_runtime
    package_bytes = os.path.getsize(entry.package)
    # From a clean slate, whatever other tests of this module deployed before this one:
    # no function of this runtime and no package in the bucket.
    for name in _functions(sandbox, entry.deploy_name):
        sandbox.functions.delete(name)
    for key in (f"{PREFIX}{entry.key}.zip", f"{PREFIX}{entry.key}.json"):
        sandbox.store.handle("DELETE", DEFAULT_BUCKET, key, {}, {}, b"")
    before_put = sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{PREFIX}")
    before_create = sandbox.traffic.by_api.get("CreateFunction", 0)
    sizes = [(m, c) for m in (512, 1024, 1536) for c in (0.4, 0.5)]
    for memory, cpu in sizes:
        result = cell(f"%fc_map cores range(2) --memory {memory} --cpu {cpu}")
        assert result.values == ["0", "1,000"]
    uploaded = (sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/{PREFIX}") - before_put
                + sandbox.traffic.by_api.get("CreateFunction", 0) - before_create)
    assert package_bytes <= uploaded <= 1.05 * package_bytes, "the package went up once"
    created = _functions(sandbox, entry.deploy_name)
    got = sorted((r.spec.memory_mb, r.cpu, r.disk_mb) for r in created.values())
    assert got == sorted((m, c, 512) for m, c in sizes), "one function per (memory, vCPU)"
    assert sandbox.store.get_bytes(DEFAULT_BUCKET, f"{PREFIX}{entry.key}.zip") is not None
    # A size used again is the same function: no CreateFunction, no upload.
    calls = sandbox.traffic.calls.get("CreateFunction", 0)
    cell("%fc_map cores range(2) --memory 1024 --cpu 0.5")
    assert sandbox.traffic.calls.get("CreateFunction", 0) == calls


def test_a_cpu_that_breaks_fc_rules_is_one_line_naming_the_range(aliyun, cell):
    with pytest.raises(UsageError) as err:
        cell("%fc_map cores range(2) --memory 256 --cpu 2")
    message = str(err.value)
    assert "\n" not in message
    assert "0.1..0.25 vCPU at 256 MB" in message and "--cpu" in message
    with pytest.raises(UsageError, match=r"not a multiple of 0\.05"):
        cell("%fc_map cores range(2) --memory 1024 --cpu 0.33")


def test_the_sandbox_checks_cpu_and_disk_and_refuses_a_taken_name(sandbox, cache_dir):
    """CreateFunction over HTTP with the FC SDK, as FC 3.0 answers it."""
    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as open_models
    from Tea.exceptions import TeaException

    client = Client(open_models.Config(
        access_key_id=sandbox.access_key_id, access_key_secret=sandbox.access_key_secret,
        endpoint=sandbox.host, protocol="http", region_id=sandbox.region))
    sandbox.store.handle("PUT", DEFAULT_BUCKET, "", {}, {}, b"")
    with open(next(os.path.join(r, f) for r, _d, fs in os.walk(cache_dir) for f in fs
                   if f == "package.zip"), "rb") as fh:
        sandbox.store.handle("PUT", DEFAULT_BUCKET, "code/p.zip", {}, {}, fh.read())

    def create(name, **kw):
        body = fc_models.CreateFunctionInput(
            function_name=name, runtime="python3.12", handler="entry_point.main",
            code=fc_models.InputCodeLocation(oss_bucket_name=DEFAULT_BUCKET,
                                             oss_object_name="code/p.zip"),
            timeout=60, **kw)
        return client.create_function(fc_models.CreateFunctionRequest(body=body)).body

    for kw, words in (({"memory_size": 256, "cpu": 2.0}, "between 1:1 and 1:4"),
                      ({"memory_size": 1024, "cpu": 0.33}, "multiple of 0.05"),
                      ({"memory_size": 1024, "cpu": 0.5, "disk_size": 2048},
                       "diskSize 2048 must be 512 or 10240")):
        with pytest.raises(TeaException) as err:
            create("sizes-bad", **kw)
        assert err.value.statusCode == 400 and err.value.code == "InvalidArgument"
        assert words in err.value.message
    made = create("sizes-ok", memory_size=2048, cpu=1.5, disk_size=10240)
    assert (made.memory_size, made.cpu, made.disk_size, made.state) == (2048, 1.5, 10240,
                                                                       "Pending")
    with pytest.raises(TeaException) as err:
        create("sizes-ok", memory_size=2048, cpu=1.5, disk_size=512)
    assert err.value.statusCode == 409 and err.value.code == "FunctionAlreadyExists"
    import time
    time.sleep(sandbox.function_pending_s + 0.1)
    got = client.get_function("sizes-ok", fc_models.GetFunctionRequest()).body
    assert got.state == "Active"
    client.delete_function("sizes-ok")


def test_the_memory_line_and_estimate_use_the_chosen_cpu(ip, fc, cell, caplog):
    from fc_magic import pricing

    fc.memory = 1024
    with capture_output() as cap:
        cell("%fc_memory")
    assert "1024 MB, 0.25 vCPU" in cap.stdout  # FC's least for 1 GB
    fc.cpu = 1.0
    with capture_output() as cap:
        cell("%fc_memory")
    assert "1024 MB, 1.00 vCPU" in cap.stdout
    assert pricing.estimate([10.0], 1024, 1.0).cu == pytest.approx(10 * (0.15 + 1.0) + 0.0075)
    with capture_output() as cap:
        cell("%fc_memory 4096")  # 1 vCPU still fits 4 GB (1:4)
    assert "4096 MB, 1.00 vCPU" in cap.stdout
    with capture_output() as cap:
        cell("%fc_memory 8192")  # it does not fit 8 GB: that size's least is shown
    assert "8192 MB, 2.00 vCPU" in cap.stdout
    from fc_magic.views.memory import MemorySlider

    slider = MemorySlider(fc.memory_setting, 2048, cpu=fc.cpu_setting)
    assert "2048 MB</b> · 1.00 vCPU (FCMagic.cpu)" in slider.info.value
    assert slider.plain_text() == "FC memory: 2048 MB, 1.00 vCPU"
    ip.run_cell("%config FCMagic.cpu = 0.07")
    # traitlets reports a refused config value as a logged error naming the rule
    assert "cpu 0.07 is not a multiple of 0.05 vCPU in 0.05..16" in caplog.text
    assert fc.cpu == 1.0


def test_two_kernels_deploying_one_function_at_once_make_one_and_wait_for_active(
        aliyun, sandbox, config_file, monkeypatch):
    """Both CreateFunction calls reach FC together: one 409, both maps' executors work."""
    import threading

    from alibabacloud_fc20230330.client import Client
    from lithops.serverless.backends.aliyun_fc.aliyun_fc import AliyunFunctionComputeBackend

    from fc_magic import backends, engine
    from fc_magic.runtime import map_fields

    entry = aliyun.current_runtime
    request = engine.MapRequest(backend="aliyun_fc", memory_mb=2048, cpu=0.75, timeout_s=60,
                                config_file=config_file, **map_fields(entry, "aliyun_fc"))
    together = threading.Barrier(2, timeout=60)
    real_create = Client.create_function
    answers = []

    def create(self, req):
        together.wait()
        try:
            answers.append(real_create(self, req).status_code)
        except Exception as exc:
            answers.append(getattr(exc, "statusCode", exc))
            raise
    monkeypatch.setattr(Client, "create_function", create)
    slow_loop = []
    real_loop = AliyunFunctionComputeBackend._generate_runtime_meta
    monkeypatch.setattr(AliyunFunctionComputeBackend, "_generate_runtime_meta",
                        lambda *a, **k: slow_loop.append(1) or real_loop(*a, **k))
    monkeypatch.setattr(sandbox.functions, "pending_s", 1.0)
    done, errors = [], []

    def deploy():
        try:
            executor = backends.get("aliyun_fc").executor(request)
            try:   # a team hit creates the function while the job uploads: map once
                futures = executor.map(lambda x: x * 2, [3], include_modules=None)
                assert executor.get_result(futures, show_progressbar=False) == [6]
                done.append(executor.compute_handler.backend._format_function_name(
                    entry.deploy_name, 2048))
            finally:
                executor.job_monitor.stop()
        except Exception as exc:  # reported below with its type
            errors.append(exc)
    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(answers, key=str) == [200, 409]
    assert len(done) == 2 and done[0] == done[1]
    created = [r for r in _functions(sandbox, entry.deploy_name).values()
               if (r.spec.memory_mb, r.cpu) == (2048, 0.75)]
    assert len(created) == 1
    assert not slow_loop, "deploy waited for Active instead of Lithops' 5 s retry loop"


def test_a_changed_fc_handler_is_a_new_runtime_key_and_a_new_deploy(
        aliyun, cell, sandbox, tmp_path, monkeypatch):
    """fc_magic's own handler is in the package, so its digest is in the content key."""
    from fc_magic.backends import lithops_facts
    from fc_magic.runtime import fcpackage

    old = aliyun.current_runtime
    assert cell("%fc_map cores range(2) --memory 512").values == ["0", "1,000"]
    changed = tmp_path / "fc_entry_point.py"
    with open(lithops_facts.FC_HANDLER_FILE, encoding="utf-8") as fh:
        changed.write_text(fh.read() + "\nCHANGED_HANDLER = True\n", encoding="utf-8")
    # What upgrading fc_magic to a release with another handler does.
    monkeypatch.setattr(lithops_facts, "FC_HANDLER_FILE", str(changed))
    monkeypatch.setattr(fcpackage, "FC_HANDLER_FILE", str(changed))
    lithops_facts.fc_handler_digest.cache_clear()
    try:
        with capture_output() as cap:
            cell(CELL)
        new = aliyun.current_runtime
        assert new.key != old.key and new.deploy_name != old.deploy_name, cap.stdout
        assert "cache hit" not in cap.stdout
        assert cell("%fc_map cores range(2) --memory 512").values == ["0", "1,000"]
        deployed = _functions(sandbox, new.deploy_name)
        assert len(deployed) == 1, "the map deployed the new package as its own function"
        (record,) = deployed.values()
        assert new.key in record.description
        with open(os.path.join(record.spec.code_dir, "entry_point.py"), encoding="utf-8") as fh:
            assert "CHANGED_HANDLER = True" in fh.read(), "FC runs the changed handler"
    finally:
        monkeypatch.undo()
        lithops_facts.fc_handler_digest.cache_clear()


def test_each_instance_preloads_the_declared_modules_once_for_every_task(
        aliyun, cell, sandbox):
    """FC's initializer imports the runtime's packages; Lithops' forked tasks inherit them."""
    entry = aliyun.current_runtime
    assert entry.manifest["preload"] == ["humanize"]
    cell("def preloaded(x):\n"
         "    import os, sys\n"
         "    return ('humanize' in sys.modules, os.getppid())\n")
    result = cell("%fc_map preloaded range(6) --memory 512")
    assert all(seen for seen, _parent in result.values), "the task found humanize loaded"
    parents = {parent for _seen, parent in result.values}
    assert len(parents) <= sandbox.concurrency, "tasks forked from a few warm instances"
    (record,) = [r for r in _functions(sandbox, entry.deploy_name).values()
                 if r.spec.memory_mb == 512 and r.cpu == 0.15]
    assert record.spec.initializer == "entry_point.initializer"


def test_the_sandbox_runs_an_initializer_once_per_instance_and_fails_calls_it_fails(
        sandbox, tmp_path):
    """instanceLifecycleConfig.initializer over HTTP with the FC SDK, as FC runs it."""
    import io
    import zipfile

    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as open_models
    from Tea.exceptions import TeaException

    client = Client(open_models.Config(
        access_key_id=sandbox.access_key_id, access_key_secret=sandbox.access_key_secret,
        endpoint=sandbox.host, protocol="http", region_id=sandbox.region))
    code = ("import os, sys\n"
            "INITS = []\n"
            "def init(context):\n"
            "    if os.path.exists('fail'):\n"
            "        raise RuntimeError('init refused')\n"
            "    INITS.append(context.request_id)\n"
            "def main(event, context):\n"
            "    return {'inits': len(INITS), 'pid': os.getpid()}\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", code)
    sandbox.store.handle("PUT", DEFAULT_BUCKET, "", {}, {}, b"")
    sandbox.store.handle("PUT", DEFAULT_BUCKET, "code/init.zip", {}, {}, buf.getvalue())

    def create(name, hook):
        client.create_function(fc_models.CreateFunctionRequest(body=fc_models.CreateFunctionInput(
            function_name=name, runtime="python3.12", handler="index.main", timeout=30,
            memory_size=256, code=fc_models.InputCodeLocation(
                oss_bucket_name=DEFAULT_BUCKET, oss_object_name="code/init.zip"),
            instance_lifecycle_config=fc_models.InstanceLifecycleConfig(initializer=hook))))

    def invoke(name):
        import json
        import time
        for _ in range(50):
            try:
                res = client.invoke_function(name, fc_models.InvokeFunctionRequest(
                    body=io.BytesIO(b"{}")))
                return json.loads(res.body.read())
            except TeaException as exc:
                if exc.statusCode != 412:   # Pending
                    raise
                time.sleep(0.1)
        raise AssertionError("never Active")

    with pytest.raises(TeaException) as err:
        create("init-bad", fc_models.LifecycleHook(handler="noperiod", timeout=10))
    assert err.value.statusCode == 400 and "module.function" in err.value.message
    create("init-ok", fc_models.LifecycleHook(handler="index.init", timeout=10))
    got = client.get_function("init-ok", fc_models.GetFunctionRequest()).body
    assert got.instance_lifecycle_config.initializer.handler == "index.init"
    first, second = invoke("init-ok"), invoke("init-ok")
    assert first == second and first["inits"] == 1, "once per instance, before the first call"
    create("init-fails", fc_models.LifecycleHook(handler="index.init", timeout=10))
    failing = sandbox.functions._functions["init-fails"]
    open(os.path.join(failing.spec.code_dir, "fail"), "w").close()
    for _ in range(2):   # each call gets a new instance, whose initializer fails again
        answer = invoke("init-fails")
        assert answer["errorMessage"] == "init refused" and answer["errorType"] == "RuntimeError"
    os.unlink(os.path.join(failing.spec.code_dir, "fail"))
    assert invoke("init-fails")["inits"] == 1
    for name in ("init-ok", "init-fails"):
        client.delete_function(name)


def test_a_new_size_reuses_the_packages_runtime_metadata(aliyun, cell, sandbox):
    """Lithops' metadata call is made once per package, not once per function."""
    key = aliyun.current_runtime.key
    assert cell("%fc_map cores range(2) --memory 512").values == ["0", "1,000"]
    assert sandbox.store.get_bytes(DEFAULT_BUCKET, f"{PREFIX}{key}.meta.json") is not None
    before = sandbox.functions.invocations
    assert cell("%fc_map cores range(2) --memory 3072 --cpu 1.0").values == ["0", "1,000"]
    assert sandbox.functions.invocations - before == 2, "the two tasks, no metadata call"


def test_a_new_size_is_created_while_the_job_uploads_and_its_failure_is_one_line(
        aliyun, cell, sandbox, monkeypatch):
    """Metadata and role known: CreateFunction overlaps Lithops' job upload, not before it."""
    assert cell("%fc_map cores range(2) --memory 512").values == ["0", "1,000"]
    monkeypatch.setattr(sandbox.functions, "pending_s", 1.0)
    job_puts = []
    real_handle = sandbox.store.handle

    def handle(method, bucket, key, *args, **kwargs):
        if method == "PUT" and key.startswith("lithops.jobs/") and "role-check" not in key:
            job_puts.append((time.time(), key))
        return real_handle(method, bucket, key, *args, **kwargs)
    monkeypatch.setattr(sandbox.store, "handle", handle)
    # 1280 MB: a size no other test here uses, so this map creates its function.
    result = cell("%fc_map cores range(3) --memory 1280")
    assert result.values == ["0", "1,000", "2,000"]
    created = sandbox.functions._functions[
        re.search(r"function (lithops-worker-\S+)", result.where).group(1)]
    assert created.spec.memory_mb == 1280
    assert job_puts and job_puts[0][0] < created.active_at, \
        "the job was uploaded only once the function was Active"

    # FC fails to prepare the next new size: one line from the map, no job data left.
    monkeypatch.setattr(sandbox.functions, "pending_s", 0.0)
    real_state = sandbox.functions._state
    monkeypatch.setattr(sandbox.functions, "_state", lambda record: (
        ("Failed", "the code package could not be fetched") if record.spec.memory_mb == 2560
        else real_state(record)))
    job_puts.clear()
    invocations = sandbox.functions.invocations
    before = set(sandbox.store.keys(DEFAULT_BUCKET, "lithops.jobs/"))
    with pytest.raises(UsageError) as err:
        cell("%fc_map cores range(3) --memory 2560")
    message = str(err.value)
    assert "\n" not in message and "could not prepare function" in message
    assert "the code package could not be fetched" in message
    assert job_puts, "the job had been uploaded meanwhile"
    assert sandbox.functions.invocations == invocations, "nothing invoked"
    left = set(sandbox.store.keys(DEFAULT_BUCKET, "lithops.jobs/")) - before
    assert not left, sorted(left)[:3]
