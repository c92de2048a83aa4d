"""The sandbox as the real SDKs see it: alibabacloud-fc20230330 and oss2, no Lithops.

One sandbox for the module; handlers are tiny zips written here, so these
tests exercise the wire protocol, signatures, isolation, limits and faults.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import sys
import time
import zipfile

import oss2
import pytest
from alibabacloud_fc20230330 import models as fc_models
from alibabacloud_fc20230330.client import Client as FCClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from darabonba.runtime import RuntimeOptions

from fc_magic.sandbox import Faults, Sandbox

from conftest import assert_no_secret

HANDLER = """
import json, os, sys, time

def handler(event, context):
    e = json.loads(event or b"{}")
    started = time.time()
    if e.get("sleep"):
        time.sleep(e["sleep"])
    if e.get("mem_mb"):
        blob = "x" * (e["mem_mb"] * 2**20)
    if e.get("import"):
        __import__(e["import"])
    if e.get("raise"):
        raise ValueError(e["raise"])
    return {"request_id": context.request_id, "pid": os.getpid(),
            "python": "%d.%d" % sys.version_info[:2], "path": sys.path,
            "oss2": __import__("oss2").__file__, "started": started, "ended": time.time(),
            "instance": os.environ.get("FC_INSTANCE_ID"), "cwd": os.getcwd()}
"""


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(concurrency=2) as sb:
        yield sb


def _fc(sb: Sandbox, secret: str | None = None, key_id: str | None = None) -> FCClient:
    return FCClient(open_api_models.Config(
        access_key_id=key_id or sb.access_key_id,
        access_key_secret=secret or sb.access_key_secret,
        region_id=sb.region, endpoint=sb.endpoint))


def _create(client, name, *, runtime="python3.12", memory=128, timeout=10,
            package: bytes | None = None, code=None):
    """Create a function and wait until FC says it is Active, as a client must."""
    code = code or fc_models.InputCodeLocation(
        zip_file=base64.b64encode(package or _zip({"index.py": HANDLER})).decode())
    created = client.create_function(fc_models.CreateFunctionRequest(
        body=fc_models.CreateFunctionInput(function_name=name, runtime=runtime,
                                           handler="index.handler", code=code,
                                           memory_size=memory, timeout=timeout, role="r")))
    state = created.body.state
    while state == "Pending":  # the first function of a Python prepares its base env
        time.sleep(0.5)
        state = client.get_function(name, fc_models.GetFunctionRequest()).body.state
    assert state == "Active"
    return created


def _invoke(client, name, event: dict, kind="Sync"):
    res = client.invoke_function_with_options(
        name, fc_models.InvokeFunctionRequest(body=io.BytesIO(json.dumps(event).encode())),
        fc_models.InvokeFunctionHeaders(x_fc_invocation_type=kind), RuntimeOptions())
    body = res.body.read() if hasattr(res.body, "read") else res.body
    return res, (json.loads(body) if body else None)


@pytest.fixture(scope="module")
def fn(sandbox):
    """A python3.12 function (the client's own Python) shared by the module."""
    client = _fc(sandbox)
    _create(client, "api-fn", memory=128, timeout=3)
    return client, "api-fn"


# ------------------------------------------------------------------ OSS
def test_oss_objects_ranges_encoded_keys_and_empty_chunked_bodies(sandbox):
    bucket = oss2.Bucket(oss2.Auth(sandbox.access_key_id, sandbox.access_key_secret),
                         sandbox.host, "objects")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket.get_bucket_info()
    bucket.create_bucket()
    assert bucket.get_bucket_info().name == "objects"
    key = "lithops.jobs/a b/c%d+é"
    bucket.put_object(key, b"0123456789")
    assert bucket.get_object(key, byte_range=(2, 5)).read() == b"2345"
    assert bucket.get_object(key).read() == b"0123456789"
    assert bucket.head_object(key).content_length == 10
    # A generator body goes out chunked with no Content-Length, as Lithops' empty puts do.
    bucket.put_object("empty", (chunk for chunk in []))
    assert bucket.get_object("empty").read() == b""
    assert bucket.head_object("empty").content_length == 0
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.head_object("missing")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("missing")
    result = bucket.batch_delete_objects([key, "empty"])
    assert sorted(result.deleted_keys) == sorted([key, "empty"])
    assert not bucket.object_exists(key)


def test_oss_lists_at_most_1000_keys_a_page_with_next_marker(sandbox):
    bucket = oss2.Bucket(oss2.Auth(sandbox.access_key_id, sandbox.access_key_secret),
                         sandbox.host, "paging")
    bucket.create_bucket()
    keys = [f"jobs/{i:05d}/status.json" for i in range(2100)]
    for k in keys:
        sandbox.store.handle("PUT", "paging", k, {}, {}, b"x")
    first = bucket.list_objects(prefix="jobs/", max_keys=5000)
    assert len(first.object_list) == 1000 and first.is_truncated
    assert first.next_marker == keys[999]
    assert [o.key for o in oss2.ObjectIterator(bucket, prefix="jobs/")] == keys
    dirs = bucket.list_objects(prefix="jobs/", delimiter="/", max_keys=10)
    assert dirs.prefix_list[:2] == ["jobs/00000/", "jobs/00001/"] and dirs.is_truncated


def test_oss_refuses_a_wrong_secret_or_key(sandbox):
    for key_id, secret, code in ((sandbox.access_key_id, "not-the-secret", "SignatureDoesNotMatch"),
                                 ("LTAIunknown", sandbox.access_key_secret, "InvalidAccessKeyId")):
        bucket = oss2.Bucket(oss2.Auth(key_id, secret), sandbox.host, "objects")
        with pytest.raises(oss2.exceptions.ServerError) as err:
            bucket.get_bucket_info()
        assert err.value.status == 403 and err.value.code == code


# ------------------------------------------------------------------ FC management
def test_fc_create_get_list_with_prefix_and_paging_delete(sandbox):
    client = _fc(sandbox)
    for i in range(5):
        _create(client, f"page-{i}")
    _create(client, "other-0")
    got = client.get_function("page-3", fc_models.GetFunctionRequest()).body
    assert (got.function_name, got.memory_size, got.runtime, got.state) == \
        ("page-3", 128, "python3.12", "Active")
    names, token = [], None
    while True:
        out = client.list_functions(fc_models.ListFunctionsRequest(
            prefix="page-", limit=2, next_token=token)).body
        names += [f.function_name for f in out.functions]
        token = out.next_token
        if not token:
            break
    assert names == [f"page-{i}" for i in range(5)]
    with pytest.raises(ClientException) as err:
        _create(client, "page-0")
    assert err.value.status_code == 409 and err.value.code == "FunctionAlreadyExists"
    for i in range(5):
        client.delete_function(f"page-{i}")
    with pytest.raises(ClientException) as err:
        client.get_function("page-0", fc_models.GetFunctionRequest())
    assert err.value.status_code == 404 and err.value.code == "FunctionNotFound"
    assert err.value.request_id  # FC's JSON error carries Code, Message and RequestId


def test_fc_refuses_a_wrong_secret_or_key_with_403(sandbox):
    with pytest.raises(ClientException) as err:
        _fc(sandbox, secret="wrong-secret").get_function("x", fc_models.GetFunctionRequest())
    assert err.value.status_code == 403 and err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(ClientException) as err:
        _fc(sandbox, key_id="LTAIunknown").get_function("x", fc_models.GetFunctionRequest())
    assert err.value.status_code == 403 and err.value.code == "InvalidAccessKeyId.NotFound"


def test_fc_code_from_an_oss_code_location(sandbox):
    bucket = oss2.Bucket(oss2.Auth(sandbox.access_key_id, sandbox.access_key_secret),
                         sandbox.host, "code")
    bucket.create_bucket()
    bucket.put_object("pkg.zip", _zip({"index.py": HANDLER}))
    client = _fc(sandbox)
    _create(client, "from-oss", code=fc_models.InputCodeLocation(
        oss_bucket_name="code", oss_object_name="pkg.zip"))
    res, out = _invoke(client, "from-oss", {})
    assert out["request_id"] == res.headers["x-fc-request-id"]


def test_functions_from_one_package_share_one_unpacked_copy(sandbox):
    """As FC keeps code by checksum: a runtime at a second size unpacks nothing."""
    import threading

    client = _fc(sandbox)
    package, other = (_zip({"index.py": HANDLER + f"# {tag}\n"}) for tag in "ab")
    store = sandbox.functions.code
    before = set(os.listdir(store.root))
    # Two sizes of one package created at once, and one other package.
    errors = []

    def create(name, memory):
        try:
            _create(client, name, memory=memory, package=package)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=create, args=(f"share-{m}", m)) for m in (128, 256)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    _create(client, "share-other", package=other)
    sums = {n: client.get_function(n, fc_models.GetFunctionRequest()).body.code_checksum
            for n in ("share-128", "share-256", "share-other")}
    assert sums["share-128"] == sums["share-256"] != sums["share-other"]
    records = sandbox.functions._functions
    assert records["share-128"].spec.code_dir == records["share-256"].spec.code_dir
    assert len(set(os.listdir(store.root)) - before) == 2, "one folder per package"
    shared = records["share-128"].spec.code_dir
    client.delete_function("share-128")
    assert os.path.isdir(shared), "the other size still uses it"
    _, out = _invoke(client, "share-256", {})
    assert out["request_id"]
    client.delete_function("share-256")
    client.delete_function("share-other")
    assert not os.path.exists(shared)
    assert set(os.listdir(store.root)) == before, "the last function's delete removes it"
    with pytest.raises(ClientException) as err:
        _create(client, "share-bad", package=_zip({"../escape.py": "x"}))
    assert err.value.status_code == 400 and "unsafe path" in err.value.message
    assert set(os.listdir(store.root)) == before, "a refused package leaves nothing"


def test_a_code_root_left_by_a_killed_sandbox_is_removed_by_the_next(tmp_path):
    import subprocess

    from fc_magic.sandbox import code_store

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    parent = code_store._root_parent(str(tmp_path))
    orphan = os.path.join(parent, f"{code_store.PREFIX}{dead.pid}-x")
    mine = os.path.join(parent, f"{code_store.PREFIX}{os.getpid()}-y")
    os.makedirs(os.path.join(orphan, "123"))
    os.makedirs(mine)
    store = code_store.CodeStore(str(tmp_path))
    try:
        assert not os.path.exists(orphan), "its sandbox's process is gone"
        assert os.path.isdir(mine), "a live sandbox's folder stays"
        assert store.root.startswith(parent)
    finally:
        store.close()
        os.rmdir(mine)
    assert not os.path.exists(store.root)


# ------------------------------------------------------------------ invocation
def test_sync_and_async_invoke_with_request_ids_on_warm_instances(fn, sandbox):
    client, name = fn
    res, first = _invoke(client, name, {})
    assert first["request_id"] == res.headers["x-fc-request-id"]
    _, second = _invoke(client, name, {})
    assert second["pid"] == first["pid"], "a warm instance serves the next invocation"
    res, body = _invoke(client, name, {}, kind="Async")
    assert res.status_code == 202 and res.headers["x-fc-request-id"] and body is None


def test_function_sees_only_its_package_and_fc_builtins(fn, sandbox):
    client, name = fn
    _, out = _invoke(client, name, {})
    site = os.path.dirname(os.path.dirname(oss2.__file__))
    assert site not in out["path"], "the client's site-packages must be invisible"
    base = ("/opt/fc-base-env/" if sandbox.executor.isolation.available
            else "/sandbox/base-py")
    assert not out["oss2"].startswith(site) and base in out["oss2"]
    assert out["cwd"] == out["path"][0]  # the unpacked package, as FC's /code
    res, err = _invoke(client, name, {"import": "lithops"})
    assert res.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert err["errorType"] == "ModuleNotFoundError" and "lithops" in err["errorMessage"]
    _, err = _invoke(client, name, {"raise": "boom"})
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "boom"


def test_runtime_python_other_than_the_clients(sandbox):
    other = "python3.10" if sys.version_info[:2] != (3, 10) else "python3.12"
    client = _fc(sandbox)
    _create(client, "other-python", runtime=other)
    _, out = _invoke(client, "other-python", {})
    assert out["python"] == other.removeprefix("python")


def test_timeout_and_memory_are_enforced_and_reported_like_fc(fn):
    client, name = fn  # 128 MB, 3 s
    res, err = _invoke(client, name, {"sleep": 10})
    assert res.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert err["errorMessage"].startswith("Function timed out after 3 seconds")
    res, err = _invoke(client, name, {"mem_mb": 400})
    assert err["errorMessage"].startswith("Process exited unexpectedly before completing")
    assert "memory limit of 128MB" in err["errorMessage"]
    _, ok = _invoke(client, name, {"mem_mb": 20})  # a new instance takes over
    assert ok["request_id"]


def test_concurrency_is_capped(fn, sandbox):
    from concurrent.futures import ThreadPoolExecutor

    client, name = fn
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda _: _invoke(client, name, {"sleep": 0.3})[1], range(6)))
    spans = [(o["started"], o["ended"]) for o in outs]
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap <= sandbox.concurrency == 2


def test_injected_throttling_and_5xx(fn, sandbox):
    client, name = fn
    try:
        sandbox.faults = Faults(throttle_rate=1.0)
        with pytest.raises(ClientException) as err:
            _invoke(client, name, {})
        assert err.value.status_code == 429 and err.value.code == "ResourceThrottled"
        sandbox.faults = Faults(error_rate=1.0)
        with pytest.raises(ServerException) as err:
            _invoke(client, name, {})
        assert err.value.status_code == 503
    finally:
        sandbox.faults = Faults()
    assert _invoke(client, name, {})[1]["request_id"]


def test_payloads_are_never_logged(fn, sandbox, caplog):
    client, name = fn
    marker = "Pz8Tk3Wq6Nv1Hx9Lb4Jr7Mc2Yd5Sf"   # random-looking: no piece occurs by chance
    with caplog.at_level(logging.DEBUG, logger="fc_magic.sandbox"):
        _invoke(client, name, {"config": {"access_key_secret": marker}}, kind="Async")
        _invoke(client, name, {"config": {"access_key_secret": marker}, "raise": "x"})
    assert caplog.records, "the sandbox logs requests at debug level"
    assert_no_secret(caplog.text, marker, sandbox.access_key_secret, where="the sandbox's log")


def test_fc_preinstalled_modules_are_there_as_on_fc(fn):
    # PIL (pillow) is one of FC's documented built-ins, and what fc_magic's
    # pre-flight check assumes FC provides without the runtime declaring it.
    client, name = fn
    _, out = _invoke(client, name, {"import": "PIL"})
    assert out["request_id"]
