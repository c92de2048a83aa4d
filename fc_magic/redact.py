"""Hide credentials embedded in URLs (``scheme://user:password@host``) in text shown or logged."""
from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

#: ``scheme://`` then an authority holding ``@``: everything before the last ``@`` of the
#: authority is a user name, a password or a token. The authority ends at ``/``, a space
#: or a quote, so one URL in a longer line is matched alone.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s'\"`<>]*@")

MASK = "****"


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``****``."""
    if "@" not in text:  # the common case costs one scan
        return text
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{MASK}@", text)
