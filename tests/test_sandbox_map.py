"""fc_magic's aliyun_fc path end to end against the sandbox, with the real SDKs.

One sandbox and one runtime build for the module: `%%fc_runtime` builds the
FC code package (humanize: small, pure Python, not installed in the client's
venv, so it can only come from the package), `%fc_map` deploys it as the
Lithops function and runs tasks in it. Lithops' runtime-metadata cache is
pointed at a temp dir so runs never share deployments.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic import backends, engine, limits
from fc_magic.backends import aliyun_deploy
from fc_magic.backends.aliyun_fc import function_timeout_s
from fc_magic.sandbox import DEFAULT_BUCKET, Faults, Sandbox
from fc_magic.views.receipt import Receipt

from conftest import DEMO_OBJECTS, aliyun_notebook, assert_no_secret

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_CELL = "%%fc_runtime demo\nhumanize\n"
FMT = ("def fmt(x):\n"
       "    import os, sys, humanize\n"
       "    return humanize.intcomma(x * 1000), '%d.%d' % sys.version_info[:2], "
       "os.environ.get('FC_FUNCTION_NAME')\n")


@pytest.fixture(scope="module")
def sandbox(lithops_cache):
    with Sandbox(concurrency=4) as sb:
        yield sb


@pytest.fixture(scope="module")
def xdg_cache(tmp_path_factory) -> str:
    """XDG_CACHE_HOME whose fc_magic/ holds the module's runtime builds."""
    return str(tmp_path_factory.mktemp("xdg"))


@pytest.fixture(scope="module")
def demo_runtime(xdg_cache):
    """The FC package of RUNTIME_CELL, built once (the magic then hits the cache)."""
    from fc_magic.requirements import resolve_requirements
    from fc_magic.runtime import ensure_runtime

    reqs = resolve_requirements("humanize\n", backend="aliyun_fc")
    return ensure_runtime("demo", reqs, target="fc",
                          cache_dir=os.path.join(xdg_cache, "fc_magic"))


@pytest.fixture
def aliyun(fc, cell, config_file, demo_runtime, xdg_cache):
    """FCMagic on backend aliyun_fc, credentials from the sandbox's Lithops config."""
    fc.backend = "aliyun_fc"
    fc.config_file = config_file
    fc.cache_dir = os.path.join(xdg_cache, "fc_magic")
    with capture_output() as cap:
        cell(RUNTIME_CELL)
    assert "cache hit" in cap.stdout
    cell(FMT)
    return fc


def _request(runtime, config_file, **kw) -> engine.MapRequest:
    settings = {"memory_mb": 256, "timeout_s": 60, **kw}
    return engine.MapRequest(backend="aliyun_fc", runtime=runtime.deploy_name,
                             package=runtime.package, config_file=config_file, **settings)


def test_fc_runtime_and_fc_map_run_in_the_deployed_package(aliyun, cell, sandbox):
    with capture_output() as cap:
        result = cell("%fc_map fmt range(6)")
    names = [n for n in sandbox.functions._functions if n.startswith("lithops-worker-demo-")]
    assert len(names) == 1, "one FC function for (runtime, memory)"
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert result.values == [(f"{x * 1000:,}", python, names[0]) for x in range(6)]
    assert "6/6 done" in cap.stdout and "[ok]" in cap.stdout


@pytest.mark.slow
# About 90 s on 2 busy cores; without paging the map never ends: fail at 4 minutes, not 15.
@pytest.mark.timeout(240)
def test_a_map_of_1500_tasks_completes(demo_runtime, config_file, sandbox):
    # Lithops detects completion by listing the job's status keys (~3 per
    # task): without paging past OSS's 1000-key pages this map never ends.
    # Tasks are chunked 50 per invocation, and status is polled at Lithops' default
    # interval (listing 4,500 keys in this process competes with the sandbox), to
    # keep the test light.
    def double(x):
        return 2 * x

    request = _request(demo_runtime, config_file,
                       extra_config={"lithops": {"chunksize": 50, "monitoring_interval": 2}})
    result = engine.run_map(double, list(range(1500)), request)
    assert result.values == [2 * x for x in range(1500)]


# Under a second: a paging loop that does not advance must fail here, not stall the run.
@pytest.mark.timeout(60)
def test_listing_pages_past_1000_keys(demo_runtime, config_file, sandbox):
    executor = backends.get("aliyun_fc").executor(_request(demo_runtime, config_file))
    try:
        bucket = executor.internal_storage.bucket
        for i in range(2100):
            sandbox.store.handle("PUT", bucket, f"paging-test/{i:05d}", {}, {}, b"")
        storage = executor.internal_storage.storage
        assert len(storage.list_keys(bucket, "paging-test/")) == 2100
        assert len(storage.list_objects(bucket, "paging-test/")) == 2100
        storage.delete_objects(bucket, storage.list_keys(bucket, "paging-test/"))
        assert sandbox.store.count(bucket, "paging-test/") == 0
    finally:
        aliyun_deploy.deployed(executor)
        executor.job_monitor.stop()


def test_over_memory_and_over_timeout_are_reported_and_the_rest_kept(aliyun, cell):
    cell("def hog(x):\n"
         "    if x == 'mem':\n"
         "        blob = 'x' * (600 * 2**20)\n"
         "    if x == 'sleep':\n"
         "        import time; time.sleep(60)\n"
         "    return x\n")
    with capture_output() as cap:
        result = cell("%fc_map hog [1, 'mem', 'sleep', 4] --timeout 3")
    assert result.values[0] == 1 and result.values[3] == 4
    kinds = {f.input_repr: f for f in result.failures}
    assert kinds["'mem'"].exc_type == "MemoryError"
    assert "memory" in kinds["'mem'"].message
    assert kinds["'sleep'"].exc_type == "TimeoutError"
    assert "maximum time of 3 seconds" in kinds["'sleep'"].message
    assert "2 of 4 tasks failed" in cap.stdout


# A few seconds: a throttled call that is lost instead of retried would stall the map.
@pytest.mark.timeout(90)
def test_injected_throttling_and_5xx_lose_no_result(aliyun, cell, sandbox, tally, caplog):
    before = sandbox.faults_injected
    sandbox.faults = Faults(throttle_rate=0.05, error_rate=0.05, seed=11)
    try:
        with caplog.at_level("WARNING", logger="urllib3"):
            result = cell("%fc_map fmt range(60)")
    finally:
        sandbox.faults = Faults()
    injected = sandbox.faults_injected - before
    tally.faults_injected += injected
    assert injected > 0
    assert [v[0] for v in result.values] == [f"{x * 1000:,}" for x in range(60)]
    # Plain-http endpoint told to the FC client: no "Connection pool is full" in the cell.
    assert "Connection pool is full" not in caplog.text


# Eight invokes with backoff capped at 2 s each.
@pytest.mark.timeout(60)
def test_throttled_invoke_is_retried_not_raised(demo_runtime, config_file, sandbox):
    from lithops.serverless.backends.aliyun_fc.aliyun_fc import AliyunFunctionComputeBackend
    from lithops.storage.backends.aliyun_oss.aliyun_oss import (
        AliyunObjectStorageServiceBackend as OSSBackend,
    )

    stock = (AliyunFunctionComputeBackend.invoke, OSSBackend.list_keys, OSSBackend.list_objects,
             OSSBackend.delete_objects)
    executor = backends.get("aliyun_fc").executor(_request(demo_runtime, config_file))
    aliyun_deploy.deployed(executor)   # a new function is created in the background
    # The fixes are on fc_magic's executor only: other Lithops use in the kernel is stock.
    assert (AliyunFunctionComputeBackend.invoke, OSSBackend.list_keys, OSSBackend.list_objects,
            OSSBackend.delete_objects) == stock
    sandbox.faults = Faults(throttle_rate=0.5, seed=3)
    try:
        backend = executor.compute_handler.backend
        ids = [backend.invoke(demo_runtime.deploy_name, 256, {"get_metadata": True})
               for _ in range(8)]
    finally:
        sandbox.faults = Faults()
        executor.job_monitor.stop()
    assert all(ids) and len(set(ids)) == 8


def test_deleted_function_is_redeployed_through_an_oss_code_location(
        aliyun, cell, sandbox, monkeypatch):
    cell("%fc_map fmt range(2)")
    (name,) = [n for n in sandbox.functions._functions if n.startswith("lithops-worker-demo-")]
    sandbox.functions.delete(name)  # Lithops' metadata cache still says "deployed"
    fetched = []
    real_get = sandbox.store.get_bytes
    monkeypatch.setattr(sandbox.store, "get_bytes",
                        lambda b, k: fetched.append(k) or real_get(b, k))
    uploads = sandbox.traffic.calls.get("PutObject", 0)
    put_bytes = sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/fc_magic/runtimes/")
    result = cell("%fc_map fmt range(3)")
    assert [v[0] for v in result.values] == ["0", "1,000", "2,000"]
    assert name in sandbox.functions._functions
    key = aliyun.current_runtime.key
    assert fetched == [f"fc_magic/runtimes/{key}.zip"], "created from the runtime's OSS object"
    assert sandbox.traffic.put_bytes(f"{DEFAULT_BUCKET}/fc_magic/runtimes/") == put_bytes, \
        "the package already in OSS is not uploaded again"
    assert sandbox.traffic.calls.get("PutObject", 0) > uploads  # the map's own job data


def test_wrong_secret_is_one_clear_error_without_the_secret(fc, cell, aliyun, config_file,
                                                          tmp_path, sandbox, tally):
    bad = yaml.safe_load(Path(config_file).read_text())
    wrong = "Vh4Kq9ZtB2xNw7RmC5jLp8Dy3FsG6aT"   # random-looking: no piece occurs by chance
    bad["aliyun"]["access_key_secret"] = wrong
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    fc.config_file = str(path)
    with capture_output() as cap, pytest.raises(UsageError) as err:
        cell("%fc_map fmt range(3)")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("%fc_map: OSS refused the AccessKey")
    assert "SignatureDoesNotMatch" in message and "access_key_secret" in message
    for where, text in (("the error", message), ("stdout", cap.stdout), ("stderr", cap.stderr)):
        assert_no_secret(text, wrong, sandbox.access_key_secret, where=where, tally=tally)


def test_missing_credentials_and_unsupported_python_are_usage_errors(
        aliyun, cell, tmp_path, config_file, monkeypatch):
    partial = yaml.safe_load(Path(config_file).read_text())
    del partial["aliyun"]["access_key_secret"]
    (tmp_path / "partial.yaml").write_text(yaml.safe_dump(partial))
    aliyun.config_file = str(tmp_path / "partial.yaml")
    with pytest.raises(UsageError, match=r"needs access_key_secret under 'aliyun:'"):
        cell("%fc_map fmt range(3)")
    aliyun.config_file = config_file
    aliyun.current_runtime = None
    with pytest.raises(UsageError, match=r"runs tasks in a runtime built for Function Compute; "
                                         r"define one with %%fc_runtime NAME"):
        cell("%fc_map fmt range(3)")
    monkeypatch.setattr(limits, "python_version", lambda: "3.11")
    with pytest.raises(UsageError) as err:
        cell("%fc_map fmt range(3)")
    message = str(err.value)
    assert "\n" not in message
    assert re.search(r"Python 3\.11 cannot run maps on Function Compute: fc_magic supports "
                     r"Python 3\.10 and 3\.12, .* must match", message)


@pytest.mark.slow
def test_aliyun_notebook_runs_against_the_sandbox(config_file, demo_runtime, xdg_cache,
                                                  tmp_path, sandbox, tally):
    from fc_magic.notebooks import cell_texts, execute

    home = tmp_path / "home"
    home.mkdir()
    notebook = aliyun_notebook(sandbox, config_file, tmp_path)
    out = tmp_path / "aliyun_fc.executed.ipynb"
    nb = execute(notebook, out, timeout=300,
                 env={"LITHOPS_CONFIG_FILE": config_file, "XDG_CACHE_HOME": xdg_cache,
                      "HOME": str(home)})
    texts = {first: text for _, first, text in cell_texts(nb)}
    assert "started; done yet?" in texts["bg = %fc_map count_primes range(0, 30000, 300) -b"]
    assert texts["%fc_wait bg"].rstrip().endswith("True True")
    assert texts["def count_lines(obj):"].rstrip().endswith(
        f"6 tasks, {sum(lines for _, lines in DEMO_OBJECTS)} lines"), \
        texts["def count_lines(obj):"]
    assert "cache hit" in texts["%%fc_runtime demo"]
    assert texts["def add_seven(x):"].endswith("[7, 8, 9, 10, 11, 12, 13, 14, 15, 16]")
    where = texts["def where(x):"]
    assert "lithops-worker-demo-" in where and "1,000,000" in where
    assert "1 of 7 tasks failed" in texts["def inverse(x):"]
    assert_no_secret(out.read_text(), sandbox.access_key_secret, where="the executed notebook",
                     tally=tally)


def test_cli_sandbox_prints_a_working_config_and_stops_on_ctrl_c(tmp_path):
    import oss2

    config = tmp_path / "sandbox.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "fc_magic.cli", "sandbox",
                             "--config-out", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        text = "".join(lines)
        data = yaml.safe_load(config.read_text())
        secret = data["aliyun"]["access_key_secret"]
        assert data["aliyun_fc"]["endpoint"] in text and secret in text
        assert "%config FCMagic.backend = 'aliyun_fc'" in text
        bucket = oss2.Bucket(oss2.Auth(data["aliyun"]["access_key_id"], secret),
                             data["aliyun_oss"]["endpoint"], "cli-check")
        bucket.create_bucket()
        assert bucket.get_bucket_info().name == "cli-check"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_a_deployed_function_at_fcs_maximum_timeout_is_reused(
        demo_runtime, config_file, sandbox):
    request = _request(demo_runtime, config_file, timeout_s=86_400)
    executor = backends.get("aliyun_fc").executor(request)  # deploys when FC lacks a fitting function
    try:
        aliyun_deploy.deployed(executor)   # a new function is created in the background
        assert aliyun_deploy.deploy_package(executor, request, function_timeout_s(request)) is False, \
            "FC already has it"
        name = executor.compute_handler.backend._format_function_name(
            demo_runtime.deploy_name, 256)
        assert sandbox.functions._functions[name].spec.timeout_s == 86_400
    finally:
        executor.job_monitor.stop()


PROBE = ("def probe(x):\n"
         "    import importlib\n"
         "    try:\n"
         "        return importlib.import_module('fc_magic_probe').VERSION\n"
         "    except ImportError:\n"
         "        return 'original'\n")


def _rebuilt_copy(demo_runtime, xdg_cache: str, into: Path) -> Path:
    """A copy of the demo runtime's cache whose package (same key, same deploy name)
    holds one module more, as a rebuild that produced other bytes would."""
    import json
    import shutil
    import zipfile

    source = os.path.join(xdg_cache, "fc_magic")
    shutil.copytree(source, into, symlinks=True)
    entry_dir = Path(demo_runtime.path.replace(source, str(into)))
    package = entry_dir / "package.zip"
    with zipfile.ZipFile(package, "a") as zf:
        zf.writestr("fc_magic_probe.py", "VERSION = 'rebuilt'\n")
    manifest_path = entry_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    size = package.stat().st_size
    manifest["check_files"]["package.zip"] = size
    manifest["package_bytes"] = size
    manifest_path.write_text(json.dumps(manifest))
    return into


def test_a_changed_package_under_the_same_deploy_name_is_redeployed(
        aliyun, cell, sandbox, tmp_path, demo_runtime, xdg_cache):
    cell(PROBE)
    assert cell("%fc_map probe range(2)").values == ["original", "original"]
    (name,) = [n for n in sandbox.functions._functions if n.startswith("lithops-worker-demo-")]
    before = sandbox.functions._functions[name]

    aliyun.cache_dir = str(_rebuilt_copy(demo_runtime, xdg_cache, tmp_path / "rebuilt"))
    with capture_output() as cap:
        cell(RUNTIME_CELL)
    assert "cache hit" in cap.stdout
    assert aliyun.current_runtime.deploy_name == demo_runtime.deploy_name   # same name ...
    assert aliyun.current_runtime.package != demo_runtime.package           # ... other bytes
    # FC is asked for the package by its digest: the function is re-created with the new
    # code and every task (warm instances included) runs it.
    assert cell("%fc_map probe range(4)").values == ["rebuilt"] * 4
    after = sandbox.functions._functions[name]
    assert after is not before and after.code_checksum != before.code_checksum
    assert after.description != before.description

    # And back: the original package is deployed again, not left as it was.
    aliyun.cache_dir = os.path.join(xdg_cache, "fc_magic")
    with capture_output():
        cell(RUNTIME_CELL)
    assert cell("%fc_map probe range(2)").values == ["original", "original"]
    assert sandbox.functions._functions[name].description == before.description


def test_a_package_that_cannot_start_is_reported_at_once(config_file, sandbox, tmp_path):
    import zipfile

    broken = tmp_path / "broken.zip"  # Lithops' handler without Lithops
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("entry_point.py", "from lithops.worker import function_handler\n"
                                      "def main(event, context):\n    return {}\n")
    request = engine.MapRequest(backend="aliyun_fc", runtime="broken-0123abcd",
                                package=str(broken), config_file=config_file)
    with pytest.raises(aliyun_deploy.RuntimeStartProblem) as err:
        engine.run_map(abs, [1], request)
    assert ("runtime broken-0123abcd cannot start on Function Compute: ModuleNotFoundError: "
            "No module named 'lithops'") in str(err.value)


@pytest.mark.timeout(120)
def test_an_fc_endpoint_that_does_not_answer_is_one_line(aliyun, cell, tally):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aliyun.fc_endpoint = f"http://127.0.0.1:{port}"
    tally.faults_injected += 1
    with pytest.raises(UsageError) as err:
        cell("%fc_map fmt range(2)")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("%fc_map: Function Compute did not answer (connection refused); "
                              "check the network and FCMagic.fc_endpoint"), message


# About 15 s: two small maps; the lost task is given up 5 s after its 5 s timeout (less
# would count a slow cold start of the other tasks' instances on a busy machine as lost;
# the timeout leaves the sandbox time to lose the instance before Lithops' own timeout).
@pytest.mark.timeout(120)
def test_failures_carry_fc_request_ids_and_the_receipt_says_where_the_logs_are(
        aliyun, cell, sandbox, monkeypatch, caplog):
    monkeypatch.setattr(engine, "STALL_GRACE_S", 5.0)
    cell("def wobbly(x):\n"
         "    import time\n"
         "    if x == 'raise':\n"
         "        raise ValueError('bad ' + x)\n"
         "    if x == 'crash':  # asks the sandbox to lose this instance, as a host failure\n"
         "        open('/tmp/crash-me', 'w').close()\n"
         "        time.sleep(60)\n"
         "    return x\n")
    stop = threading.Event()

    def host_failure():  # the instance dies mid-call: the task writes no status
        while not stop.is_set() and not sandbox.executor.crash_instances_holding("crash-me"):
            stop.wait(0.1)

    crasher = threading.Thread(target=host_failure, daemon=True)
    crasher.start()
    try:
        with capture_output() as cap:
            result = cell("%fc_map wobbly [1, 'raise', 'crash'] --timeout 5")
    finally:
        stop.set()
        crasher.join()
    raised, lost = result.values[1], result.values[2]
    # The lost task had written its start: fc_magic's stall check (5 s after the
    # timeout, from the last progress) and Lithops' timeout check (5 s after the
    # timeout, from the task's start) fall within a second of each other, so it
    # is reported lost or timed out; either way with the id FC logged it under.
    assert raised.exc_type == "ValueError" and lost.exc_type in ("TaskLost", "TimeoutError")
    assert re.fullmatch(r"[0-9a-f]{32}", raised.request_id)  # what FC (the sandbox) issued
    assert re.fullmatch(r"[0-9a-f]{32}", lost.request_id) and lost.request_id != raised.request_id
    # The killed task wrote no status: its id is the invoke's answer, the one FC logged it under.
    assert any(f"async invocation {lost.request_id} of lithops-worker-demo-" in m
               for m in caplog.messages)
    assert result.stats[1].request_id == raised.request_id
    assert result.stats[0].request_id and result.stats[0].request_id not in (
        raised.request_id, lost.request_id)
    assert f"FC request {raised.request_id}" in repr(result.failures)
    function = re.search(r"function (lithops-worker-demo-\S+)", result.where).group(1)
    no_logs = f"FC keeps no logs of {function}: give it a log config"
    assert f"FC request id {raised.request_id}" in cap.stdout and no_logs in cap.stdout
    html = Receipt(result)._repr_mimebundle_()["text/html"]
    assert f"<code>{raised.request_id}</code>" in html and no_logs in html

    # The user turns logging on (console or SDK), and the next map's receipt says where.
    from alibabacloud_fc20230330 import models as fc_models

    executor = backends.get("aliyun_fc").executor(engine.MapRequest(
        backend="aliyun_fc", config_file=aliyun.config_file))
    try:
        executor.compute_handler.backend.fc_client.update_function(
            function, fc_models.UpdateFunctionRequest(body=fc_models.UpdateFunctionInput(
                log_config=fc_models.LogConfig(project="ds-team", logstore="fc-tasks"))))
    finally:
        executor.job_monitor.stop()
    with capture_output() as cap:
        again = cell("%fc_map wobbly ['raise']")
    assert again.logs.startswith("FC logs: SLS project ds-team, logstore fc-tasks")
    assert again.logs.endswith(f'one task\'s lines: __topic__: "FCLogs:{function}" and '
                               f'"<request id>"') and again.logs in cap.stdout
    assert re.fullmatch(r"[0-9a-f]{32}", again.failures[0].request_id)


REDUCE_CELL = ("def blob(x):\n"
               "    return bytes([x]) * 1_000_000\n"
               "def where(results):\n"
               "    import os\n"
               "    return [r[0] for r in results], os.environ.get('FC_FUNCTION_NAME')\n")


def test_reduce_runs_as_one_more_fc_invocation_and_only_its_value_comes_back(aliyun, cell,
                                                                            sandbox):
    from fc_magic.results import REDUCED

    cell(REDUCE_CELL)
    cell("%fc_map blob [1] --quiet")  # deployed before counting
    before = sandbox.functions.invocations
    plain = cell("%fc_map blob [3, 1, 2, 5] --quiet")
    map_calls = sandbox.functions.invocations - before
    assert plain.values[0][:2] == b"\x03\x03"  # without --reduce the values come back
    before = sandbox.functions.invocations
    result = cell("%fc_map blob [3, 1, 2, 5] --reduce where --quiet")
    assert sandbox.functions.invocations - before == map_calls + 1  # the reducer's own call
    order, function = result.reduced
    assert order == [3, 1, 2, 5] and function.startswith("lithops-worker-demo-")
    assert result.values == [REDUCED] * 4 and result.ok  # 4 MB stayed in OSS
