"""`Setting`: one value a view may read, change and follow, without holding its owner."""
from __future__ import annotations

from typing import Any, Callable

from traitlets import HasTraits


class Setting:
    """A named trait of one object, handed to views instead of the object itself.

    A view that shows (and moves) ``FCMagic.memory`` needs exactly three
    things: its value, a way to set it, and a way to follow changes made
    elsewhere (`%config`). Giving it this keeps views free of the magic.
    """

    def __init__(self, owner: HasTraits, name: str):
        self._owner = owner
        self.name = name

    @property
    def value(self) -> Any:
        return getattr(self._owner, self.name)

    def set(self, value: Any) -> None:
        if getattr(self._owner, self.name) != value:
            setattr(self._owner, self.name, value)

    def observe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(new value)`` on every change; returns the function that stops it."""
        def handler(change):
            callback(change["new"])

        self._owner.observe(handler, self.name)
        return lambda: self._owner.unobserve(handler, self.name)
