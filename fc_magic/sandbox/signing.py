"""Request signature checks, as Function Compute and OSS do them.

The sandbox holds one generated AccessKey pair; every request must be signed
with it, so a wrong key or secret is refused here exactly where the real
service would refuse it (FC: ACS3-HMAC-SHA256 over a canonical request;
OSS: signature V1, HMAC-SHA1 over verb, MD5, type, date, x-oss-* headers and
the canonical resource). Both services refuse a request dated more than 15
minutes away from their clock; FC also refuses a signature nonce it has seen
(the tea SDK sends a fresh ``x-acs-signature-nonce`` on every attempt) and a
signature that leaves ``host`` or an ``x-acs-*`` header unsigned. OSS V1 has
no nonce, so OSS, like the real service, accepts a replay inside the window.

The checks only read headers: the server runs them before it reads a body,
so a request without credentials never costs more than its headers. ACS3
signs the body's SHA-256 as a header; `check_acs3_body` compares it once the
body is in. Nothing here logs a signature or a secret.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import logging
import secrets
import string
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import parsedate_tz, mktime_tz
from urllib.parse import quote

logger = logging.getLogger(__name__)

#: How far a request's date may be from the service's clock, both ways.
MAX_SKEW_S = 15 * 60
#: ACS3 headers that must be among the signed ones (with every x-acs-* sent).
ACS3_REQUIRED_SIGNED = ("host", "x-acs-date", "x-acs-content-sha256", "x-acs-signature-nonce")


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was refused, in the service's own words."""

    status: int
    code: str
    message: str


class NonceLedger:
    """Signature nonces seen in the last window, to refuse an exact replay.

    A nonce is remembered until its request's date leaves the 15-minute
    window (after that the date check refuses it anyway), so the ledger
    holds at most one window of signed requests.
    """

    def __init__(self, window_s: float = MAX_SKEW_S):
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> forget after

    def first_use(self, nonce: str, request_time: float, now: float) -> bool:
        with self._lock:
            while self._seen:
                oldest, until = next(iter(self._seen.items()))
                if until > now:
                    break
                del self._seen[oldest]
            if nonce in self._seen:
                return False
            self._seen[nonce] = max(request_time, now) + self.window_s
            return True

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class Temporary:
    """STS-style temporary credentials: valid only with their token, only until they expire."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expiration: float
    role: str = ""

    def as_sts(self) -> dict:
        """The fields as STS AssumeRole / the ECS metadata service answer them."""
        return {"AccessKeyId": self.access_key_id, "AccessKeySecret": self.access_key_secret,
                "SecurityToken": self.security_token,
                "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expiration))}


class KeyRing:
    """The sandbox's AccessKeys: its permanent pair plus the temporary ones it issued.

    ``get`` gives the secret of a known id (as a dict would); `token_problem`
    says what is wrong with the token a request presented for that id.
    Expired temporary keys are forgotten a while after they expire.
    """

    def __init__(self, access_key_id: str, secret: str):
        self._permanent = {access_key_id: secret}
        self._temporary: dict[str, Temporary] = {}
        self._lock = threading.Lock()
        self.issued = 0
        #: Ids of functions' role credentials that signed a valid request.
        self.role_keys_used: set[str] = set()

    def issue(self, ttl_s: float, role: str = "") -> Temporary:
        alphabet = string.ascii_letters + string.digits
        now = time.time()
        creds = Temporary("STS." + "".join(secrets.choice(alphabet) for _ in range(24)),
                          "".join(secrets.choice(alphabet) for _ in range(40)),
                          "CAIS" + "".join(secrets.choice(alphabet) for _ in range(120)),
                          now + ttl_s, role)
        with self._lock:
            for key in [k for k, t in self._temporary.items() if t.expiration < now - 2 * MAX_SKEW_S]:
                del self._temporary[key]
            self._temporary[creds.access_key_id] = creds
            self.issued += 1
        return creds

    def get(self, access_key_id: str) -> str | None:
        if access_key_id in self._permanent:
            return self._permanent[access_key_id]
        with self._lock:
            creds = self._temporary.get(access_key_id)
        return creds.access_key_secret if creds is not None else None

    def role_of(self, access_key_id: str) -> str:
        """The role a temporary key was issued for ("client" for clients, "" if not temporary)."""
        with self._lock:
            creds = self._temporary.get(access_key_id)
        return creds.role if creds is not None else ""

    def token_problem(self, access_key_id: str, token: str, now: float) -> str | None:
        """None, or "missing" / "invalid" / "expired" for the presented token."""
        if access_key_id in self._permanent:
            return "invalid" if token else None
        with self._lock:
            creds = self._temporary.get(access_key_id)
        if creds is None:
            return "invalid"
        if not token:
            return "missing"
        if not hmac.compare_digest(token, creds.security_token):
            return "invalid"
        if now >= creds.expiration:
            return "expired"
        if creds.role != "client":
            with self._lock:
                self.role_keys_used.add(access_key_id)
        return None


_FC_TOKEN_ERRORS = {
    "missing": (403, "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is malformed: an STS AccessKey needs its token."),
    "invalid": (403, "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey."),
    "expired": (403, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."),
}
_OSS_TOKEN_ERRORS = {
    "missing": (403, "InvalidAccessKeyId", "The security token you provided is invalid."),
    "invalid": (403, "InvalidAccessKeyId", "The security token you provided is invalid."),
    "expired": (403, "SecurityTokenExpired", "The security token you provided has expired."),
}


def _token_failure(keys, access_key_id: str, token: str, now: float,
                   errors: dict) -> AuthFailure | None:
    check = getattr(keys, "token_problem", None)
    problem = check(access_key_id, token, now) if check is not None else None
    return AuthFailure(*errors[problem]) if problem else None


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    # The SDK signs its query dict sorted by key, values quoted with only '~' safe.
    return "&".join(f"{k}={quote(v, safe='~')}" for k, v in sorted(pairs))


def _acs3_time(value: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def check_acs3(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
               keys: dict[str, str], nonces: NonceLedger,
               now: float | None = None) -> AuthFailure | None:
    """Verify the headers of an FC request signed ACS3-HMAC-SHA256; None when good.

    ``headers`` maps lower-case names to values as received. The signature
    covers ``x-acs-content-sha256`` as sent: the caller checks the body
    against it with `check_acs3_body` after reading it.
    """
    now = time.time() if now is None else now
    auth = headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        return AuthFailure(403, "InvalidAuthorization",
                           "the Authorization header is missing or not ACS3-HMAC-SHA256")
    if not auth.isascii():
        return AuthFailure(400, "InvalidAuthorization",
                           "the Authorization header holds characters that are not ASCII")
    fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
    access_key_id = fields.get("Credential", "")
    secret = keys.get(access_key_id)
    if secret is None:
        return AuthFailure(403, "InvalidAccessKeyId.NotFound",
                           "Specified access key is not found.")
    signed = fields.get("SignedHeaders", "").split(";")
    unsigned = [h for h in ACS3_REQUIRED_SIGNED if h not in signed]
    unsigned += sorted(h for h in headers if h.startswith("x-acs-") and h not in signed)
    if unsigned:
        return AuthFailure(400, "InvalidAuthorization",
                           f"SignedHeaders must include {', '.join(unsigned)}")
    payload_hash = headers.get("x-acs-content-sha256", "")
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    canonical_request = "\n".join([method, path, _canonical_query(query), canonical_headers,
                                   ";".join(signed), payload_hash])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return AuthFailure(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the "
                           "signature you provided. Check your AccessKey secret.")
    request_time = _acs3_time(headers.get("x-acs-date", ""))
    if request_time is None:
        return AuthFailure(400, "InvalidTimeStamp.Format",
                           "x-acs-date must be an ISO 8601 UTC time such as "
                           "2024-01-01T00:00:00Z")
    if abs(now - request_time) > MAX_SKEW_S:
        return AuthFailure(400, "InvalidTimeStamp.Expired",
                           "Specified time stamp or date value is expired: it is more than "
                           "15 minutes away from the server's time.")
    failure = _token_failure(keys, access_key_id, headers.get("x-acs-security-token", ""),
                             now, _FC_TOKEN_ERRORS)
    if failure is not None:
        return failure
    nonce = headers.get("x-acs-signature-nonce", "")
    if not nonces.first_use(nonce, request_time, now):
        return AuthFailure(400, "SignatureNonceUsed",
                           "Specified signature nonce was used already.")
    return None


def check_acs3_body(headers: dict[str, str], sha256_hex: str) -> AuthFailure | None:
    """The body against the signed ``x-acs-content-sha256``; None when they match."""
    if not hmac.compare_digest(headers.get("x-acs-content-sha256", ""), sha256_hex):
        return AuthFailure(403, "InvalidArgument",
                           "x-acs-content-sha256 does not match the request body")
    return None


#: Query parameters that OSS signs as sub-resources (the ones oss2 sends us).
OSS_SUBRESOURCES = frozenset({"acl", "bucketInfo", "delete", "location", "uploads", "uploadId",
                              "partNumber", "append", "position", "objectMeta", "stat",
                              "tagging", "versioning", "versionId", "versions", "x-oss-process"})


def _http_time(value: str) -> float | None:
    parsed = parsedate_tz(value) if value else None
    if parsed is None:
        return None
    try:
        return float(mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def check_oss_v1(method: str, bucket: str, key: str, query: list[tuple[str, str]],
                 headers: dict[str, str], keys: dict[str, str],
                 now: float | None = None) -> AuthFailure | None:
    """Verify an OSS request signed with signature V1; None when it is good.

    V1 signs the Content-MD5 header, not the body, so this needs headers only.
    """
    now = time.time() if now is None else now
    auth = headers.get("authorization", "")
    if not auth.startswith("OSS "):
        return AuthFailure(403, "AccessDenied", "Anonymous access is forbidden for this operation.")
    access_key_id, colon, signature = auth[4:].partition(":")
    if not colon or not auth.isascii():
        return AuthFailure(400, "InvalidArgument", "Authorization header is invalid.")
    try:
        base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return AuthFailure(400, "InvalidArgument", "Authorization header is invalid.")
    secret = keys.get(access_key_id)
    if secret is None:
        return AuthFailure(403, "InvalidAccessKeyId",
                           "The OSS Access Key Id you provided does not exist in our records.")
    date = headers.get("x-oss-date") or headers.get("date", "")
    request_time = _http_time(date)
    if request_time is None:
        return AuthFailure(403, "AccessDenied", "OSS authentication requires a valid Date.")
    oss_headers = sorted((k, v) for k, v in headers.items() if k.startswith("x-oss-"))
    header_part = "".join(f"{k}:{v}\n" for k, v in oss_headers)
    sub = sorted((k, v) for k, v in query if k in OSS_SUBRESOURCES)
    resource = f"/{bucket}/{key}" if bucket else "/"
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    to_sign = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""),
                         date, header_part + resource])
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(),
                                         hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        return AuthFailure(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the "
                           "signature you provided. Check your key and signing method.")
    if abs(now - request_time) > MAX_SKEW_S:
        return AuthFailure(403, "RequestTimeTooSkewed",
                           "The difference between the request time and the current time "
                           "is too large.")
    return _token_failure(keys, access_key_id, headers.get("x-oss-security-token", ""), now,
                          _OSS_TOKEN_ERRORS)
