"""The loopback server: FC and OSS on one 127.0.0.1 port, and the `Sandbox` handle.

Requests under ``/2023-03-30/`` are Function Compute calls (ACS3 signatures);
everything else is path-style OSS (V1 signatures). The sandbox generates its
own AccessKey pair and account id; `Sandbox.lithops_config()` is the matching
Lithops configuration. Faults (throttling and transient 5xx on invocations)
can be switched on at any time for reliability tests.

Defences, so that a client without the AccessKey cannot exhaust it: the
signature headers are checked before a body is read (the body is then read
bounded by the call's own limit, FC's payload limits or OSS's object size,
and large ones go to disk); a malformed length is a 400; connections are
served by a bounded number of threads and closed when idle; a malformed
request gets the service's own 400, never a 500.
"""
from __future__ import annotations

import contextlib
import json
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
from urllib.parse import parse_qsl, unquote, urlsplit

from . import signing
from .body import Body, BodyError, ClientGone, declared_length, read_body
from .execution import Executor
from .fc import API, FunctionService, body_limit, fc_error
from .metadata import METADATA_HOST, MetadataService
from .oss import FileSlice, ObjectStore, Reply, oss_error

logger = logging.getLogger(__name__)

DEFAULT_BUCKET = "lithops-sandbox"
#: Where the sandbox hands out temporary credentials (a credentials URI; loopback only).
CREDENTIALS_PATH = "/.sandbox/sts-credentials"
#: OSS's own limit for one PutObject.
MAX_OBJECT_BYTES = 5 * 2**30
#: Bodies of OSS calls other than PutObject (bucket XML, batch delete lists).
MAX_OSS_OTHER_BODY = 2 * 2**20
#: Instances that may run at once by default. FC runs a function on as many
#: instances as there are concurrent invocations (up to a regional quota of
#: hundreds); a cap of 4 made a task that starts its own map wait for a slot
#: its parent holds until the timeout. A waiting instance costs memory (about
#: 40 MB), not CPU, so 32 let nested maps of up to 31 outer tasks run on 2 cores.
DEFAULT_CONCURRENCY = 32
#: Connections served at once; more wait in the listen backlog. Sized for
#: DEFAULT_CONCURRENCY busy instances (each one's handler and its task
#: process keep an OSS connection) plus a kernel's pooled FC and OSS
#: connections, which stay open until idle: at 64, a suite of maps on one
#: sandbox left ~47 open, and the next map's workers waited past their timeouts.
MAX_CONNECTIONS = 256
#: A connection that sends nothing for this long is closed (its thread freed).
CONNECTION_IDLE_S = 30.0
SEND_PIECE = 2**20


@dataclass
class Request:
    """What the server knows of a request before reading its body."""

    method: str
    path: str
    pairs: list
    headers: dict        # lower-case names
    fc: bool             # Function Compute (JSON errors) or OSS (XML errors)
    parts: list          # FC: path after /2023-03-30, split on "/"
    bucket: str = ""
    key: str = ""

    @property
    def query(self) -> dict:
        return dict(self.pairs)

    def error(self, status: int, code: str, message: str) -> Reply:
        if self.fc:
            return fc_error(status, code, message)
        return oss_error(status, code, message, self.method)


def api_name(request: Request) -> str:
    """The FC or OSS API a request calls, as the services' docs name it."""
    if request.fc:
        parts, method = request.parts, request.method
        if parts[-1:] == ["invocations"]:
            return "InvokeFunction"
        if parts == ["functions"]:
            return "CreateFunction" if method == "POST" else "ListFunctions"
        return {"GET": "GetFunction", "DELETE": "DeleteFunction",
                "PUT": "UpdateFunction"}.get(method, f"FC {method}")
    if not request.key:
        if request.method == "POST" and "delete" in request.query:
            return "DeleteMultipleObjects"
        return {"GET": "ListObjects" if request.bucket else "ListBuckets",
                "PUT": "PutBucket", "DELETE": "DeleteBucket"}.get(request.method,
                                                                  f"OSS {request.method}")
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
            "DELETE": "DeleteObject"}.get(request.method, f"OSS {request.method}")


class Traffic:
    """Request bytes the sandbox received, per API and per object key (for upload tests)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.by_api: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._puts: dict[str, int] = {}
        #: GetObject calls per "bucket/key" (what a client downloaded).
        self.reads: dict[str, int] = {}

    def add(self, request: Request, size: int) -> None:
        api = api_name(request)
        with self._lock:
            self.by_api[api] = self.by_api.get(api, 0) + size
            self.calls[api] = self.calls.get(api, 0) + 1
            where = f"{request.bucket}/{request.key}"
            if api == "PutObject":
                self._puts[where] = self._puts.get(where, 0) + size
            elif api == "GetObject":
                self.reads[where] = self.reads.get(where, 0) + 1

    def put_bytes(self, prefix: str = "") -> int:
        """Bytes of PutObject bodies whose "bucket/key" starts with ``prefix``."""
        with self._lock:
            return sum(n for where, n in self._puts.items() if where.startswith(prefix))


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

    def _serve(self) -> None:
        sandbox = self.sandbox
        if self.path.startswith("http://"):
            # Proxy form: the credentials library reaches the ECS metadata
            # service only through a proxy, and then sends everything else
            # (this sandbox's FC and OSS calls) through it too.
            parsed = urlsplit(self.path)
            self.path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
            if parsed.hostname == METADATA_HOST:
                lower = {k.lower(): v for k, v in self.headers.items()}
                self._send(sandbox.metadata.answer(self.command, parsed.path, lower))
                return
            if parsed.hostname not in ("127.0.0.1", "localhost"):
                self.close_connection = True
                self._send(Reply(502, {"Connection": "close"},
                                 b"the sandbox proxies only itself and the ECS metadata "
                                 b"service"))
                return
        if self.command == "GET" and self.path == CREDENTIALS_PATH:
            # As a credentials URI answers (alibabacloud-credentials' URLCredentialsProvider).
            answer = {"Code": "Success", **sandbox.issue_sts()}
            self._send(Reply(200, {"Content-Type": "application/json"},
                             json.dumps(answer).encode()))
            return
        request = sandbox.parse(self.command, self.path, self.headers)
        body: Body | None = None
        try:
            length = declared_length(self.headers)
            failure = sandbox.authenticate(request)
            if failure is not None:
                reply = request.error(failure.status, failure.code, failure.message)
            else:
                limit = sandbox.body_limit(request)
                body = read_body(self.rfile, length, limit, sandbox.body_dir)
                sandbox.traffic.add(request, body.size)
                reply = sandbox.dispatch(request, body)
        except BodyError as exc:
            reply = request.error(exc.status, exc.code, exc.message)
        except ClientGone as exc:
            logger.debug("client left in the middle of a body (%s)", exc)
            self.close_connection = True
            return
        except Exception as exc:  # a sandbox bug must not hang the client
            logger.exception("sandbox error on %s %s", self.command, self.path.split("?")[0])
            reply = request.error(500, "InternalError", f"sandbox error: {type(exc).__name__}")
        finally:
            if body is not None:
                body.discard()
        if body is None:
            # Answered without reading the body: what follows on the
            # connection is not a request, so it must not be read as one.
            self.close_connection = True
            reply.headers["Connection"] = "close"
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = reply.body
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if not any(k.lower() == "content-length" for k in reply.headers):
                self.send_header("Content-Length", str(len(payload)))
            # Headers and a small body in one write (end_headers sends them apart).
            self._headers_buffer.append(b"\r\n")
            if self.command != "HEAD" and isinstance(payload, bytes) and payload:
                self._headers_buffer.append(payload)
            self.flush_headers()
            if self.command != "HEAD" and isinstance(payload, FileSlice):
                self._send_file(payload)
        finally:
            if isinstance(payload, FileSlice):
                payload.file.close()

    def _send_file(self, part: FileSlice) -> None:
        part.file.seek(part.start)
        left = part.length
        while left:
            piece = part.file.read(min(left, SEND_PIECE))
            if not piece:  # the file shrank: the promised length cannot be kept
                self.close_connection = True
                return
            self.wfile.write(piece)
            left -= len(piece)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that can sever its open connections.

    shutdown() only stops accepting: kept-alive connections (oss2 and the FC
    SDK reuse theirs) would go on being served, so a "stopped" sandbox would
    still answer. A service that goes away drops its connections too.
    """

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, **kwargs):
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        # One thread per connection, at most this many: the accept loop waits
        # for a free slot, and the kernel's backlog holds the connections
        # that arrive meanwhile. Idle ones time out, so slots come back.
        self._slots = threading.BoundedSemaphore(max_connections)
        self.closing = threading.Event()

    def process_request(self, request, client_address):
        while not self._slots.acquire(timeout=0.5):
            if self.closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started: nothing took the slot
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def active_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def handle_error(self, request, client_address):
        # A client that resets its connection is not the sandbox's error:
        # no traceback on stderr, the exception type at debug level.
        exc = sys.exc_info()[1]
        logger.debug("connection ended: %s", type(exc).__name__)

    def sever(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Sandbox:
    """A local Function Compute + OSS on 127.0.0.1, with its own AccessKey pair.

    Use it as a context manager (``with Sandbox() as sb: ...``) or call
    `start` / `stop`. ``concurrency`` caps how many instances run at once;
    ``max_object_bytes`` caps one OSS object (OSS's own 5 GB by default);
    ``max_connections`` and ``connection_idle_s`` bound the HTTP side;
    ``function_pending_s`` keeps a new function ``Pending`` that long, as FC
    does while it prepares one (0: Active at once, for tests that invoke
    straight after creating). ``instance_role`` names the client machine's
    RAM role that the emulated ECS metadata service serves (`metadata`;
    reached with ``HTTP_PROXY`` = `metadata_proxy`). ``isolate=False`` runs
    instances without a filesystem and PID namespace of their own even where
    the machine allows them (they then see the client's files and processes).
    """

    def __init__(self, *, concurrency: int = DEFAULT_CONCURRENCY, region: str = "cn-hangzhou",
                 faults: Faults | None = None, cache_dir: str | None = None,
                 work_dir: str | None = None, idle_timeout_s: float = 300.0,
                 port: int = 0, access_key_secret: str | None = None,
                 max_object_bytes: int = MAX_OBJECT_BYTES,
                 max_connections: int = MAX_CONNECTIONS,
                 connection_idle_s: float = CONNECTION_IDLE_S,
                 function_pending_s: float = 0.0,
                 sts_ttl_s: float = 3600.0, role_ttl_s: float = 3600.0,
                 keep_payloads: bool = False, instance_role: str = "",
                 isolate: bool = True):
        self.region = region
        self.function_pending_s = function_pending_s
        #: Lifetime of the temporary credentials issued to clients (`issue_sts`,
        #: the credentials URI) and to functions' roles (context.credentials).
        self.sts_ttl_s = sts_ttl_s
        self.role_ttl_s = role_ttl_s
        self.keep_payloads = keep_payloads
        #: Give instances a filesystem of their own where the machine allows it.
        self.isolate = isolate
        self.max_object_bytes = max_object_bytes
        self.max_connections = max_connections
        self.connection_idle_s = connection_idle_s
        self.nonces = signing.NonceLedger()
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
        self._keys = signing.KeyRing(self.access_key_id, self.access_key_secret)
        #: Function roles (ARNs) whose RAM policy grants no OSS access: OSS refuses
        #: their credentials with 403 AccessDenied (a role FC may assume, but useless).
        self.roles_without_oss: set[str] = set()
        #: Function roles FC may not assume (their trust policy does not name
        #: fc.aliyuncs.com): invocations get no ``context.credentials``.
        self.roles_fc_cannot_assume: set[str] = set()
        #: The emulated ECS metadata service: the client machine's instance RAM role
        #: (``instance_role``; "" none), reached through the sandbox as HTTP proxy.
        self.metadata = MetadataService(self._issue_instance_role, self.sts_ttl_s,
                                        instance_role)
        #: Temporary credentials handed out: to clients, and to functions' roles.
        self.client_tokens: list[signing.Temporary] = []
        self.role_tokens = 0
        self._port = port
        self._rng = random.Random(self.faults.seed)
        self._rng_for = self.faults
        self._rng_lock = threading.Lock()
        self.faults_injected = 0
        #: Request bytes received per API (``traffic.by_api["PutObject"]``).
        self.traffic = Traffic()
        self.body_dir = os.path.join(self.work_dir, "bodies")
        self.store = ObjectStore(region, self.body_dir)
        self.executor: Executor | None = None
        self.functions: FunctionService | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Sandbox":
        self.executor = Executor(self.concurrency, self.cache_dir,
                                 os.path.join(self.work_dir, "instances"), self.idle_timeout_s,
                                 role_credentials=self._role_credentials,
                                 isolate=self.isolate)
        os.makedirs(os.path.join(self.work_dir, "instances"), exist_ok=True)
        self.functions = FunctionService(self.store, self.executor,
                                         os.path.join(self.work_dir, "code"),
                                         self.account_id, self.region,
                                         pending_s=self.function_pending_s)
        if self.keep_payloads:
            self.functions.payloads = []
        # The client's own Python is the usual runtime: have its base env ready
        # before anything is deployed (built once per machine, then cached).
        # Other Pythons are prepared on first use, their functions "Pending".
        try:
            self.executor.prepare(f"python{sys.version_info[0]}.{sys.version_info[1]}").result()
        except Exception:
            self.executor.stop()
            raise
        handler = type("Handler", (_Handler,), {"sandbox": self,
                                                 "timeout": self.connection_idle_s})
        server = _Server(("127.0.0.1", self._port), handler,
                         max_connections=self.max_connections)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        name="fc-sandbox-http")
        self._thread.start()
        logger.info("FC sandbox listening on %s", self.endpoint)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.closing.set()
            self._server.shutdown()
            self._server.server_close()
            self._server.sever()
            self._server = None
        if self.executor is not None:
            self.executor.stop()
        if self.functions is not None:
            self.functions.close()
        self.store.close()
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
            # Plain HTTP, said outright: this service is on loopback only.
            "aliyun_oss": {"storage_bucket": bucket, "endpoint": self.endpoint},
        }

    def issue_sts(self, ttl_s: float | None = None) -> dict:
        """Temporary credentials for a client, as STS AssumeRole answers them.

        Accepted by FC and OSS only with their ``SecurityToken`` and only
        until ``Expiration``; refused then with the services' own codes.
        """
        creds = self._keys.issue(self.sts_ttl_s if ttl_s is None else ttl_s, "client")
        self.client_tokens.append(creds)
        return creds.as_sts()

    def _issue_instance_role(self, ttl_s: float) -> signing.Temporary:
        creds = self._keys.issue(ttl_s, "client")
        self.client_tokens.append(creds)
        return creds

    @property
    def metadata_proxy(self) -> str:
        """``HTTP_PROXY`` that sends the credentials library's ECS metadata calls here."""
        return self.endpoint

    @property
    def credentials_uri(self) -> str:
        """A URL serving `issue_sts` answers, for ``ALIBABA_CLOUD_CREDENTIALS_URI``."""
        return f"{self.endpoint}{CREDENTIALS_PATH}"

    @property
    def role_keys_used(self) -> int:
        """How many functions' role credentials have signed a request the sandbox accepted."""
        return len(self._keys.role_keys_used)

    def _role_credentials(self, role: str) -> dict | None:
        """A function role's credentials for one invocation (FC's ``context.credentials``)."""
        if role in self.roles_fc_cannot_assume:
            return None
        self.role_tokens += 1
        return self._keys.issue(self.role_ttl_s, role).as_sts()

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

    @staticmethod
    def parse(method: str, raw: str, headers) -> Request:
        """A request line and headers, as the FC or the OSS side sees them."""
        path, _, raw_query = raw.partition("?")
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        lower = {k.lower(): v for k, v in headers.items()}
        if path.startswith(API + "/"):
            parts = [unquote(p) for p in path[len(API) + 1:].split("/")]
            return Request(method, path, pairs, lower, True, parts)
        bucket, _, key = path.lstrip("/").partition("/")
        return Request(method, path, pairs, lower, False, [], unquote(bucket), unquote(key))

    def authenticate(self, request: Request) -> signing.AuthFailure | None:
        """The signature check on headers alone, before any body is read."""
        if request.fc:
            return signing.check_acs3(request.method, request.path, request.pairs,
                                      request.headers, self._keys, self.nonces)
        failure = signing.check_oss_v1(request.method, request.bucket, request.key,
                                       request.pairs, request.headers, self._keys)
        if failure is None and self.roles_without_oss:
            # A function role whose RAM policy does not cover OSS: OSS's own refusal.
            key_id = request.headers.get("authorization", "")[4:].partition(":")[0]
            if self._keys.role_of(key_id) in self.roles_without_oss:
                return signing.AuthFailure(403, "AccessDenied", "You have no right to access "
                                           "this object because of bucket acl.")
        return failure

    def body_limit(self, request: Request) -> int:
        if request.fc:
            return body_limit(request.method, request.parts, request.headers)
        if request.method == "PUT" and request.key:
            return self.max_object_bytes
        return MAX_OSS_OTHER_BODY

    def dispatch(self, request: Request, body: Body) -> Reply:
        """Serve an authenticated request whose body has been read."""
        if request.fc:
            failure = signing.check_acs3_body(request.headers, body.sha256)
            if failure is not None:
                return fc_error(failure.status, failure.code, failure.message)
            if request.parts[-1:] == ["invocations"]:
                fault = self._fault()
                if fault is not None:
                    return fault
            return self.functions.handle(request.method, request.parts, request.query,
                                         request.headers, body.bytes())
        return self.store.handle(request.method, request.bucket, request.key, request.query,
                                 request.headers, body)
