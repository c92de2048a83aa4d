"""The runtime cache's own rules, on hand-made entries (no build): what counts as a whole
entry, the name index, discarding, and which leftovers gc may take."""
from __future__ import annotations

import json
import os
import time

import pytest

from fc_magic.runtime import cache

KEY = "ab" * 32


def make_entry(root, target="local", key=KEY, files=None, **manifest):
    path = cache.entry_dir(root, target, key)
    os.makedirs(path)
    files = {"bin/python": b"#!", "requirements.txt": b"six\n"} if files is None else files
    for rel, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        with open(os.path.join(path, rel), "wb") as fh:
            fh.write(data)
    cache.write_manifest(path, {"format": cache.FORMAT, "key": key, "target": target,
                                "check_files": {r: len(d) for r, d in files.items()},
                                **manifest})
    return path


def test_layout_names(tmp_path):
    root = cache.runtimes_root(str(tmp_path))
    assert root == os.path.join(str(tmp_path), "runtimes")
    assert cache.entry_id("fc", KEY) == f"fc-{KEY}"
    assert cache.entry_dir(root, "fc", KEY) == os.path.join(root, f"fc-{KEY}")
    assert cache.runtimes_root("~/x") == os.path.join(os.path.expanduser("~"), "x", "runtimes")


def test_a_whole_entry_and_each_way_it_is_not(tmp_path):
    root = str(tmp_path)
    path = make_entry(root)
    manifest, problem = cache.entry_problem(path, "local", KEY)
    assert problem is None and manifest["key"] == KEY
    assert cache.entry_problem(path, "fc", KEY)[1] == "its manifest does not match its key"
    assert cache.entry_problem(path, "local", "cd" * 32)[1] == \
        "its manifest does not match its key"
    assert cache.entry_problem(cache.entry_dir(root, "local", "ef" * 32), "local",
                               "ef" * 32) == (None, "absent")
    with open(os.path.join(path, "requirements.txt"), "ab") as fh:
        fh.write(b"extra")
    assert cache.entry_problem(path, "local", KEY)[1] == \
        "requirements.txt is 9 bytes instead of 4"
    os.remove(os.path.join(path, "bin/python"))
    assert cache.entry_problem(path, "local", KEY)[1] == "bin/python is missing"
    with open(os.path.join(path, cache.MANIFEST), "w") as fh:
        fh.write("{not json")
    assert cache.entry_problem(path, "local", KEY) == (
        None, "its manifest is missing or unreadable")
    with open(os.path.join(path, cache.MANIFEST), "w") as fh:
        json.dump(["a", "list"], fh)
    assert cache.read_manifest(path) is None


def test_an_entry_of_an_older_format_is_not_whole(tmp_path):
    path = make_entry(str(tmp_path))
    manifest = cache.read_manifest(path)
    cache.write_manifest(path, {**manifest, "format": cache.FORMAT + 1})
    assert cache.entry_problem(path, "local", KEY)[1] == "its manifest does not match its key"
    assert not os.path.exists(os.path.join(path, cache.MANIFEST + ".tmp"))


def test_a_size_of_none_only_asks_that_the_file_exists(tmp_path):
    path = make_entry(str(tmp_path), files={"package.zip": b"zip"})
    manifest = cache.read_manifest(path)
    cache.write_manifest(path, {**manifest, "check_files": {"package.zip": None}})
    with open(os.path.join(path, "package.zip"), "ab") as fh:
        fh.write(b"more")
    assert cache.entry_problem(path, "local", KEY)[1] is None


def test_name_index_points_forgets_and_survives_damage(tmp_path):
    root = str(tmp_path)
    assert cache.read_index(root) == {}
    cache.set_name(root, "rt", "local", KEY)
    cache.set_name(root, "rt", "fc", "cd" * 32)
    cache.set_name(root, "other", "local", KEY)
    assert cache.read_index(root) == {"rt": {"local": KEY, "fc": "cd" * 32},
                                      "other": {"local": KEY}}
    assert cache.referenced_ids(root) == {f"local-{KEY}", f"fc-{'cd' * 32}"}
    before = os.stat(os.path.join(root, cache.INDEX)).st_mtime_ns
    time.sleep(0.01)
    cache.set_name(root, "rt", "local", KEY)           # already so: nothing written
    assert os.stat(os.path.join(root, cache.INDEX)).st_mtime_ns == before
    assert cache.remove_name(root, "rt") == {"local": KEY, "fc": "cd" * 32}
    assert cache.remove_name(root, "rt") == {}
    assert cache.read_index(root) == {"other": {"local": KEY}}
    assert not [n for n in os.listdir(root) if n.startswith((".names-", ".lock-"))]
    for damage in ("{broken", json.dumps([1]), json.dumps({"names": [1]})):
        with open(os.path.join(root, cache.INDEX), "w") as fh:
            fh.write(damage)
        assert cache.read_index(root) == {}


def test_entries_skip_builds_discards_and_files(tmp_path):
    root = str(tmp_path)
    assert cache.entries(str(tmp_path / "none")) == []
    whole = make_entry(root)
    building = cache.new_build_dir(root, "local", "cd" * 32)
    assert os.path.basename(building).startswith(f".build-local-{'cd' * 32}-")
    os.makedirs(os.path.join(root, f"fc-{KEY}.discard-1-2"))
    open(os.path.join(root, "stray.txt"), "w").close()
    bare = os.path.join(root, "local-" + "ef" * 32)
    os.makedirs(bare)
    assert cache.entries(root) == [(whole, cache.read_manifest(whole)), (bare, None)]


def test_publish_and_discard(tmp_path):
    root = str(tmp_path)
    build = cache.new_build_dir(root, "local", KEY)
    open(os.path.join(build, "f"), "w").close()
    final = cache.entry_dir(root, "local", KEY)
    cache.publish(build, final)
    assert os.path.exists(os.path.join(final, "f")) and not os.path.exists(build)
    cache.discard(final)
    assert os.listdir(root) == []
    cache.discard(final)                                 # already gone: nothing to do


def test_folder_size_counts_every_file_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"12345")
    (tmp_path / "y").write_bytes(b"123")
    os.symlink(tmp_path / "a" / "x", tmp_path / "link")
    assert cache.folder_size(str(tmp_path)) == 8 + os.lstat(tmp_path / "link").st_size


def test_a_lock_leaves_no_file_and_excludes_a_second_holder(tmp_path):
    root = str(tmp_path / "r")
    with cache.key_lock(root, "local", KEY):
        assert os.path.exists(os.path.join(root, f".lock-local-{KEY}"))
    with cache.index_lock(root):
        assert os.path.exists(os.path.join(root, ".lock-names"))
    assert os.listdir(root) == []
    with pytest.raises(RuntimeError):
        with cache.key_lock(root, "local", KEY):
            raise RuntimeError("inside")
    assert os.listdir(root) == []


def test_manifest_and_index_are_written_sorted_through_a_temp_file_beside_them(
        tmp_path, monkeypatch):
    # Sorted keys: the same manifest is the same bytes. The temp file sits in the target
    # folder, so the final os.replace is a rename within one file system (atomic).
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: replaced.append((a, b)) or real_replace(a, b))
    folder = tmp_path / "entry"
    folder.mkdir()
    cache.write_manifest(str(folder), {"zeta": 1, "alpha": {"b": 2, "a": 1}})
    text = (folder / cache.MANIFEST).read_text()
    assert text.index('"alpha"') < text.index('"zeta"') and text.index('"a"') < text.index('"b"')
    root = str(tmp_path / "root")
    cache.set_name(root, "zz", "local", KEY)
    cache.set_name(root, "aa", "fc", KEY)
    index = (tmp_path / "root" / cache.INDEX).read_text()
    assert index.index('"aa"') < index.index('"zz"')
    assert [os.path.dirname(a) for a, _ in replaced] == [str(folder), root, root]
    assert [os.path.dirname(b) for _, b in replaced] == [str(folder), root, root]
    assert sorted(os.listdir(folder)) == [cache.MANIFEST]
    assert sorted(os.listdir(root)) == [cache.INDEX]


def test_discard_removes_the_folder_even_when_it_cannot_be_renamed_aside(tmp_path, monkeypatch):
    path = tmp_path / "entry"
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "f").write_text("x")

    def refuse(src, dst):
        raise OSError("cross-device")

    monkeypatch.setattr(os, "rename", refuse)
    cache.discard(str(path))
    assert not path.exists() and os.listdir(tmp_path) == []
