"""One function instance: the program the sandbox runs with ``python -I -S``.

Standard library only: it runs in the function's own Python, isolated from the
client's site-packages. It puts the unpacked code package and the base
environment (FC's preinstalled modules) on ``sys.path``, imports the handler
once, then serves invocations read from one pipe and answers on another, so
whatever the function prints goes to the instance log, not into the protocol.

Frame: 4-byte big-endian header length, JSON header, then ``header["size"]``
bytes of body.
"""
import json
import os
import site
import struct
import sys
import traceback

HEAD = struct.Struct("!I")


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    (size,) = HEAD.unpack(_read_exact(fd, HEAD.size))
    header = json.loads(_read_exact(fd, size))
    return header, _read_exact(fd, header.get("size", 0))


def write_frame(fd, header, body=b""):
    header = dict(header, size=len(body))
    raw = json.dumps(header).encode()
    data = HEAD.pack(len(raw)) + raw + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Credentials:
    def __init__(self):
        self.access_key_id = self.access_key_secret = self.security_token = None


class FunctionMeta:
    def __init__(self, meta):
        self.name = meta["name"]
        self.handler = meta["handler"]
        self.memory = meta["memory"]
        self.timeout = meta["timeout"]


class Context:
    """What FC's Python runtime passes as ``context`` (the fields handlers use)."""

    def __init__(self, request_id, meta):
        self.request_id = request_id
        self.credentials = Credentials()
        self.function = FunctionMeta(meta)
        self.region = meta["region"]
        self.account_id = meta["account_id"]
        self.service = None


def main():
    code_dir, base_dir, req_fd, resp_fd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    meta = json.loads(sys.argv[5])
    sys.path[0:0] = [code_dir, base_dir]
    for folder in (code_dir, base_dir):
        site.addsitedir(folder)  # .pth files, without the client's site-packages
    os.chdir(code_dir)
    module_name, _, func_name = meta["handler"].rpartition(".")
    handler = None
    load_error = None
    try:
        module = __import__(module_name, fromlist=[func_name])
        handler = getattr(module, func_name)
    except BaseException as exc:  # reported on every invocation, as FC does
        load_error = exc, traceback.format_exc()
    write_frame(resp_fd, {"ready": True})
    while True:
        try:
            header, event = read_frame(req_fd)
        except EOFError:
            return
        reply = {"request_id": header["request_id"]}
        body = b""
        if load_error is not None:
            exc, text = load_error
            reply["error"] = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                              "stackTrace": text.splitlines()}
        else:
            try:
                result = handler(event, Context(header["request_id"], meta))
                if isinstance(result, bytes):
                    body = result
                elif isinstance(result, str):
                    body = result.encode()
                elif result is not None:
                    body = json.dumps(result).encode()
            except BaseException as exc:
                reply["error"] = {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                  "stackTrace": traceback.format_exc().splitlines()}
        sys.stdout.flush()
        sys.stderr.flush()
        write_frame(resp_fd, reply, body)


if __name__ == "__main__":
    main()
