"""Damaged cache entries: a corrupted manifest and a half-written entry are
detected on the next use and rebuilt (with a warning), never used as they are."""
from __future__ import annotations

import json
import logging
import os
import subprocess

import pytest

from fc_magic.requirements import resolve_requirements
from fc_magic.runtime import ensure_runtime

# Only Lithops' own worker packages: the cheapest real local build.
REQS = resolve_requirements("", backend="localhost")


def _works(entry) -> bool:
    out = subprocess.run([entry.interpreter, "-c", "import cloudpickle, tblib; print('ok')"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "ok"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    entry = ensure_runtime("dmg_rt", REQS, target="local", cache_dir=cache_dir)
    assert _works(entry)
    return cache_dir, entry


@pytest.mark.parametrize("damage", ["garbage manifest", "manifest of another key",
                                    "half-written (no manifest)", "file cut short"])
def test_damaged_entry_is_rebuilt_with_a_warning(built, caplog, tally, damage):
    cache_dir, entry = built
    manifest = os.path.join(entry.path, "manifest.json")
    tally.faults_injected += 1
    if damage == "garbage manifest":
        with open(manifest, "w") as fh:
            fh.write("{not json")
    elif damage == "manifest of another key":
        data = json.load(open(manifest))
        data["key"] = "0" * 64
        json.dump(data, open(manifest, "w"))
    elif damage == "half-written (no manifest)":
        os.remove(manifest)  # the manifest is written last: a crash mid-build looks like this
    else:
        data = json.load(open(manifest))
        # A file of the entry itself (venv/bin/python is a link to the base interpreter).
        rel = next(r for r in data["check_files"]
                   if not os.path.islink(os.path.join(entry.path, r)))
        # Replaced, not truncated in place: installers hard-link files from
        # their own cache, which an in-place write would damage too.
        target = os.path.join(entry.path, rel)
        os.remove(target)
        with open(target, "wb") as fh:
            fh.write(b"x")
    with caplog.at_level(logging.WARNING, logger="fc_magic"):
        again = ensure_runtime("dmg_rt", REQS, target="local", cache_dir=cache_dir)
    assert "damaged" in caplog.text and "rebuilding" in caplog.text
    assert again.path == entry.path and _works(again)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fc_magic"):
        ensure_runtime("dmg_rt", REQS, target="local", cache_dir=cache_dir)
    assert "damaged" not in caplog.text  # whole again: the next use is a plain hit
