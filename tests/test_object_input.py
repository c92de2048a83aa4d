"""Objects as a map's input: `%fc_map FUNC oss://bucket/prefix/ | file:///folder/ | PATH --files`.

On the sandbox (one per module, one FC runtime build): 1,500 objects are
1,500 tasks (listed past 1000 keys), and 500 of them
run, each key read once by its task; a 10 MB text object in 1 MB chunks gives
every line to exactly one task. On localhost: a folder through the magic,
its receipt, a failure naming the key, and its retry. The bad inputs are
one-line UsageErrors.
"""
from __future__ import annotations

import random

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from fc_magic import engine
from fc_magic.backends.object_input import list_parts
from fc_magic.object_handle import owned_blocks
from fc_magic.objects import parse_source
from fc_magic.results import TaskFailure
from fc_magic.sandbox import Sandbox

BUCKET = "fcm-inputs"
#: Lines of the big object: 10.2 MB of text, with no final newline.
BIG_LINES = 155_000


def _text(lines: int, seed: int, final_newline: bool = True, long_every: int = 0) -> bytes:
    rnd = random.Random(seed)
    rows = []
    for i in range(lines):
        width = 200_000 if long_every and i % long_every == long_every - 1 else rnd.randint(0, 120)
        rows.append(f"{i:07d} " + "x" * width)
    return ("\n".join(rows) + ("\n" if final_newline else "")).encode()


# ------------------------------------------------------------------ chunking, in the client
@pytest.mark.parametrize("final_newline", [True, False])
def test_chunks_on_line_boundaries_hold_every_line_once(final_newline):
    # Lines of 0..120 bytes and some of 200 kB (longer than Lithops' 128 kB overshoot),
    # chunk sizes that cut lines anywhere, reads in blocks smaller than a line.
    import io

    data = _text(3000, seed=7, final_newline=final_newline, long_every=700)
    for chunk in (1024, 4093, 65536, 300_000, len(data)):
        pieces = []
        for start in range(0, len(data), chunk):
            stop = min(start + chunk, len(data))
            stream = io.BytesIO(data[max(start - 1, 0):])
            pieces.append(b"".join(owned_blocks(stream, start, stop, block=257)))
        assert b"".join(pieces) == data, f"chunk {chunk}: the chunks do not add up to the object"
        for piece in pieces[:-1]:
            assert not piece or piece.endswith(b"\n"), "a chunk ends inside a line"


# ------------------------------------------------------------------ the sandbox
@pytest.fixture(scope="module")
def sandbox(lithops_cache):
    with Sandbox(concurrency=4) as sb:
        sb.store.handle("PUT", BUCKET, "", {}, {}, b"")
        for i in range(1500):
            sb.store.handle("PUT", BUCKET, f"many/{i:05d}.txt", {}, {}, f"{i}\n".encode())
        for key, body in (("mixed/a-empty.txt", b""), ("mixed/dir/", b""),
                          ("mixed/b.txt", b"b\n" * 3000)):
            sb.store.handle("PUT", BUCKET, key, {}, {}, body)
        sb.store.handle("PUT", BUCKET, "big/lines.txt", {}, {},
                        _text(BIG_LINES, seed=3, final_newline=False))
        yield sb


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """An FC code package with nothing but Lithops' worker packages, built once."""
    from fc_magic.requirements import resolve_requirements
    from fc_magic.runtime import ensure_runtime

    reqs = resolve_requirements("", backend="aliyun_fc")
    return ensure_runtime("objs", reqs, target="fc",
                          cache_dir=str(tmp_path_factory.mktemp("xdg") / "fc_magic"))


def _request(runtime, config_file, **extra) -> engine.MapRequest:
    return engine.MapRequest(backend="aliyun_fc", runtime=runtime.deploy_name,
                             package=runtime.package, config_file=config_file, memory_mb=256,
                             timeout_s=60, **extra)


@pytest.mark.timeout(60)
def test_listing_1500_objects_pages_past_1000_keys(runtime, config_file, sandbox):
    # OSS pages a listing at 1000 keys; Lithops' own listing stops at the first page.
    parts = list_parts(_request(runtime, config_file), parse_source(f"oss://{BUCKET}/many/"),
                       200_000)
    assert [p.key for p in parts] == [f"many/{i:05d}.txt" for i in range(1500)]
    assert [(p.size, p.range, p.parts) for p in parts] == [(len(f"{i}\n"), None, 1)
                                                          for i in range(1500)]
    # An empty object is a task of its own; a folder marker is none; chunks tile the object.
    mixed = list_parts(_request(runtime, config_file),
                       parse_source(f"oss://{BUCKET}/mixed", chunk_size="2KB"), 200_000)
    assert [(p.key, p.size, p.range, p.part, p.parts) for p in mixed] == [
        ("mixed/a-empty.txt", 0, None, 1, 1),
        ("mixed/b.txt", 6000, (0, 2048), 1, 3), ("mixed/b.txt", 6000, (2048, 4096), 2, 3),
        ("mixed/b.txt", 6000, (4096, 6000), 3, 3)]


@pytest.mark.slow
# Each task costs ~0.15 s of CPU in Lithops' own per-call work on the sandbox (fork,
# status, stats and result objects) whatever the chunksize: all 1,500 took 110 s on an idle
# machine and 792 s on a loaded one. The listing test above checks that 1,500 objects are
# 1,500 tasks; this one runs every third of them (500 tasks, from both listing pages) and
# checks that each task's worker read its own object.
@pytest.mark.timeout(600)
def test_objects_from_both_listing_pages_are_read_by_their_tasks_each_key_once(
        runtime, config_file, sandbox):
    # 100 tasks per invocation, 4 processes per instance: 5 invocations, not 500.
    request = _request(runtime, config_file,
                       extra_config={"lithops": {"chunksize": 100, "monitoring_interval": 2},
                                     "aliyun_fc": {"worker_processes": 4}})
    parts = list_parts(request, parse_source(f"oss://{BUCKET}/many/"), 200_000)[::3]

    def key_and_body(obj):
        return obj.key, obj.size, obj.range, obj.read()

    result = engine.run_map(key_and_body, parts, request)
    assert not result.failures
    assert result.values == [(f"many/{i:05d}.txt", len(f"{i}\n"), None, f"{i}\n".encode())
                             for i in range(0, 1500, 3)]


@pytest.fixture
def aliyun(fc, cell, config_file, runtime):
    fc.backend = "aliyun_fc"
    fc.config_file = config_file
    fc.current_runtime = runtime
    return fc


def test_a_10mb_text_object_in_1mb_chunks_gives_every_line_once(aliyun, cell, sandbox):
    cell("def lines(obj):\n"
         "    return obj.part, [line.rstrip('\\n') for line in obj.open('r')]\n")
    signed_before = sandbox.role_keys_used
    with capture_output() as cap:
        result = cell(f"%fc_map lines oss://{BUCKET}/big/ --chunk-size 1MB")
    # The workers' config holds no key (fc_entry_point strips it): they read the object
    # with each invocation's role credentials, as FC's context.credentials.
    assert sandbox.role_keys_used - signed_before >= 11
    data = _text(BIG_LINES, seed=3, final_newline=False)
    assert len(data) > 10 * 2**20
    expected, chunks = data.decode().split("\n"), -(-len(data) // 2**20)
    assert len(result.values) == chunks == 11 and not result.failures
    assert [part for part, _ in result.values] == list(range(1, chunks + 1))
    seen = [line for _, chunk in result.values for line in chunk]
    assert seen == expected
    assert "big/lines.txt [chunk 1/11]" in repr(result.inputs[0])
    assert "11/11 done" in cap.stdout


def test_bad_object_sources_are_one_line_usage_errors(aliyun, cell, sandbox):
    cell("def f(obj):\n    return obj.key\n")
    cases = {
        f"%fc_map f oss://{BUCKET}/nothing-here/": "no objects under",
        "%fc_map f oss://no-such-bucket-1/data/": "does not exist",
        "%fc_map f oss:///data/": "names no bucket",
        f"%fc_map f oss://{BUCKET}/": "has no prefix",
        f"%fc_map f oss://{BUCKET}/many/ --chunk-size 64XB": "is not a size",
        "%fc_map f range(3) --chunk-size 1MB": "not an object source",
        "%fc_map f /tmp --files": "Function Compute cannot read",
    }
    for line, words in cases.items():
        with pytest.raises(UsageError) as err:
            cell(line)
        message = str(err.value)
        assert words in message and "\n" not in message, (line, message)


# ------------------------------------------------------------------ localhost, a folder
def test_a_local_folder_through_the_magic_receipt_failure_and_retry(ip, cell, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha\nbeta\n")
    (folder / "b.txt").write_text("bad\n")
    (folder / "sub" / "c.txt").write_text("gamma\n")
    (folder / ".hidden").write_text("skipped\n")
    cell("def words(obj):\n"
         "    text = obj.read().decode()\n"
         "    if text.startswith('bad'):\n"
         "        raise ValueError('cannot read ' + obj.key)\n"
         "    return obj.key, text.split()\n")
    with capture_output() as cap:
        result = cell(f"%fc_map words file://{folder}/ --out r")
    assert [str(i) for i in result.inputs] == ["a.txt", "b.txt", "sub/c.txt"]
    assert result.values[0] == ("a.txt", ["alpha", "beta"])
    assert result.values[2] == ("sub/c.txt", ["gamma"])
    failure = result.values[1]
    assert isinstance(failure, TaskFailure) and failure.input_repr == "b.txt"
    assert "1 of 3 tasks failed" in cap.stdout and "input b.txt:" in cap.stdout
    from fc_magic.views.receipt import receipt_html

    html = receipt_html(result)
    assert all(f"<code>{key}</code>" in html for key in ("a.txt", "b.txt", "sub/c.txt"))
    cell("def words(obj):\n    return obj.key, obj.read().decode().split()\n")
    cell("%fc_map words --retry r")
    assert result.values[1] == ("b.txt", ["bad"]) and result.ok

    # A plain path with --files, in chunks: every line once, in order.
    (tmp_path / "log.txt").write_bytes(_text(20_000, seed=5))
    cell("def rows(obj):\n    return obj.range, obj.read().splitlines()\n")
    chunked = cell(f"%fc_map rows {tmp_path / 'log.txt'} --files --chunk-size 64KB --quiet")
    assert len(chunked.values) > 10
    assert [row for _, rows in chunked.values for row in rows] == \
        _text(20_000, seed=5).splitlines()

    # --const reaches an object map's calls; --reduce runs over its results in listing order.
    cell("def tagged(obj, tag):\n    return tag + obj.key\n"
         "def joined(keys):\n    return '|'.join(keys)\n")
    both = cell(f"%fc_map tagged file://{folder}/ --const tag='k:' --reduce joined --quiet")
    assert both.reduced == "k:a.txt|k:b.txt|k:sub/c.txt"


def test_local_sources_refused_with_the_fix(ip, cell, tmp_path):
    cell("def f(obj):\n    return obj.key\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x.txt").write_text("x\n")
    cases = {
        f"%fc_map f {tmp_path / 'missing'} --files": "does not exist",
        f"%fc_map f {tmp_path / 'empty'} --files": "holds no files",
        "%fc_map f oss://some-bucket/data/": "%config FCMagic.backend = 'aliyun_fc'",
        "%fc_map f file://host/data/": "three slashes",
        f"%fc_map f {tmp_path} --files --chunk-size 12": "under 1KB",
        f"%fc_map f {tmp_path / 'one'} --files --star": "drop --star",
    }
    for line, words in cases.items():
        with pytest.raises(UsageError) as err:
            cell(line)
        assert words in str(err.value) and "\n" not in str(err.value), (line, str(err.value))
