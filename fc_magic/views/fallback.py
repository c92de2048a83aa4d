"""The plain-text form every widget view carries, for frontends without a widget manager."""
from __future__ import annotations

from typing import Any


class TextFallback:
    """Mixin: ``self.box`` rendered as widgets, with ``plain_text()`` as its text/plain.

    `jupyter execute`, nbconvert to text, a terminal or a saved notebook opened
    without the widget manager show the text/plain part; it must say what
    the widget says.
    """

    box: Any

    def plain_text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.plain_text()
        return bundle
