"""The shared secret scan finds any piece of 6+ characters, not only the whole secret."""
from __future__ import annotations

import pytest

from conftest import SECRET_PART, Tally, assert_no_secret, secret_parts_in

SECRET = "q7WvZ3kTn9XbR2mYf8LpH4sJd6GcE1aU"


@pytest.mark.parametrize("shown, spans", [
    (f"refused key ...{SECRET[-8:]}", [(24, 32)]),                  # the last 8 characters
    (f"id={SECRET[:6]}", [(0, 6)]),                                   # exactly SECRET_PART
    (f"{SECRET[3:10]} and {SECRET[20:27]}", [(3, 10), (20, 27)]),     # two separate pieces
    (f"the whole key: {SECRET}", [(0, 32)]),
])
def test_pieces_of_the_secret_are_found_and_named_by_position(shown, spans):
    assert secret_parts_in(shown, SECRET) == spans
    tally = Tally()
    with pytest.raises(AssertionError) as info:
        assert_no_secret(shown, "unrelated-secret-xyz", SECRET, where="a message", tally=tally)
    assert "a message shows part of a secret: secret #2" in str(info.value)
    assert SECRET[:SECRET_PART] not in str(info.value)  # the report names offsets, not text
    assert tally.secret_scans == 1 and tally.secrets_found == len(spans)


def test_pieces_shorter_than_the_limit_and_clean_text_pass():
    tally = Tally()
    shown = f"key ends in {SECRET[-5:]}; starts {SECRET[:5]}; access_key_secret: ***"
    assert secret_parts_in(shown, SECRET) == []
    assert_no_secret(shown, SECRET, where="a message", tally=tally)
    assert tally.secret_scans == 1 and tally.secrets_found == 0
    with pytest.raises(ValueError):
        secret_parts_in("text", "short")
