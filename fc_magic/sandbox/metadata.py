"""The ECS / PAI-DSW instance metadata service, for the RAM-role credentials chain.

What ``alibabacloud-credentials``' EcsRamRoleCredentialsProvider calls:
``PUT /latest/api/token`` (IMDSv2, header
``X-aliyun-ecs-metadata-token-ttl-seconds``), then, with the token in
``X-aliyun-ecs-metadata-token`` (or without one, IMDSv1),
``GET /latest/meta-data/ram/security-credentials/`` (the role's name) and
``GET .../security-credentials/<role>`` (its temporary credentials, as JSON
with ``Code: Success``). The credentials are the sandbox's own STS
credentials, accepted by its FC and OSS until they expire.

The library hard-codes the address ``100.100.100.200`` (no setting or
variable changes it); its one supported redirection is an HTTP proxy
(``HttpOptions(proxy=...)`` or ``HTTP_PROXY``). So the sandbox also answers
as that proxy: a request for ``http://100.100.100.200/...`` reaching its
port is served here (`server._Handler` routes it).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field

from .oss import Reply

METADATA_HOST = "100.100.100.200"
TOKEN_PATH = "/latest/api/token"
ROLES_PATH = "/latest/meta-data/ram/security-credentials/"
TOKEN_TTL_HEADER = "x-aliyun-ecs-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aliyun-ecs-metadata-token"
#: ECS accepts token lifetimes of 1 s to 6 h.
MAX_TOKEN_TTL_S = 21600


def _text(status: int, text: str) -> Reply:
    return Reply(status, {"Content-Type": "text/plain"}, text.encode())


@dataclass
class MetadataService:
    """The instance's RAM role (``role`` "", none attached) and the IMDSv2 tokens issued."""

    issue: object                 # callable(ttl_s) -> signing.Temporary
    ttl_s: float = 3600.0
    role: str = ""
    _tokens: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Credentials handed out (tests check a chain really used this source).
    served: int = 0

    def answer(self, method: str, path: str, headers: dict) -> Reply:
        """Serve one metadata request (``headers`` with lower-case names)."""
        if path == TOKEN_PATH:
            if method != "PUT":
                return _text(405, "Method Not Allowed")
            try:
                ttl = int(headers.get(TOKEN_TTL_HEADER, ""))
            except ValueError:
                return _text(400, "Bad Request: the token TTL header is missing")
            if not 1 <= ttl <= MAX_TOKEN_TTL_S:
                return _text(400, "Bad Request: the token TTL must be 1..21600 seconds")
            token = secrets.token_urlsafe(32)
            with self._lock:
                now = time.time()
                for old in [t for t, until in self._tokens.items() if until < now]:
                    del self._tokens[old]
                self._tokens[token] = now + ttl
            return _text(200, token)
        if method != "GET" or not path.startswith(ROLES_PATH):
            return _text(404, "Not Found")
        token = headers.get(TOKEN_HEADER)
        if token is not None:
            with self._lock:
                until = self._tokens.get(token)
            if until is None or until < time.time():
                return _text(401, "Unauthorized: invalid or expired metadata token")
        name = path[len(ROLES_PATH):]
        if not self.role or name not in ("", self.role):
            return _text(404, "Not Found")
        if not name:
            return _text(200, self.role)
        creds = self.issue(self.ttl_s)
        self.served += 1
        body = {"Code": "Success", **creds.as_sts(),
                "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
