"""The part of the OSS API that Lithops' aliyun_oss backend (oss2) calls.

Buckets and objects live in memory. Listing pages the way OSS does (at most
1000 keys a page, ``IsTruncated`` and ``NextMarker``), so a client that does
not page sees exactly what it would see on the real service. Errors are OSS's
XML bodies (and, for HEAD, the base64 ``x-oss-err`` header oss2 reads).
Objects larger than the server's spill size stay in the file the body was
received into (an object may be up to OSS's 5 GB) and are sent from it.
User metadata (``x-oss-meta-*``) is kept and returned, and
``x-oss-forbid-overwrite: true`` makes a PUT onto an existing key a 409
``FileAlreadyExists``, decided under the store's lock as OSS does, so two
racing publishers leave one object.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import quote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from .body import Body

logger = logging.getLogger(__name__)

MAX_KEYS = 1000


@dataclass
class FileSlice:
    """Part of an open file, sent as a reply body without loading it into memory.

    The file is opened when the reply is made, so deleting the object at the
    same moment cannot take the data away from a GET already answered.
    """

    file: object
    start: int
    length: int

    def __len__(self) -> int:
        return self.length


@dataclass
class Reply:
    """One HTTP answer: status, headers and body."""

    status: int
    headers: dict = field(default_factory=dict)
    body: bytes | FileSlice = b""


@dataclass
class StoredObject:
    data: bytes | None     # in memory, or
    path: str | None       # in a file of the sandbox's work folder
    size: int
    etag: str
    modified: float
    content_type: str
    #: x-oss-meta-* headers as sent (lower-case names).
    meta: dict = field(default_factory=dict)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as f:
            return f.read()

    def discard(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _request_id() -> str:
    return uuid.uuid4().hex[:24].upper()


def oss_error(status: int, code: str, message: str, method: str = "GET", **extra) -> Reply:
    rid = _request_id()
    parts = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in extra.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>{rid}</RequestId>"
            f"<HostId>sandbox</HostId>{parts}</Error>").encode()
    headers = {"x-oss-request-id": rid, "Content-Type": "application/xml"}
    if method == "HEAD":
        # OSS answers HEAD with no body; oss2 reads the error from this header.
        headers["x-oss-err"] = base64.b64encode(body).decode()
        body = b""
    return Reply(status, headers, body)


class ObjectStore:
    """Thread-safe in-memory buckets, with OSS semantics for the calls Lithops makes."""

    def __init__(self, region: str, object_dir: str | None = None):
        self.region = region
        self.object_dir = object_dir
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, StoredObject]] = {}
        self._created: dict[str, float] = {}

    # Plain-Python access, used by the FC side (code packages in OSS) and tests.
    def get_bytes(self, bucket: str, key: str) -> bytes | None:
        with self._lock:
            obj = self._buckets.get(bucket, {}).get(key)
        return obj.read() if obj else None

    def object_size(self, bucket: str, key: str) -> int | None:
        with self._lock:
            obj = self._buckets.get(bucket, {}).get(key)
        return obj.size if obj else None

    def close(self) -> None:
        """Remove the files of objects kept on disk."""
        with self._lock:
            objects = [o for b in self._buckets.values() for o in b.values()]
            self._buckets.clear()
        for obj in objects:
            obj.discard()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self._buckets.get(bucket, {}) if k.startswith(prefix))

    def count(self, bucket: str, prefix: str = "") -> int:
        return len(self.keys(bucket, prefix))

    def handle(self, method: str, bucket: str, key: str, query: dict[str, str],
               headers: dict[str, str], body: Body | bytes) -> Reply:
        if isinstance(body, bytes):
            body = Body.of(body)
        if not bucket:
            return oss_error(400, "InvalidRequest", "the sandbox serves path-style bucket "
                             "requests only (use an IP endpoint)", method)
        if not key:
            return self._bucket_call(method, bucket, query, body.bytes())
        return self._object_call(method, bucket, key, headers, body)

    # -------------------------------------------------------------- buckets
    def _bucket_call(self, method: str, bucket: str, query: dict, body: bytes) -> Reply:
        with self._lock:
            exists = bucket in self._buckets
            if method == "PUT":
                if not exists:
                    self._buckets[bucket] = {}
                    self._created[bucket] = time.time()
                return Reply(200, {"x-oss-request-id": _request_id(), "Location": f"/{bucket}"})
            if not exists:
                return oss_error(404, "NoSuchBucket", "The specified bucket does not exist.",
                                 method, BucketName=bucket)
            if method == "GET" and "bucketInfo" in query:
                return self._bucket_info(bucket)
            if method == "GET":
                return self._list(bucket, query)
            if method == "POST" and "delete" in query:
                return self._batch_delete(bucket, query, body)
            if method == "DELETE":
                if self._buckets[bucket]:
                    return oss_error(409, "BucketNotEmpty", "The bucket you tried to delete "
                                     "is not empty.", method, BucketName=bucket)
                del self._buckets[bucket]
                return Reply(204, {"x-oss-request-id": _request_id()})
        return oss_error(405, "MethodNotAllowed", f"{method} is not supported on a bucket here",
                         method)

    def _bucket_info(self, bucket: str) -> Reply:
        created = _iso(self._created[bucket])
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<BucketInfo><Bucket>'
               f"<CreationDate>{created}</CreationDate>"
               f"<ExtranetEndpoint>oss-{self.region}.aliyuncs.com</ExtranetEndpoint>"
               f"<IntranetEndpoint>oss-{self.region}-internal.aliyuncs.com</IntranetEndpoint>"
               f"<Location>oss-{self.region}</Location><Name>{escape(bucket)}</Name>"
               "<StorageClass>Standard</StorageClass>"
               "<Owner><DisplayName>sandbox</DisplayName><ID>sandbox</ID></Owner>"
               "<AccessControlList><Grant>private</Grant></AccessControlList>"
               "</Bucket></BucketInfo>")
        return Reply(200, {"x-oss-request-id": _request_id(),
                           "Content-Type": "application/xml"}, xml.encode())

    def _list(self, bucket: str, query: dict) -> Reply:
        prefix = query.get("prefix", "")
        marker = query.get("marker", "")
        delimiter = query.get("delimiter", "")
        try:
            max_keys = min(int(query.get("max-keys", "100") or 100), MAX_KEYS)
        except ValueError:
            return oss_error(400, "InvalidArgument", "max-keys must be a number")
        url = query.get("encoding-type") == "url"
        enc = (lambda s: quote(s, safe="")) if url else escape
        keys = sorted(k for k in self._buckets[bucket] if k.startswith(prefix) and k > marker)
        contents, prefixes, last = [], [], ""
        truncated = False
        for k in keys:
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            if delimiter:
                cut = k.find(delimiter, len(prefix))
                if cut >= 0:
                    common = k[:cut + len(delimiter)]
                    last = k
                    if not prefixes or prefixes[-1] != common:
                        prefixes.append(common)
                    continue
            contents.append(k)
            last = k
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>',
                 f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix>",
                 f"<Marker>{enc(marker)}</Marker><MaxKeys>{max_keys}</MaxKeys>",
                 f"<Delimiter>{enc(delimiter)}</Delimiter>",
                 "<EncodingType>url</EncodingType>" if url else "",
                 f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
        if truncated:
            parts.append(f"<NextMarker>{enc(last)}</NextMarker>")
        for k in contents:
            obj = self._buckets[bucket][k]
            parts.append(f"<Contents><Key>{enc(k)}</Key><LastModified>{_iso(obj.modified)}"
                         f'</LastModified><ETag>"{obj.etag}"</ETag><Type>Normal</Type>'
                         f"<Size>{obj.size}</Size><StorageClass>Standard</StorageClass>"
                         "<Owner><ID>sandbox</ID><DisplayName>sandbox</DisplayName></Owner>"
                         "</Contents>")
        for p in prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return Reply(200, {"x-oss-request-id": _request_id(),
                           "Content-Type": "application/xml"}, "".join(parts).encode())

    def _batch_delete(self, bucket: str, query: dict, body: bytes) -> Reply:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return oss_error(400, "MalformedXML", "The XML you provided was not well-formed.")
        quiet = (root.findtext("Quiet") or "false").lower() == "true"
        keys = [node.findtext("Key") or "" for node in root.findall("Object")]
        if len(keys) > 1000:
            return oss_error(400, "MalformedXML", "at most 1000 keys per batch delete")
        objects = self._buckets[bucket]
        for k in keys:
            gone = objects.pop(k, None)
            if gone is not None:
                gone.discard()
        url = query.get("encoding-type") == "url"
        enc = (lambda s: quote(s, safe="")) if url else escape
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult>',
                 "<EncodingType>url</EncodingType>" if url else ""]
        if not quiet:
            parts.extend(f"<Deleted><Key>{enc(k)}</Key></Deleted>" for k in keys)
        parts.append("</DeleteResult>")
        return Reply(200, {"x-oss-request-id": _request_id(),
                           "Content-Type": "application/xml"}, "".join(parts).encode())

    # -------------------------------------------------------------- objects
    def _stored(self, body: Body, content_type: str) -> StoredObject:
        data, path = body.data, None
        if data is None:  # spilled to a file: the object keeps it
            path = os.path.join(self.object_dir or os.path.dirname(body.path),
                                f"object-{uuid.uuid4().hex}")
            body.move_to(path)
        return StoredObject(data, path, body.size, body.md5.upper(), time.time(), content_type)

    @staticmethod
    def _meta(headers: dict) -> dict:
        return {k: v for k, v in headers.items() if k.startswith("x-oss-meta-")}

    def _object_call(self, method: str, bucket: str, key: str, headers: dict,
                     body: Body) -> Reply:
        if method == "PUT":
            given = headers.get("content-md5")
            if given is not None and given != base64.b64encode(
                    bytes.fromhex(body.md5)).decode():
                return oss_error(400, "InvalidDigest", "The Content-MD5 you specified "
                                 "was invalid.", method)
        with self._lock:
            objects = self._buckets.get(bucket)
            if objects is None:
                return oss_error(404, "NoSuchBucket", "The specified bucket does not exist.",
                                 method, BucketName=bucket)
            replaced = None
            if method == "PUT" and key in objects and \
                    headers.get("x-oss-forbid-overwrite", "").lower() == "true":
                return oss_error(409, "FileAlreadyExists", "The object you specified already "
                                 "exists and can not be overwritten.", method, Key=key)
            if method == "PUT":
                stored = self._stored(body, headers.get("content-type",
                                                        "application/octet-stream"))
                stored.meta = self._meta(headers)
                replaced = objects.get(key)
                objects[key] = stored
                reply = Reply(200, {"x-oss-request-id": _request_id(),
                                    "ETag": f'"{stored.etag}"'})
            elif method == "DELETE":
                replaced = objects.pop(key, None)
                reply = Reply(204, {"x-oss-request-id": _request_id()})
            else:
                reply = None
            obj = objects.get(key)
        if replaced is not None:
            replaced.discard()
        if reply is not None:
            return reply
        if method not in ("GET", "HEAD"):
            return oss_error(405, "MethodNotAllowed", f"{method} is not supported on an object",
                             method)
        if obj is None:
            return oss_error(404, "NoSuchKey", "The specified key does not exist.", method,
                             Key=key)
        base = {"x-oss-request-id": _request_id(), "ETag": f'"{obj.etag}"',
                "Last-Modified": formatdate(obj.modified, usegmt=True),
                "Content-Type": obj.content_type, "x-oss-object-type": "Normal",
                "x-oss-storage-class": "Standard", "Accept-Ranges": "bytes", **obj.meta}
        status = 200
        size = obj.size
        start, end = 0, size - 1
        rng = headers.get("range", "")
        if rng.startswith("bytes=") and method == "GET":
            start_s, _, end_s = rng[6:].partition("-")
            try:
                if start_s:
                    start, end = int(start_s), int(end_s) if end_s else size - 1
                else:
                    start, end = max(size - int(end_s), 0), size - 1
            except ValueError:
                start, end = 0, -1
            # OSS ignores an invalid range and returns the whole object.
            if 0 <= start <= end < size:
                base["Content-Range"] = f"bytes {start}-{end}/{size}"
                status = 206
            else:
                start, end = 0, size - 1
        base["Content-Length"] = str(end + 1 - start)
        if method == "HEAD":
            return Reply(status, base, b"")
        if obj.data is not None:
            return Reply(status, base, obj.data[start:end + 1])
        try:
            file = open(obj.path, "rb")
        except FileNotFoundError:  # deleted or replaced since it was looked up
            return oss_error(404, "NoSuchKey", "The specified key does not exist.", method,
                             Key=key)
        return Reply(status, base, FileSlice(file, start, end + 1 - start))
