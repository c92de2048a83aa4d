"""Where maps run: one module per backend behind one small interface.

The map loop (`fc_magic.engine`) only ever talks to a `Backend` and to the
`LithopsJob` it opens; everything Lithops-specific (configuration, endpoints,
credentials, deploying a function, cleaning job data) lives in this package,
which is the only part of fc_magic that imports Lithops. A third backend is
one new module here plus its name in `BACKENDS`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .request import MapRequest

#: Backend name -> (module under fc_magic.backends, runtime build target).
_REGISTRY = {
    "localhost": ("localhost", "local"),
    "aliyun_fc": ("aliyun_fc", "fc"),
}
#: The backends a user can choose (`FCMagic.backend`), the default first.
BACKENDS: tuple[str, ...] = tuple(_REGISTRY)


class Backend(Protocol):
    """What the map loop needs from a place that runs tasks."""

    #: The name users choose it by (`%config FCMagic.backend = NAME`).
    name: str
    #: The runtime build target its runtimes are built for ("local" or "fc").
    target: str

    def check(self, request: MapRequest) -> None:
        """Raise `InputProblem` for anything that would stop a map before it starts."""

    def executor(self, request: MapRequest) -> Any:
        """A Lithops FunctionExecutor for the request, its function deployed if needed."""

    def describe(self, request: MapRequest) -> str:
        """Where the map runs, in a few words, for the views."""

    def note(self, request: MapRequest) -> str | None:
        """One line the cell shows before the map (None: nothing to say)."""

    def clean(self, executor: Any, futures: list) -> None:
        """Delete a finished map's job data."""

    def request_id(self, executor: Any, future: Any) -> str:
        """The id the service gave the invocation that ran ``future``'s task ('' if none)."""

    def logs(self, executor: Any, request: MapRequest) -> str:
        """One line: where the service keeps the tasks' logs, or how to turn them on ('')."""


def target_for(backend: str) -> str:
    """The runtime build target of a backend ("local" or "fc")."""
    return _REGISTRY[backend][1]


def get(backend: str) -> Backend:
    """The backend called ``backend`` (its module is imported on first use)."""
    if backend not in _REGISTRY:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    module = importlib.import_module(f"{__name__}.{_REGISTRY[backend][0]}")
    return module.BACKEND
