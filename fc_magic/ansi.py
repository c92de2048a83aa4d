"""Remove terminal escape sequences (colours, cursor moves) from text shown in a notebook or log."""
from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

#: ECMA-48 sequences: CSI (``ESC [ ... final``, colours and cursor moves), OSC
#: (``ESC ] ... BEL`` or ``ESC \\``, hyperlinks and titles) and the two-byte
#: escapes; the 8-bit CSI (0x9b) too. uv colours its errors whenever it
#: believes it writes to a terminal (``FORCE_COLOR``, ``CLICOLOR_FORCE``), and a
#: task may print colours of its own: neither reads well as raw ``\x1b[31m``.
_ANSI = re.compile(r"""
    (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]      # CSI ... final byte
  | \x1b\] .*? (?:\x07|\x1b\\)               # OSC ... BEL or ST
  | \x1b [@-Z\\-_]                           # two-byte escapes
""", re.VERBOSE | re.DOTALL)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (what a terminal would show, in plain text)."""
    if "\x1b" not in text and "\x9b" not in text:  # the common case costs one scan
        return text
    return _ANSI.sub("", text)
