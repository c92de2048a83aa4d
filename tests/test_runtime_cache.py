"""The runtime cache's own rules, on hand-made entries (no build): what counts as a whole
entry, the name index, discarding, and which leftovers gc may take."""
from __future__ import annotations

import json
import os
import sys
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


# ----------------------------------------------------------------- cases by rule
def _gone_pid() -> int:
    """A PID no process can have (above the kernel's pid_max)."""
    with open("/proc/sys/kernel/pid_max") as fh:
        return int(fh.read()) + 1


#: This PID with another start time: the process it named has ended.
def _dead_stamp() -> dict:
    return {"pid": os.getpid(), "started": 1.0}


def test_the_cache_lives_under_xdg_cache_home_or_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == str(tmp_path / "xdg" / "fc_magic")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir() == str(tmp_path / "home" / ".cache" / "fc_magic")


def test_entry_paths_are_only_built_from_a_target_and_a_key(tmp_path):
    for target, key in (("gcp", KEY), ("local", "../../etc"), ("fc", KEY[:-1])):
        with pytest.raises(ValueError) as err:
            cache.entry_dir(str(tmp_path), target, key)
        assert str(err.value) == f"not a cache entry: target {target!r}, key {key!r}"


def test_a_linked_entry_and_a_manifest_naming_outside_paths_are_not_whole(tmp_path):
    root = str(tmp_path)
    real = make_entry(str(tmp_path / "elsewhere"))
    link = cache.entry_dir(root, "local", KEY)
    os.symlink(real, link)
    assert cache.entry_problem(link, "local", KEY) == (cache.read_manifest(real),
                                                       "it is a link to somewhere else")
    assert cache.entries(root) == []
    climbing = make_entry(root, key="cd" * 32, interpreter_rel="../x/bin/python")
    manifest, why = cache.entry_problem(climbing, "local", "cd" * 32)
    assert why == "its manifest names '../x/bin/python', outside the entry"


def test_manifest_paths_must_stay_inside_the_entry(tmp_path):
    path = make_entry(str(tmp_path))
    outside = cache.manifest_paths_outside
    assert outside(path, {}) is None
    assert outside(path, {"interpreter_rel": "bin/python", "package_rel": None,
                          "check_files": {"bin/python": 2, "requirements.txt": None}}) is None
    assert outside(path, {"interpreter_rel": "lib/../bin/python"}) is None
    assert outside(path, {"check_files": ["bin/python"]}) == "check_files"
    assert outside(path, {"interpreter_rel": "/usr/bin/python3"}) == "/usr/bin/python3"
    assert outside(path, {"package_rel": "../other/code.zip"}) == "../other/code.zip"
    assert outside(path, {"check_files": {"ok": 1, "a/../../x": 1}}) == "a/../../x"
    assert outside(path, {"check_files": {"": 1}}) == ""
    assert outside(path, {"interpreter_rel": 7}) == "7"
    # The first bad one in order: interpreter, package, checked files.
    assert outside(path, {"check_files": {"../c": 1}, "package_rel": "/p",
                          "interpreter_rel": "../i"}) == "../i"
    assert outside(path, {"check_files": {"../c": 1}, "package_rel": "/p"}) == "/p"
    # The interpreter itself may be a link (a venv's bin/python); a folder may not.
    os.symlink(sys.executable, os.path.join(path, "bin", "python3"))
    assert outside(path, {"interpreter_rel": "bin/python3"}) is None
    (tmp_path / "far").mkdir()
    os.symlink(tmp_path / "far", os.path.join(path, "pkg"))
    assert outside(path, {"package_rel": "pkg/code.zip"}) == "pkg/code.zip"
    assert outside(path, {"interpreter_rel": "pkg/python"}) == "pkg/python"
    assert outside(path, {"interpreter_rel": "bin/python",
                          "package_rel": "pkg/code.zip"}) == "pkg/code.zip"
    # Checked files are only stat'ed, so their folders are not followed.
    assert outside(path, {"check_files": {"pkg/code.zip": 1}}) is None
    # An entry reached through a link of its own is compared as the folder it is.
    os.symlink(path, tmp_path / "alias")
    assert outside(str(tmp_path / "alias"), {"interpreter_rel": "bin/python"}) is None


def test_a_build_folder_records_its_builder_and_its_installers(tmp_path, monkeypatch):
    from fc_magic.runtime import procs

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: replaced.append((a, b)) or real_replace(a, b))
    root = str(tmp_path / "r")
    build = cache.new_build_dir(root, "fc", KEY)
    assert os.path.dirname(build) == root
    assert os.path.basename(build).startswith(f".build-fc-{KEY}-")
    record = os.path.join(build, cache.BUILDER)
    with open(record) as fh:
        assert json.load(fh) == {"builder": procs.stamp(), "groups": []}
    cache.record_installer(build, os.getppid())
    with open(record) as fh:
        assert json.load(fh) == {"builder": procs.stamp(), "groups": [procs.stamp(os.getppid())]}
    # Written through a temp file beside it, renamed over it.
    assert [(os.path.dirname(a), b) for a, b in replaced] == [(build, record)] * 2
    assert os.listdir(build) == [cache.BUILDER]
    os.unlink(record)                                  # lost: started again
    cache.record_installer(build, os.getppid())
    with open(record) as fh:
        assert json.load(fh) == {"builder": procs.stamp(), "groups": [procs.stamp(os.getppid())]}
    with open(record, "w") as fh:                      # a record without its list
        json.dump({"builder": procs.stamp()}, fh)
    cache.record_installer(build, os.getppid())
    with open(record) as fh:
        assert json.load(fh) == {"builder": procs.stamp(), "groups": [procs.stamp(os.getppid())]}
    final = cache.entry_dir(root, "fc", KEY)
    cache.publish(build, final)
    assert os.listdir(final) == []                     # the record stays behind
    bare = str(tmp_path / "bare")
    os.makedirs(bare)
    cache.publish(bare, cache.entry_dir(root, "local", KEY))   # no record: still published
    assert os.path.isdir(cache.entry_dir(root, "local", KEY))


def test_a_key_lock_asked_without_waiting_says_it_is_held(tmp_path):
    root = str(tmp_path)
    with cache.key_lock(root, "local", KEY) as first:
        with cache.key_lock(root, "local", KEY, blocking=False) as second:
            assert (first, second) == (True, False)
        with cache.key_lock(root, "fc", KEY, blocking=False) as other:
            assert other is True


def test_damaged_index_entries_are_left_out_with_one_warning_each(tmp_path, caplog):
    root = str(tmp_path)
    index = os.path.join(root, cache.INDEX)
    with open(index, "w") as fh:
        json.dump({"names": {"ok": {"local": KEY}, "bad name!": {"local": KEY},
                             "flat": "local", "mixed": {"local": KEY, "gcp": KEY, "fc": "ab",
                                                        "fc ": 7},
                             "after": {"fc": KEY}}}, fh)
    caplog.set_level("WARNING", logger=cache.__name__)
    for _ in range(2):
        assert cache.read_index(root) == {"ok": {"local": KEY}, "mixed": {"local": KEY},
                                          "after": {"fc": KEY}}
    assert [r.getMessage() for r in caplog.records] == [
        f"{index}: ignored the damaged entry 'bad name!' (not a runtime name)",
        f"{index}: ignored the damaged entry 'flat' (not a runtime name)",
        f"{index}: ignored the damaged entry 'mixed': 'gcp' -> {KEY!r} (not a target and a key)",
        f"{index}: ignored the damaged entry 'mixed': 'fc' -> 'ab' (not a target and a key)",
        f"{index}: ignored the damaged entry 'mixed': 'fc ' -> 7 (not a target and a key)"]


def test_a_lease_names_this_process_and_is_replaced_and_dropped(tmp_path):
    root = str(tmp_path / "r")
    a, b = f"local-{KEY}", f"fc-{KEY}"
    assert cache.leases(root) == {}
    cache.take_lease(root, a)
    assert cache.leases(root) == {a: [os.getpid()]}
    assert cache.leases(root, others_only=True) == {}
    cache.take_lease(root, b)                          # one lease per process
    assert cache.leases(root) == {b: [os.getpid()]}
    cache.drop_lease(root, a)                          # not the one it holds: kept
    assert cache.leases(root) == {b: [os.getpid()]}
    cache.drop_lease(root, b)
    assert cache.leases(root) == {} and os.listdir(os.path.join(root, cache.LEASES)) == []
    cache.drop_lease(root, b)                          # none: nothing to do


def test_leases_of_ended_processes_and_of_other_caches_count_for_nothing(tmp_path,
                                                                          monkeypatch):
    from fc_magic.runtime import procs

    root = str(tmp_path / "r")
    folder = os.path.join(root, cache.LEASES)
    os.makedirs(folder)
    a, b = f"local-{KEY}", f"fc-{KEY}"
    parent, real = procs.stamp(os.getppid()), os.path.realpath(root)
    for name, record in (("1.json", {"entry": a, "holder": parent, "root": real}),
                         ("2.json", {"entry": a, "holder": _dead_stamp(), "root": real}),
                         ("3.json", {"entry": a, "holder": parent, "root": str(tmp_path)}),
                         ("4.json", {"entry": 7, "holder": parent, "root": real}),
                         ("5.json", ["not", "a", "record"]),
                         ("notes.txt", {"entry": a, "holder": _dead_stamp(), "root": real})):
        with open(os.path.join(folder, name), "w") as fh:
            json.dump(record, fh)
    cache.take_lease(root, b)
    assert cache.leases(root) == {a: [os.getppid()], b: [os.getpid()]}
    assert cache.leases(root, others_only=True) == {a: [os.getppid()]}
    # Skipping this process's own lease does not end the scan, wherever it is listed.
    mine, listdir = f"{os.getpid()}.json", os.listdir
    monkeypatch.setattr(cache.os, "listdir",
                        lambda p: sorted(listdir(p), key=lambda n: n != mine))
    assert cache.leases(root, others_only=True) == {a: [os.getppid()]}
    monkeypatch.undo()
    # Ended and foreign leases are removed; a file that is not a lease is left.
    assert sorted(os.listdir(folder)) == ["1.json", f"{os.getpid()}.json", "notes.txt"]


def test_gc_reaps_what_ended_builds_left_and_spares_the_rest(tmp_path, monkeypatch, caplog):
    root = str(tmp_path / "r")
    signalled = []
    monkeypatch.setattr(cache.procs, "kill_dead_builders_group",
                        lambda group: signalled.append(group) or True)
    assert cache.reap_dead_builds(str(tmp_path / "none")) == []
    live = cache.new_build_dir(root, "local", KEY)
    dead = cache.new_build_dir(root, "fc", KEY)
    group = {"pid": _gone_pid(), "started": None}
    with open(os.path.join(dead, cache.BUILDER), "w") as fh:
        json.dump({"builder": _dead_stamp(), "groups": [group]}, fh)
    with open(os.path.join(dead, "part.whl"), "wb") as fh:
        fh.write(b"12345")
    dead_size = cache.folder_size(dead)
    fresh = os.path.join(root, f".build-local-{'cd' * 32}-fresh")
    old = os.path.join(root, f".build-local-{'ef' * 32}-old")
    for folder in (fresh, old):
        os.makedirs(folder)
        with open(os.path.join(folder, "f"), "wb") as fh:
            fh.write(b"123")
    hour_ago = time.time() - cache.UNRECORDED_BUILD_GRACE_S - 5
    os.utime(old, (hour_ago, hour_ago))
    ended = f"local-{KEY}.discard-{_gone_pid()}-1"
    mine = f"local-{KEY}.discard-{os.getpid()}-2"
    odd = f"fc-{KEY}.discard-x"
    for name, data in ((ended, b"12"), (mine, b"1"), (odd, b"")):
        os.makedirs(os.path.join(root, name))
        with open(os.path.join(root, name, "f"), "wb") as fh:
            fh.write(data)
    os.symlink(dead, os.path.join(root, ".build-fc-linked"))
    os.symlink(dead, os.path.join(root, f"fc-{KEY}.discard-{_gone_pid()}-linked"))
    open(os.path.join(root, f".lock-local-{'cd' * 32}"), "w").close()     # nobody holds it
    # A build still in its grace time does not end the scan, wherever it is listed.
    listdir = os.listdir
    monkeypatch.setattr(cache.os, "listdir", lambda p: sorted(
        listdir(p), key=lambda n: n != os.path.basename(fresh)))
    caplog.set_level("INFO", logger=cache.__name__)
    with cache.key_lock(root, "fc", KEY):
        removed = cache.reap_dead_builds(root)
        assert os.path.exists(os.path.join(root, f".lock-fc-{KEY}"))
    assert sorted(removed) == sorted([(os.path.basename(dead), dead_size),
                                      (os.path.basename(old), 3), (ended, 2), (odd, 0)])
    assert signalled == [group]
    assert [r.getMessage() for r in caplog.records] == [
        f"killed the installer (process group {group['pid']}) of a build whose process ended"]
    assert sorted(os.listdir(root)) == sorted([
        os.path.basename(live), os.path.basename(fresh), mine, ".build-fc-linked",
        f"fc-{KEY}.discard-{_gone_pid()}-linked"])
