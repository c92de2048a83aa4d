"""The loopback server: FC and OSS on one 127.0.0.1 port, and the `Sandbox` handle.

Requests under ``/2023-03-30/`` are Function Compute calls (ACS3 signatures);
everything else is path-style OSS (V1 signatures). The sandbox generates its
own AccessKey pair and account id; `Sandbox.lithops_config()` is the matching
Lithops configuration. Faults (throttling and transient 5xx on invocations)
can be switched on at any time for reliability tests.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import shutil
import socket
import string
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

from . import signing
from .execution import Executor
from .fc import API, FunctionService, fc_error
from .oss import ObjectStore, Reply, oss_error

logger = logging.getLogger(__name__)

DEFAULT_BUCKET = "lithops-sandbox"


@dataclass
class Faults:
    """Injected failures on FC invocations: a rate of 429s and of transient 5xx."""

    throttle_rate: float = 0.0
    error_rate: float = 0.0
    seed: int | None = None


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fc_magic", "sandbox")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fc-magic-sandbox"
    # Small requests and answers back to back: Nagle's algorithm would hold
    # the second segment for the peer's delayed ACK.
    disable_nagle_algorithm = True
    sandbox: "Sandbox"  # set on the subclass made per server

    def log_message(self, fmt, *args):  # method and path only; never bodies
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), fmt % args)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        try:
            body = self._body()
            reply = self.sandbox.dispatch(self.command, self.path, self.headers, body)
        except Exception as exc:  # a sandbox bug must not hang the client
            logger.exception("sandbox error on %s %s", self.command, self.path.split("?")[0])
            reply = fc_error(500, "InternalError", f"sandbox error: {type(exc).__name__}")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not any(k.lower() == "content-length" for k in reply.headers):
            self.send_header("Content-Length", str(len(reply.body)))
        # Headers and body in one write (end_headers would send them apart).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and reply.body:
            self._headers_buffer.append(reply.body)
        self.flush_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that can sever its open connections.

    shutdown() only stops accepting: kept-alive connections (oss2 and the FC
    SDK reuse theirs) would go on being served, so a "stopped" sandbox would
    still answer. A service that goes away drops its connections too.
    """

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request_thread(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def sever(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Sandbox:
    """A local Function Compute + OSS on 127.0.0.1, with its own AccessKey pair.

    Use it as a context manager (``with Sandbox() as sb: ...``) or call
    `start` / `stop`. ``concurrency`` caps how many instances run at once.
    """

    def __init__(self, *, concurrency: int = 4, region: str = "cn-hangzhou",
                 faults: Faults | None = None, cache_dir: str | None = None,
                 work_dir: str | None = None, idle_timeout_s: float = 300.0,
                 port: int = 0, access_key_secret: str | None = None):
        self.region = region
        self.faults = faults or Faults()
        self.concurrency = concurrency
        self.cache_dir = cache_dir or default_cache_dir()
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="fc-sandbox-")
        self.idle_timeout_s = idle_timeout_s
        alphabet = string.ascii_letters + string.digits
        self.access_key_id = "LTAI" + "".join(secrets.choice(alphabet) for _ in range(20))
        # A given secret lets a test scan every output for a known string.
        self.access_key_secret = access_key_secret or "".join(
            secrets.choice(alphabet) for _ in range(30))
        self.account_id = str(secrets.randbelow(9 * 10**15) + 10**15)
        self._keys = {self.access_key_id: self.access_key_secret}
        self._port = port
        self._rng = random.Random(self.faults.seed)
        self._rng_for = self.faults
        self._rng_lock = threading.Lock()
        self.faults_injected = 0
        self.store = ObjectStore(region)
        self.executor: Executor | None = None
        self.functions: FunctionService | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Sandbox":
        self.executor = Executor(self.concurrency, self.cache_dir,
                                 os.path.join(self.work_dir, "instances"), self.idle_timeout_s)
        os.makedirs(os.path.join(self.work_dir, "instances"), exist_ok=True)
        self.functions = FunctionService(self.store, self.executor,
                                         os.path.join(self.work_dir, "code"),
                                         self.account_id, self.region)
        # The client's own Python is the usual runtime: have its base env ready
        # before anything is deployed (built once per machine, then cached).
        # Other Pythons are prepared on first use, their functions "Pending".
        try:
            self.executor.prepare(f"python{sys.version_info[0]}.{sys.version_info[1]}").result()
        except Exception:
            self.executor.stop()
            raise
        handler = type("Handler", (_Handler,), {"sandbox": self})
        server = _Server(("127.0.0.1", self._port), handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        name="fc-sandbox-http")
        self._thread.start()
        logger.info("FC sandbox listening on %s", self.endpoint)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.sever()
            self._server = None
        if self.executor is not None:
            self.executor.stop()
        if self.functions is not None:
            self.functions.close()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start()")
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}"

    # --------------------------------------------------------------- config
    def lithops_config(self, bucket: str = DEFAULT_BUCKET) -> dict:
        """The Lithops config (plus fc_magic's endpoint keys) for this sandbox."""
        return {
            # Listing the loopback store is cheap: poll it more often than OSS.
            "lithops": {"backend": "aliyun_fc", "storage": "aliyun_oss",
                        "monitoring_interval": 0.5},
            "aliyun": {"account_id": self.account_id, "access_key_id": self.access_key_id,
                       "access_key_secret": self.access_key_secret, "region": self.region},
            "aliyun_fc": {"role_arn": f"acs:ram::{self.account_id}:role/fc-sandbox",
                          "endpoint": self.endpoint},
            "aliyun_oss": {"storage_bucket": bucket, "endpoint": self.host},
        }

    def config_yaml(self, bucket: str = DEFAULT_BUCKET) -> str:
        import yaml

        return yaml.safe_dump(self.lithops_config(bucket), sort_keys=False)

    # ------------------------------------------------------------- requests
    def _fault(self) -> Reply | None:
        faults = self.faults
        if not (faults.throttle_rate or faults.error_rate):
            return None
        with self._rng_lock:
            if faults is not self._rng_for:  # new settings: restart their sequence
                self._rng, self._rng_for = random.Random(faults.seed), faults
            roll = self._rng.random()
        if roll < faults.throttle_rate:
            self.faults_injected += 1
            return fc_error(429, "ResourceThrottled", "Reserve resource exceeded limit "
                            "(injected by the sandbox)")
        if roll < faults.throttle_rate + faults.error_rate:
            self.faults_injected += 1
            return fc_error(503, "ServiceUnavailable", "The service is temporarily "
                            "unavailable (injected by the sandbox)")
        return None

    def dispatch(self, method: str, raw: str, headers, body: bytes) -> Reply:
        path, _, raw_query = raw.partition("?")
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        query = dict(pairs)
        lower = {k.lower(): v for k, v in headers.items()}
        if path.startswith(API + "/"):
            failure = signing.check_acs3(method, path, pairs, lower, body, self._keys)
            if failure is not None:
                return fc_error(failure.status, failure.code, failure.message)
            parts = [unquote(p) for p in path[len(API) + 1:].split("/")]
            if parts[-1:] == ["invocations"]:
                fault = self._fault()
                if fault is not None:
                    return fault
            return self.functions.handle(method, parts, query, lower, body)
        bucket, _, key = path.lstrip("/").partition("/")
        bucket, key = unquote(bucket), unquote(key)
        failure = signing.check_oss_v1(method, bucket, key, pairs, lower, self._keys)
        if failure is not None:
            return oss_error(failure.status, failure.code, failure.message, method)
        return self.store.handle(method, bucket, key, query, lower, body)
