"""The sandbox under attack: exhaustion, replays, stale dates, malformed requests, runaway tasks.

Each test is one attack (counted in the suite's closing line) made the way an
attacker would: raw sockets and http.client for what no SDK sends, the real
SDKs' own signers (tea's ACS3, oss2's V1) for signed requests. Everything is
on 127.0.0.1 and every wait is bounded.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import oss2
import pytest
import yaml
from alibabacloud_tea_openapi.utils import Utils as TeaUtils

from fc_magic.sandbox import Sandbox

IDLE_S = 1.0
MAX_CONNECTIONS = 8
MAX_OBJECT = 24 * 2**20


@pytest.fixture(scope="module")
def sandbox():
    # isolate=False: the process-tree tests read pids and pid files the
    # functions write, which need the client's view of files and PIDs (an
    # isolated instance has its own /tmp and PID namespace).
    with Sandbox(concurrency=2, isolate=False, connection_idle_s=IDLE_S,
                 max_connections=MAX_CONNECTIONS,
                 max_object_bytes=MAX_OBJECT) as sb:
        yield sb


@pytest.fixture
def attack(tally):
    tally.attacks_tried += 1


def _bucket(sb: Sandbox, name: str = "attacks") -> oss2.Bucket:
    bucket = oss2.Bucket(oss2.Auth(sb.access_key_id, sb.access_key_secret), sb.host, name)
    bucket.create_bucket()
    return bucket


def _raw(sb: Sandbox, data: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send raw bytes, then read until the server answers and closes (bounded)."""
    with socket.create_connection(("127.0.0.1", int(sb.host.rsplit(":", 1)[1])),
                                  timeout=wait_s) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            chunks.append(piece)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _status(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), f"no answer from the sandbox: {raw[:80]!r}"
    return int(raw.split(b" ", 2)[1])


def _body(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


def _fc_headers(sb: Sandbox, method: str, path: str, body: bytes = b"", *,
                date: str | None = None, nonce: str | None = None, unsigned=(),
                extra: dict | None = None) -> dict:
    """Headers of an FC request signed by the tea SDK's own ACS3 signer."""
    headers = {"host": sb.host, "x-acs-version": "2023-03-30", "x-acs-action": "Attack",
               "x-acs-date": date or TeaUtils.get_timestamp(),
               "x-acs-signature-nonce": nonce or TeaUtils.get_nonce(),
               "x-acs-content-sha256": hashlib.sha256(body).hexdigest(), **(extra or {})}
    signed = {k: v for k, v in headers.items() if k not in unsigned}
    request = SimpleNamespace(method=method, pathname=path, query={}, headers=signed)
    headers["Authorization"] = TeaUtils.get_authorization(
        request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], sb.access_key_id,
        sb.access_key_secret)
    return headers


def _http(sb: Sandbox, method: str, path: str, body: bytes = b"", headers=None):
    conn = http.client.HTTPConnection(sb.host, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def _oss_signed_headers(sb: Sandbox, method: str, bucket: str, key: str,
                        headers: dict) -> dict:
    """Headers of an OSS request signed by oss2's own V1 signer."""
    req = oss2.http.Request(method, f"http://{sb.host}/{bucket}/{key}", headers=dict(headers))
    oss2.Auth(sb.access_key_id, sb.access_key_secret)._sign_request(req, bucket, key)
    return dict(req.headers)


# ------------------------------------------------------------------ item 6: exhaustion
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_unsigned_huge_put_is_refused_before_its_body_is_read(sandbox, attack, framing):
    # Only the headers are sent: a server that reads the body first never answers.
    length = (b"Content-Length: 419430400\r\n" if framing == "length"
              else b"Transfer-Encoding: chunked\r\n")
    first = b"" if framing == "length" else b"1000000\r\n"
    raw = _raw(sandbox, b"PUT /attacks/big HTTP/1.1\r\nHost: x\r\n" + length + b"\r\n" + first)
    assert _status(raw) == 403 and b"<Code>AccessDenied</Code>" in raw
    assert b"Connection: close" in raw, "the unread body must not be parsed as a request"
    fc = _raw(sandbox, b"POST /2023-03-30/functions HTTP/1.1\r\nHost: x\r\n" + length + b"\r\n")
    assert _status(fc) == 403 and json.loads(_body(fc))["Code"] == "InvalidAuthorization"


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1e9", b"10, 20"])
def test_an_invalid_content_length_is_a_400_at_once(sandbox, attack, value):
    raw = _raw(sandbox, b"PUT /attacks/x HTTP/1.1\r\nHost: x\r\nContent-Length: " + value
               + b"\r\n\r\n")
    assert _status(raw) == 400 and b"<Code>InvalidArgument</Code>" in raw
    fc = _raw(sandbox, b"POST /2023-03-30/functions HTTP/1.1\r\nHost: x\r\nContent-Length: "
              + value + b"\r\n\r\n")
    assert _status(fc) == 400 and json.loads(_body(fc))["Code"] == "InvalidArgument"


def test_signed_bodies_are_capped_at_the_services_limits_and_large_objects_go_to_disk(
        sandbox, attack):
    bucket = _bucket(sandbox)
    # Declared over the cap: refused before reading, whoever signed it.
    headers = _oss_signed_headers(sandbox, "PUT", "attacks", "too-big",
                                  {"Content-Length": str(MAX_OBJECT + 1)})
    raw = _raw(sandbox, "PUT /attacks/too-big HTTP/1.1\r\n".encode()
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n")
    assert _status(raw) == 413 and b"<Code>EntityTooLarge</Code>" in raw
    # Chunked past the cap: cut off there, nothing stored.
    with pytest.raises(oss2.exceptions.OssError) as err:
        bucket.put_object("too-big", (b"x" * 2**20 for _ in range(MAX_OBJECT // 2**20 + 2)))
    assert err.value.status == 413 or isinstance(err.value, oss2.exceptions.RequestError)
    assert not bucket.object_exists("too-big")
    # An async invocation over FC's 128 KB: 413 from the length alone.
    path = "/2023-03-30/functions/nothing/invocations"
    status, _, body = _http(sandbox, "POST", path, b"x" * (128 * 2**10 + 1), _fc_headers(
        sandbox, "POST", path, b"x" * (128 * 2**10 + 1),
        extra={"x-fc-invocation-type": "Async"}))
    assert status == 413 and json.loads(body)["Code"] == "EntityTooLarge"
    # Under the cap but large: kept in a file, served from it, ranges and all.
    data = os.urandom(12 * 2**20)
    bucket.put_object("large", data)
    stored = sandbox.store._buckets["attacks"]["large"]
    assert stored.data is None and os.path.getsize(stored.path) == len(data)
    assert bucket.get_object("large", byte_range=(5, 2**20)).read() == data[5:2**20 + 1]
    assert hashlib.sha256(bucket.get_object("large").read()).digest() == \
        hashlib.sha256(data).digest()
    bucket.delete_object("large")
    assert not os.path.exists(stored.path)


def test_idle_connections_are_bounded_and_timed_out(sandbox, attack):
    port = int(sandbox.host.rsplit(":", 1)[1])
    before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
             for _ in range(6 * MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= MAX_CONNECTIONS
        # A real client still gets through once idle connections time out.
        started = time.monotonic()
        assert _bucket(sandbox, "still-served").get_bucket_info().name == "still-served"
        assert time.monotonic() - started < 6 * IDLE_S + 10
        for sock in socks:  # each idle connection is closed by the server
            assert sock.recv(1) == b""
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while sandbox._server.active_connections() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox._server.active_connections() == 0


# ------------------------------------------------------------------ item 12: dates and replays
def test_requests_dated_far_from_now_are_refused(sandbox, attack, monkeypatch):
    bucket = _bucket(sandbox)
    monkeypatch.setattr(oss2.utils, "http_date", lambda *a: "Sat, 01 Jan 2000 00:00:00 GMT")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.get_bucket_info()
    assert err.value.status == 403 and err.value.code == "RequestTimeTooSkewed"
    monkeypatch.undo()
    path = "/2023-03-30/functions"
    status, _, body = _http(sandbox, "GET", path, headers=_fc_headers(
        sandbox, "GET", path, date="2000-01-01T00:00:00Z"))
    assert status == 400 and json.loads(body)["Code"] == "InvalidTimeStamp.Expired"
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 16 * 60))
    status, _, _ = _http(sandbox, "GET", path, headers=_fc_headers(sandbox, "GET", path,
                                                                    date=stale))
    assert status == 400
    fresh = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 14 * 60))
    assert _http(sandbox, "GET", path, headers=_fc_headers(sandbox, "GET", path,
                                                            date=fresh))[0] == 200


def test_an_exact_replay_of_a_signed_fc_request_is_refused(sandbox, attack):
    path = "/2023-03-30/functions"
    headers = _fc_headers(sandbox, "GET", path)
    assert _http(sandbox, "GET", path, headers=headers)[0] == 200
    status, _, body = _http(sandbox, "GET", path, headers=headers)
    assert status == 400 and json.loads(body)["Code"] == "SignatureNonceUsed"


@pytest.mark.parametrize("left_out", ["host", "x-acs-date", "x-acs-signature-nonce",
                                      "x-acs-content-sha256", "x-acs-action"])
def test_fc_signatures_must_cover_host_date_and_every_acs_header(sandbox, attack, left_out):
    path = "/2023-03-30/functions"
    status, _, body = _http(sandbox, "GET", path,
                            headers=_fc_headers(sandbox, "GET", path, unsigned=(left_out,)))
    error = json.loads(body)
    assert status == 400 and error["Code"] == "InvalidAuthorization"
    assert left_out in error["Message"]


# ------------------------------------------------------------------ item 15: malformed requests
def test_malformed_requests_get_the_services_400_not_a_500(sandbox, attack, caplog):
    key = sandbox.access_key_id.encode()
    with caplog.at_level(logging.DEBUG, logger="fc_magic.sandbox"):
        oss = _raw(sandbox, b"GET /attacks/x HTTP/1.1\r\nHost: x\r\nDate: "
                   + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
                   + b"\r\nAuthorization: OSS " + key + b":\xff\xfe\xe9=\r\n\r\n")
        fc = _raw(sandbox, b"GET /2023-03-30/functions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                  b"ACS3-HMAC-SHA256 Credential=" + key + b",SignedHeaders=host,Signature="
                  b"\xff\xe9\r\n\r\n")
        path = "/2023-03-30/functions"
        answers = [_http(sandbox, "POST", path, body, _fc_headers(sandbox, "POST", path, body))
                   for body in (b"[]", b'"text"', b"[" * 100_000, b'{"functionName": 5}',
                                b'{"functionName": "f", "code": "zip"}')]
    assert _status(oss) == 400 and b"<Code>InvalidArgument</Code>" in oss
    assert _status(fc) == 400 and json.loads(_body(fc))["Code"] == "InvalidAuthorization"
    for status, headers, body in answers:
        assert status == 400 and headers["Content-Type"] == "application/json"
        assert json.loads(body)["Code"] == "InvalidArgument"
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------ item 13: --config-out
def test_cli_config_out_is_private_even_over_an_existing_readable_file(tmp_path, attack):
    config = tmp_path / "sandbox.yaml"
    config.write_text("old: content\n")
    config.chmod(0o644)
    proc = subprocess.Popen([sys.executable, "-m", "fc_magic.cli", "sandbox",
                             "--config-out", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("ready") or time.monotonic() > deadline:
                break
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert "access_key_secret" in yaml.safe_load(config.read_text())["aliyun"]
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=30)


# ------------------------------------------------------------------ items 8 and #17: runaway tasks
RUNAWAY = """
import json, os, signal, subprocess, sys, time

SLEEPER = "import time\\nfor _ in range(600):\\n    time.sleep(1)\\n"
HOG = ("import sys, time\\nblob = bytearray(int(sys.argv[1]) * 2**20)\\n"
       "for i in range(0, len(blob), 4096):\\n    blob[i] = 1\\ntime.sleep(4)\\n")

def handler(event, context):
    e = json.loads(event)
    if e["do"] == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    if e["do"] == "background":
        # Its own session and a double fork: out of the instance's process group.
        p = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if e.get("then_sleep"):
            with open(e["pidfile"], "w") as f:
                f.write(str(p.pid))
            time.sleep(60)
        return {"pid": p.pid}
    if e["do"] == "spike":
        blob = b"x" * (e["mb"] * 2**20)  # allocated and freed at once
        return {"len": len(blob)}
    if e["do"] == "tree":
        kids = [subprocess.Popen([sys.executable, "-c", HOG, str(e["mb"])],
                                 start_new_session=True) for _ in range(e["n"])]
        return {"codes": [k.wait(timeout=30) for k in kids]}
    return {}
"""


def _fc_client(sb: Sandbox):
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as open_api_models

    return Client(open_api_models.Config(access_key_id=sb.access_key_id,
                                         access_key_secret=sb.access_key_secret,
                                         region_id=sb.region, endpoint=sb.endpoint))


def _deploy(sb: Sandbox, name: str, *, memory: int, timeout: int):
    import io
    import zipfile

    from alibabacloud_fc20230330 import models as fc_models

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", RUNAWAY)
    client = _fc_client(sb)
    client.create_function(fc_models.CreateFunctionRequest(body=fc_models.CreateFunctionInput(
        function_name=name, runtime=f"python{sys.version_info[0]}.{sys.version_info[1]}",
        handler="index.handler", memory_size=memory, timeout=timeout, role="r",
        code=fc_models.InputCodeLocation(zip_file=base64.b64encode(buf.getvalue()).decode()))))
    return client


def _call(client, name: str, event: dict) -> tuple[dict, dict]:
    import io

    from alibabacloud_fc20230330 import models as fc_models
    from darabonba.runtime import RuntimeOptions

    res = client.invoke_function_with_options(
        name, fc_models.InvokeFunctionRequest(body=io.BytesIO(json.dumps(event).encode())),
        fc_models.InvokeFunctionHeaders(x_fc_invocation_type="Sync"),
        RuntimeOptions(read_timeout=120_000))
    body = res.body.read() if hasattr(res.body, "read") else res.body
    return res.headers, json.loads(body) if body else {}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_a_timeout_kills_the_whole_tree_even_what_ignores_sigterm_or_left_the_session(
        sandbox, attack, tmp_path):
    client = _deploy(sandbox, "runaway-timeout", memory=256, timeout=2)
    headers, err = _call(client, "runaway-timeout", {"do": "ignore_sigterm"})
    assert err["errorMessage"].startswith("Function timed out after 2 seconds")
    pidfile = tmp_path / "pid"
    headers, err = _call(client, "runaway-timeout", {"do": "background", "then_sleep": True,
                                                     "pidfile": str(pidfile)})
    assert err["errorMessage"].startswith("Function timed out after 2 seconds")
    assert _gone_within(int(pidfile.read_text()), 5), "the background process survived"


def test_stop_ends_every_instance_process(attack):
    with Sandbox(concurrency=1, isolate=False) as sb:  # reads the function's pid
        client = _deploy(sb, "leaves-a-process", memory=256, timeout=10)
        _, out = _call(client, "leaves-a-process", {"do": "background"})
        pid = out["pid"]
        assert _alive(pid), "the process outlives the invocation, as it may on FC"
    assert _gone_within(pid, 5), "stop() left an instance's process running"


def test_memory_counts_the_whole_tree_even_processes_in_their_own_session(sandbox, attack):
    client = _deploy(sandbox, "tree-memory", memory=128, timeout=30)
    # Three children of 60 MB each, each in a session of its own: over 128 MB together.
    _, out = _call(client, "tree-memory", {"do": "tree", "n": 3, "mb": 60})
    assert -9 in out.get("codes", []), f"no child was killed: {out}"


def test_a_brief_allocation_over_memory_is_always_caught(sandbox, attack):
    # 300 MB in a 256 MB function, freed at once: over the limit for a few
    # milliseconds, which a sampler misses most of the time and FC's cgroup
    # never does. Ten tries, ten kills.
    client = _deploy(sandbox, "spike", memory=256, timeout=10)
    for _ in range(10):
        _, err = _call(client, "spike", {"do": "spike", "mb": 300})
        assert "memory limit of 256MB" in err.get("errorMessage", ""), err
    _, ok = _call(client, "spike", {"do": "spike", "mb": 100})
    assert ok == {"len": 100 * 2**20}, "within its memory a function runs as before"
