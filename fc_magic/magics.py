"""`FCMagic`: the magics and their settings. Parse, delegate, display, store.

Every setting is a traitlet (`%config FCMagic.memory = 512`); a per-call
flag overrides it for that call only. The work itself lives in plain
modules (`inputs`, `engine`, `progress`, `views`) usable without IPython.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Enum, Float, Int, TraitError, Unicode, default, validate

from . import limits
from .inputs import InputProblem, check_identifier, resolve_function, resolve_items

logger = logging.getLogger(__name__)

BACKENDS = ("localhost", "aliyun_fc")


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(base, "fc_magic")


def _parse(magic, line: str, name: str):
    """parse_argstring, with argparse's complaint turned into one usable line."""
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        raise UsageError(f"%{name}: {exc}; see %{name}? for usage") from None
    except ValueError as exc:  # shlex: "No closing quotation"
        raise UsageError(f"%{name}: cannot split the line ({exc}); close the quote "
                         f"or see %{name}? for usage") from None


@magics_class
class FCMagic(Magics):
    """Run notebook functions on Function Compute (or locally) through Lithops."""

    backend = Enum(BACKENDS, default_value="localhost", config=True,
                   help="Where maps run: 'localhost' (embedded, no account needed) "
                        "or 'aliyun_fc' (Alibaba Cloud Function Compute).")
    memory = Int(256, config=True,
                 help="Memory per task in MB. Function Compute accepts multiples "
                      "of 64 from 128 to 32768.")
    timeout = Int(300, config=True,
                  help="Seconds a single task may run before it is reported as timed out "
                       "(1..86400).")
    progress_after = Float(1.0, config=True,
                           help="Seconds a map runs before its progress view appears, "
                                "so quick maps do not flash a bar.")
    cache_dir = Unicode(config=True,
                        help="Where built runtimes are cached (default ~/.cache/fc_magic).")
    view = Enum(("auto", "widget", "text"), default_value="auto", config=True,
                help="Progress view: 'widget' (ipywidgets), 'text', or 'auto' "
                     "(widgets when the shell has a kernel).")
    workers = Int(0, config=True,
                  help="Parallel worker processes for the localhost backend "
                       "(0: one per CPU core).")

    @default("cache_dir")
    def _cache_dir_default(self) -> str:
        return _default_cache_dir()

    @validate("memory")
    def _check_memory(self, proposal):
        problem = limits.memory_problem(proposal["value"])
        if problem:
            raise TraitError(problem)
        return proposal["value"]

    @validate("timeout")
    def _check_timeout(self, proposal):
        problem = limits.timeout_problem(proposal["value"])
        if problem:
            raise TraitError(problem)
        return proposal["value"]

    @validate("progress_after")
    def _check_progress_after(self, proposal):
        if proposal["value"] < 0:
            raise TraitError("progress_after must be >= 0 seconds")
        return proposal["value"]

    @validate("workers")
    def _check_workers(self, proposal):
        if proposal["value"] < 0:
            raise TraitError("workers must be >= 0 (0 means one per CPU core)")
        return proposal["value"]

    # ------------------------------------------------------------------ %fc_map
    @magic_arguments()
    @argument("func", metavar="FUNC", nargs="?",
              help="Function to run on each item: a name or expression in the notebook.")
    @argument("iterable", metavar="ITERABLE", nargs="*",
              help="Items to map over: a name or expression (list, range, generator ...).")
    @argument("--retry", "-r", default=None, metavar="NAME",
              help="Re-run only the failed inputs of the MapResult stored in NAME and merge "
                   "the new outcomes into it in place (FUNC, if given, replaces its function).")
    @argument("--memory", "-m", type=int, default=None,
              help="Memory per task in MB for this call (default: FCMagic.memory).")
    @argument("--timeout", "-t", type=int, default=None,
              help="Per-task timeout in seconds for this call (default: FCMagic.timeout).")
    @argument("--out", "-o", default=None, metavar="NAME",
              help="Also store the MapResult in this variable.")
    @argument("--quiet", "-q", action="store_true",
              help="No progress view and no failure report; just return the MapResult.")
    @line_magic
    def fc_map(self, line: str = ""):
        """Run FUNC over every item of ITERABLE with Lithops and return a MapResult.

        Each item is one task: FUNC(item) runs on a worker (local processes on
        the 'localhost' backend, Function Compute instances on 'aliyun_fc').
        Progress is shown live; results come back in input order. A task that
        raises does not lose the others: its slot holds a TaskFailure with
        the remote traceback, and the cell reports how many failed.

        Examples
        --------
        ::

            In [1]: %load_ext fc_magic

            In [2]: def add7(x):
               ...:     return x + 7

            In [3]: r = %fc_map add7 range(5)

            In [4]: r.values
            Out[4]: [7, 8, 9, 10, 11]

            In [5]: %fc_map score [a for a in data if a] --memory 512 --out scores

            In [6]: scores.ok, scores.failures

            In [7]: %fc_map --retry scores     # only the failed inputs; merged in place
        """
        args = _parse(self.fc_map, line, "fc_map")
        into = None
        try:
            request = self._map_request(args)
            out = check_identifier(args.out, "--out") if args.out else None
            if args.retry:
                func, items, into = self._retry_target(args)
            else:
                if not args.func or not args.iterable:
                    missing = "ITERABLE" if args.func else "FUNC and ITERABLE"
                    raise InputProblem(f"missing {missing}; use %fc_map FUNC ITERABLE, or "
                                       f"%fc_map --retry NAME to re-run a stored map's failures")
                func = resolve_function(args.func, self.shell.user_ns)
                items = resolve_items(" ".join(args.iterable), self.shell.user_ns)
        except InputProblem as exc:
            raise UsageError(f"%fc_map: {exc}") from None

        result = self._run_and_show(func, items, request, quiet=args.quiet, into=into)
        if out:
            self.shell.user_ns[out] = result
        return result

    #: The MapResult of the last map run from this kernel (the memory slider's cost line).
    last_map = None

    def _retry_target(self, args):
        """(function, failed inputs, (result, positions)) for ``--retry NAME``."""
        from . import retry
        from .results import MapResult

        name = check_identifier(args.retry, "--retry")
        target = self.shell.user_ns.get(name)
        if not isinstance(target, MapResult):
            raise InputProblem(f"--retry {name}: {name!r} is not a MapResult in the notebook; "
                               f"store one with %fc_map FUNC ITERABLE --out {name}")
        if args.iterable:
            raise InputProblem("--retry re-runs the stored inputs; drop ITERABLE")
        func = (resolve_function(args.func, self.shell.user_ns) if args.func
                else retry.function_for(target))
        if func is None:
            raise InputProblem(f"--retry {name}: the function of that map is unknown here; "
                               f"pass it: %fc_map FUNC --retry {name}")
        indices, items = retry.retry_inputs(target)
        return func, items, (target, indices)

    def _run_and_show(self, func, items, request, *, quiet: bool = False, into=None):
        """Run a map with its view; merge into ``into=(result, positions)`` when given."""
        from . import retry, views
        from .engine import run_map

        kind = views.choose_view_kind(self.shell, self.view)
        display = views.MapDisplay(kind, progress_after=self.progress_after, quiet=quiet)
        result = run_map(func, items, request, on_snapshot=display.on_snapshot,
                         should_cancel=display.should_cancel)
        if into is not None:
            target, indices = into
            if len(indices) == len(target.values) and indices == list(range(len(indices))):
                target.elapsed_s = 0.0  # a whole re-run replaces the old timing
                target.memory_mb = result.memory_mb
            result = retry.merge(target, indices, result)
        else:
            retry.remember_function(result, func)
        self.last_map = result
        display.show_result(result, magic=self,
                            on_retry=lambda: self._retry_from_view(result),
                            on_rerun=lambda mb: self._rerun_from_view(result, mb))
        return result

    def _retry_from_view(self, result):
        """The view's "retry failed" button: same as %fc_map --retry on that result."""
        from . import retry
        from .engine import MapRequest

        indices, items = retry.retry_inputs(result)
        func = retry.function_for(result)
        request = MapRequest(backend=self.backend, memory_mb=self.memory,
                             timeout_s=self.timeout, workers=self.workers or None)
        return self._run_and_show(func, items, request, into=(result, indices))

    def _rerun_from_view(self, result, memory_mb: int):
        """The slider's "re-run with this memory": the whole map again, in place."""
        from . import retry
        from .engine import MapRequest

        func = retry.function_for(result)
        request = MapRequest(backend=self.backend, memory_mb=memory_mb,
                             timeout_s=self.timeout, workers=self.workers or None)
        return self._run_and_show(func, list(result.inputs), request,
                                  into=(result, list(range(len(result.inputs)))))

    # --------------------------------------------------------------- %fc_memory
    @magic_arguments()
    @argument("mb", metavar="MB", nargs="?", type=int, default=None,
              help="Set FCMagic.memory to MB first (a multiple of 64 in 128..32768).")
    @line_magic
    def fc_memory(self, line: str = ""):
        """Show the memory slider: FC's memory sizes, bound to FCMagic.memory.

        Moving the slider changes the memory of the next %fc_map; next to it
        is an estimate of what the last map would cost at that size, from its
        measured task durations (Function Compute's Compute Unit prices).
        Without a widget frontend it prints the same in one line.

        Examples
        --------
        ::

            In [1]: %fc_memory            # the slider alone

            In [2]: %fc_memory 1024       # set 1024 MB, then show the slider
        """
        args = _parse(self.fc_memory, line, "fc_memory")
        if args.mb is not None:
            problem = limits.memory_problem(args.mb)
            if problem:
                raise UsageError(f"%fc_memory: {problem}; pass a multiple of 64 in 128..32768")
            self.memory = args.mb
        from . import views

        views.show_memory(self, views.choose_view_kind(self.shell, self.view),
                          on_rerun=self._rerun_last)

    def _rerun_last(self, memory_mb: int):
        if self.last_map is not None:
            self._rerun_from_view(self.last_map, memory_mb)

    def _map_request(self, args):
        from .engine import MapRequest

        memory = self.memory if args.memory is None else args.memory
        timeout = self.timeout if args.timeout is None else args.timeout
        for problem, flag in ((limits.memory_problem(memory), "--memory"),
                              (limits.timeout_problem(timeout), "--timeout")):
            if problem:
                raise InputProblem(f"{problem}; pass a valid {flag} or set "
                                   f"%config FCMagic.{flag[2:]}")
        if self.backend != "localhost":
            raise InputProblem(f"backend {self.backend!r} is not available in this "
                               f"version; use %config FCMagic.backend = 'localhost'")
        return MapRequest(backend=self.backend, memory_mb=memory, timeout_s=timeout,
                          workers=self.workers or None)
