"""Request signature checks, as Function Compute and OSS do them.

The sandbox holds one generated AccessKey pair; every request must be signed
with it, so a wrong key or secret is refused here exactly where the real
service would refuse it (FC: ACS3-HMAC-SHA256 over a canonical request;
OSS: signature V1, HMAC-SHA1 over verb, MD5, type, date, x-oss-* headers and
the canonical resource). Nothing here logs a signature or a secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from urllib.parse import quote

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was refused, in the service's own words."""

    status: int
    code: str
    message: str


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    # The SDK signs its query dict sorted by key, values quoted with only '~' safe.
    return "&".join(f"{k}={quote(v, safe='~')}" for k, v in sorted(pairs))


def check_acs3(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
               body: bytes, keys: dict[str, str]) -> AuthFailure | None:
    """Verify an FC request signed ACS3-HMAC-SHA256; None when it is good.

    ``headers`` maps lower-case names to values as received.
    """
    auth = headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "ACS3-HMAC-SHA256":
        return AuthFailure(403, "InvalidAuthorization",
                           "the Authorization header is missing or not ACS3-HMAC-SHA256")
    fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
    access_key_id = fields.get("Credential", "")
    secret = keys.get(access_key_id)
    if secret is None:
        return AuthFailure(403, "InvalidAccessKeyId.NotFound",
                           "Specified access key is not found.")
    payload_hash = headers.get("x-acs-content-sha256", "")
    if payload_hash != hashlib.sha256(body).hexdigest():
        return AuthFailure(403, "InvalidArgument",
                           "x-acs-content-sha256 does not match the request body")
    signed = fields.get("SignedHeaders", "").split(";")
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    canonical_request = "\n".join([method, path, _canonical_query(query), canonical_headers,
                                   ";".join(signed), payload_hash])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return AuthFailure(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the "
                           "signature you provided. Check your AccessKey secret.")
    return None


#: Query parameters that OSS signs as sub-resources (the ones oss2 sends us).
OSS_SUBRESOURCES = frozenset({"acl", "bucketInfo", "delete", "location", "uploads", "uploadId",
                              "partNumber", "append", "position", "objectMeta", "stat",
                              "tagging", "versioning", "versionId", "versions", "x-oss-process"})


def check_oss_v1(method: str, bucket: str, key: str, query: list[tuple[str, str]],
                 headers: dict[str, str], keys: dict[str, str]) -> AuthFailure | None:
    """Verify an OSS request signed with signature V1; None when it is good."""
    auth = headers.get("authorization", "")
    if not auth.startswith("OSS "):
        return AuthFailure(403, "AccessDenied", "Anonymous access is forbidden for this operation.")
    access_key_id, _, signature = auth[4:].partition(":")
    secret = keys.get(access_key_id)
    if secret is None:
        return AuthFailure(403, "InvalidAccessKeyId",
                           "The OSS Access Key Id you provided does not exist in our records.")
    oss_headers = sorted((k, v) for k, v in headers.items() if k.startswith("x-oss-"))
    header_part = "".join(f"{k}:{v}\n" for k, v in oss_headers)
    sub = sorted((k, v) for k, v in query if k in OSS_SUBRESOURCES)
    resource = f"/{bucket}/{key}" if bucket else "/"
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    date = headers.get("x-oss-date") or headers.get("date", "")
    to_sign = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""),
                         date, header_part + resource])
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(),
                                         hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        return AuthFailure(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the "
                           "signature you provided. Check your key and signing method.")
    return None
