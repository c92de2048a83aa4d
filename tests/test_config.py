"""FCMagic settings: traitlets with help, validated, changed by %config."""
from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output
from traitlets import TraitError


def test_config_lists_settings_with_help(ip):
    with capture_output() as captured:
        ip.run_cell("%config FCMagic")
    out = captured.stdout
    for name in ("backend", "memory", "timeout", "progress_after", "cache_dir"):
        assert f"FCMagic.{name}" in out
    assert "multiples of 64" in out


def test_config_sets_memory(ip, fc):
    ip.run_cell("%config FCMagic.memory = 512")
    assert fc.memory == 512


@pytest.mark.parametrize("value", [100, 1000, 0, -64, 40000])
def test_invalid_memory_is_refused(ip, fc, value, caplog):
    with pytest.raises(TraitError, match="memory"):
        fc.memory = value
    assert fc.memory == 256
    ip.run_cell(f"%config FCMagic.memory = {value}")
    # traitlets reports a refused config value as a logged error naming the rule
    assert f"memory {value} MB" in caplog.text
    assert fc.memory == 256


def test_defaults(fc):
    assert fc.backend == "localhost"
    assert fc.memory == 256
    assert fc.timeout == 300


def test_unload_releases_everything(ip):
    ip.run_line_magic("unload_ext", "fc_magic")
    assert ip.find_line_magic("fc_map") is None
    assert not [c for c in ip.configurables if type(c).__name__ == "FCMagic"]
    ip.run_line_magic("load_ext", "fc_magic")
    assert ip.find_line_magic("fc_map") is not None
