"""`FCMagic`: the magics and their settings. Parse, delegate, display, store.

Every setting is a traitlet (`%config FCMagic.memory = 512`); a per-call
flag overrides it for that call only. The work itself lives in plain
modules (`inputs`, `engine`, `runtime`, `views`) usable without IPython;
the heavy ones (widgets, the runtime builder) are imported when first used
so `%load_ext fc_magic` stays instant.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, default, validate

from . import backends, limits, retry
from .backends.request import MapRequest
from .errors import FCMagicError, InputProblem
from .inputs import (MAX_TASKS, check_calls, check_identifier, check_picklable, parse_constants,
                     resolve_function, resolve_items)
from .results import MapResult
from .runtime.cache import default_cache_dir
from .setting import Setting

logger = logging.getLogger(__name__)


def _final_snapshot_of(result: MapResult):
    """The final progress state of a finished map, as its own view ended."""
    from .progress import CANCELLED, ERROR, SUCCESS, MapSnapshot

    failed = len(result.failures_not_cancelled)
    status = CANCELLED if result.cancelled else (ERROR if failed else SUCCESS)
    return MapSnapshot(len(result), result.succeeded, failed, 0, result.elapsed_s, status,
                       result.function, where=result.where)


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

    backend = Enum(backends.BACKENDS, default_value=backends.BACKENDS[0], config=True,
                   help="Where maps run: 'localhost' (embedded, no account needed) "
                        "or 'aliyun_fc' (Alibaba Cloud Function Compute).")
    memory = Int(256, config=True,
                 help="Memory per task in MB. Function Compute accepts multiples "
                      "of 64 from 128 to 32768.")
    cpu = Float(0.0, config=True,
                help="vCPU per task on Function Compute: a multiple of 0.05 in 0.05..16, "
                     "with vCPU : memory GB between 1:1 and 1:4; 0 takes the least FC "
                     "allows for the memory (memory GB / 4).")
    timeout = Int(300, config=True,
                  help="Seconds a single task may run before it is reported as timed out "
                       "(1..86400).")
    max_tasks = Int(MAX_TASKS, config=True,
                    help="Most items one %fc_map reads from ITERABLE (one task each); a "
                         "longer or endless iterable is refused before anything runs.")
    progress_after = Float(1.0, config=True,
                           help="Seconds a map runs before its progress view appears, "
                                "so quick maps do not flash a bar.")
    cache_dir = Unicode(config=True,
                        help="Where built runtimes are cached (default ~/.cache/fc_magic).")
    shared_cache = Bool(True, config=True,
                        help="aliyun_fc: share runtimes through the OSS bucket (the team "
                             "cache): %%fc_runtime takes a runtime this machine lacks from "
                             "fc_magic/runtimes/ in the bucket instead of building it, and "
                             "publishes what it builds there. False: local builds only (the "
                             "package is still stored once in the bucket for deploying).")
    view = Enum(("auto", "widget", "text"), default_value="auto", config=True,
                help="Progress view: 'widget' (ipywidgets), 'text', or 'auto' "
                     "(widgets when the shell has a kernel).")
    workers = Int(0, config=True,
                  help="Parallel worker processes for the localhost backend "
                       "(0: one per CPU core).")
    config_file = Unicode("", config=True,
                          help="aliyun_fc: the Lithops config file with the Alibaba Cloud "
                               "credentials (sections aliyun, aliyun_fc, aliyun_oss); empty: "
                               "Lithops' own lookup ($LITHOPS_CONFIG_FILE, ./.lithops_config, "
                               "~/.lithops/config).")
    profile = Unicode("", config=True,
                      help="aliyun_fc: the credentials profile to use, from the aliyun CLI's "
                           "~/.aliyun/config.json (AK, StsToken, RamRoleArn, EcsRamRole ...) "
                           "or ~/.alibabacloud/credentials.ini (empty: the Lithops config's "
                           "keys, then Alibaba Cloud's default chain: environment, OIDC, "
                           "the CLI's current profile, credentials.ini, the instance RAM "
                           "role).")
    region = Unicode("", config=True,
                     help="aliyun_fc: region such as 'cn-hangzhou' (empty: the Lithops "
                          "config's).")
    fc_endpoint = Unicode("", config=True,
                          help="aliyun_fc: Function Compute endpoint override, e.g. the "
                               "VPC-internal '<account>.<region>-internal.fc.aliyuncs.com' "
                               "inside Alibaba Cloud (PAI-DSW) or a sandbox's "
                               "'http://127.0.0.1:PORT' (empty: the public endpoint).")
    oss_endpoint = Unicode("", config=True,
                           help="aliyun_fc: OSS endpoint override for the client and the "
                                "workers, e.g. 'oss-<region>-internal.aliyuncs.com' inside "
                                "Alibaba Cloud (empty: Lithops' public/internal defaults).")

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        #: The runtime %fc_map uses, set by %%fc_runtime (None: the kernel's own Python).
        self.current_runtime = None
        #: The last map run from this kernel and its request (the slider's cost line, re-runs).
        self.last_map: MapResult | None = None
        self.last_request: MapRequest | None = None
        #: FCMagic.memory as views see it: read, set, follow; never the magic itself.
        self.memory_setting = Setting(self, "memory")
        self.cpu_setting = Setting(self, "cpu")
        if shell is not None:
            # A kernel asked to shut down sets exit_now, then is killed if it has not
            # exited within seconds: background maps are stopped at once, not at atexit.
            shell.observe(self._on_exit_now, names="exit_now")

    def _on_exit_now(self, change) -> None:
        import sys

        if change["new"] and "fc_magic.background" in sys.modules:
            sys.modules["fc_magic.background"].cancel_all()

    @default("cache_dir")
    def _cache_dir_default(self) -> str:
        return default_cache_dir()

    @validate("memory", "timeout")
    def _check_fc_limit(self, proposal):
        """Function Compute's own rules, from fc_magic.limits."""
        check = {"memory": limits.memory_problem, "timeout": limits.timeout_problem}
        problem = check[proposal["trait"].name](proposal["value"])
        if problem:
            raise TraitError(problem)
        return proposal["value"]

    @validate("cpu")
    def _check_cpu(self, proposal):
        """FC's step and range; the ratio to memory is checked when a map uses both."""
        value = proposal["value"]
        problem = limits.cpu_problem(value) if value else None
        if problem:
            raise TraitError(f"{problem} (or 0 for the least FC allows)")
        return value

    @validate("progress_after")
    def _check_progress_after(self, proposal):
        if proposal["value"] < 0:
            raise TraitError("progress_after must be >= 0 seconds")
        return proposal["value"]

    @validate("max_tasks")
    def _check_max_tasks(self, proposal):
        if proposal["value"] < 1:
            raise TraitError("max_tasks must be >= 1")
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
    @argument("--cpu", type=float, default=None,
              help="vCPU per task for this call on Function Compute (default: FCMagic.cpu; "
                   "multiples of 0.05, 1 to 4 GB of memory per vCPU).")
    @argument("--timeout", "-t", type=int, default=None,
              help="Per-task timeout in seconds for this call (default: FCMagic.timeout).")
    @argument("--out", "-o", default=None, metavar="NAME",
              help="Also store the MapResult in this variable.")
    @argument("--quiet", "-q", action="store_true",
              help="No progress view and no failure report; just return the MapResult.")
    @argument("--background", "-b", action="store_true",
              help="Return at once: the MapResult fills in as tasks finish while other cells "
                   "run (r.done(), r.wait(timeout), r.cancel(), r.progress; %%fc_wait NAME). "
                   "A kernel interrupt does not stop it; kernel shutdown does.")
    @argument("--reduce", default=None, metavar="G",
              help="Then run G(list of results in input order) remotely, as one more task "
                   "(Lithops' map_reduce): the map's values stay in storage and only G's "
                   "value comes back, in r.reduced. Not run if a task failed, unless "
                   "--reduce-partial.")
    @argument("--reduce-partial", action="store_true",
              help="With --reduce: run G over the successful results even if some tasks "
                   "failed.")
    @argument("--star", action="store_true",
              help="Call FUNC(*item): each item is a tuple or list of positional arguments.")
    @argument("--kwargs", action="store_true",
              help="Call FUNC(**item): each item is a dict of keyword arguments.")
    @argument("--const", action="append", default=[], metavar="NAME=EXPR",
              help="Pass NAME=value (EXPR evaluated in the notebook) as a keyword to every call; "
                   "repeatable. The value travels once per map with the function, not once "
                   "per task: use it for a model or a lookup table.")
    @argument("--chunk-size", default=None, metavar="SIZE",
              help="With an object source: one task per SIZE bytes of each object (e.g. "
                   "64MB; 1MB = 2**20 bytes), split on line boundaries (default: one task "
                   "per object).")
    @argument("--files", action="store_true",
              help="ITERABLE is a local folder or file path (localhost backend): one task "
                   "per file, as with file:///path/.")
    @line_magic
    def fc_map(self, line: str = ""):
        """Run FUNC over every item of ITERABLE with Lithops and return a MapResult.

        Each item is one task: FUNC(item) runs on a worker (local processes on
        the 'localhost' backend, Function Compute instances on 'aliyun_fc');
        --star calls FUNC(*item), --kwargs FUNC(**item), and each --const
        NAME=EXPR adds the keyword NAME to every call (sent once per map).
        With --background the cell returns at once and the MapResult fills
        in while other cells run; r.to_pandas() gives one row per task.
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

            In [8]: %fc_map power [(2, 10), (3, 4)] --star          # power(2, 10), power(3, 4)

            In [9]: %fc_map fit [{'alpha': 0.1}, {'alpha': 1.0}] --kwargs --const X=X_train

            In [10]: r = %fc_map slow range(5000) --background   # returns at once

            In [11]: r.progress, r.done()        # other cells run; r fills in

            In [12]: %fc_wait r                  # or r.wait(timeout=60), r.cancel()

            In [13]: r.to_pandas().groupby("status").duration_s.describe()

            In [14]: t = %fc_map count_words files --reduce merge_counts

            In [15]: t.reduced                   # merge_counts([...]) ran remotely

        Objects as input: one task per object under an OSS prefix (aliyun_fc)
        or per file of a local folder (localhost), or per chunk of each with
        --chunk-size (split on line boundaries: every line in exactly one
        chunk). FUNC receives an object with .key, .size, .range, .read()
        and .open() (a stream; .open("r") for text)::

            In [16]: def count_lines(obj):
               ....:     return sum(1 for line in obj.open())

            In [17]: r = %fc_map count_lines oss://my-bucket/logs/ --chunk-size 64MB

            In [18]: r = %fc_map count_lines ./data/ --files   # localhost: a local folder
        """
        args = _parse(self.fc_map, line, "fc_map")
        into = None
        try:
            request = self._map_request(args)
            out = check_identifier(args.out, "--out") if args.out else None
            if args.star and args.kwargs:
                raise InputProblem("--star and --kwargs exclude each other; pick the one "
                                   "that matches your items (tuples: --star, dicts: --kwargs)")
            if args.retry:
                func, items, into = self._retry_target(args, request)
            else:
                if not args.func or not args.iterable:
                    missing = "ITERABLE" if args.func else "FUNC and ITERABLE"
                    raise InputProblem(f"missing {missing}; use %fc_map FUNC ITERABLE, or "
                                       f"%fc_map --retry NAME to re-run a stored map's failures")
                request.call = "star" if args.star else "kwargs" if args.kwargs else "item"
                request.constants = parse_constants(args.const, self.shell.user_ns)
                func = resolve_function(args.func, self.shell.user_ns, request.call,
                                        request.constants)
                items = self._object_items(args, request)
                if items is not None and request.call != "item":
                    raise InputProblem(f"--{request.call} spreads each item over FUNC's "
                                       f"parameters, but an object source gives FUNC one "
                                       f"object per task; drop --{request.call}")
                if items is None:
                    items = resolve_items(" ".join(args.iterable), self.shell.user_ns,
                                          self.max_tasks)
                check_picklable(func, items, f"FUNC {args.func!r}", request.constants)
            check_calls(func, items, request.call, request.constants,
                        f"FUNC {args.func!r}" if args.func else "FUNC")
            if args.reduce_partial and not args.reduce:
                raise InputProblem("--reduce-partial needs --reduce G; add the reducer")
            if args.reduce:
                if into is not None:
                    raise InputProblem("--retry re-runs failed tasks only; run the map again "
                                       "to reduce its results")
                request.reduce = resolve_function(args.reduce, self.shell.user_ns, role="--reduce")
                request.reduce_partial = args.reduce_partial
                check_picklable(request.reduce, [], f"--reduce {args.reduce!r}")
            # A package the runtime lacks fails every task; say so before invoking any.
            from .preflight import check_function
            needs = functools.partial(func, **request.constants) if request.constants else func
            check_function(needs, self.current_runtime, backend=self.backend,
                           local_dir=os.getcwd(), func_label=args.func)
            if request.reduce is not None:
                check_function(request.reduce, self.current_runtime, backend=self.backend,
                               local_dir=os.getcwd(), func_label=args.reduce)
        except FCMagicError as exc:
            raise UsageError(f"%fc_map: {exc}") from None

        if args.background:
            if into is not None:
                raise UsageError("%fc_map: --retry runs in the foreground; drop --background")
            result = self._run_in_background(func, items, request, quiet=args.quiet)
        else:
            result = self._run_and_show(func, items, request, quiet=args.quiet, into=into)
        if out:
            self.shell.user_ns[out] = result
        return result

    def _object_items(self, args, request):
        """The parts of an object source (oss://, file://, --files); None for ordinary data."""
        from .objects import parse_source

        source = parse_source(" ".join(args.iterable), files=args.files,
                              chunk_size=args.chunk_size)
        if source is None:
            return None
        from .backends.object_input import list_parts

        return list_parts(request, source, self.max_tasks)

    def _retry_target(self, args, request: MapRequest):
        """(function, failed inputs, (result, positions)) for ``--retry NAME``.

        The stored map's call form and constants come back into ``request``
        unless this call gives its own.
        """
        name = check_identifier(args.retry, "--retry")
        target = self.shell.user_ns.get(name)
        if not isinstance(target, MapResult):
            raise InputProblem(f"--retry {name}: {name!r} is not a MapResult in the notebook; "
                               f"store one with %fc_map FUNC ITERABLE --out {name}")
        if args.iterable:
            raise InputProblem("--retry re-runs the stored inputs; drop ITERABLE")
        call, constants = retry.call_for(target)
        request.call = "star" if args.star else "kwargs" if args.kwargs else call
        request.constants = (parse_constants(args.const, self.shell.user_ns) if args.const
                             else constants)
        func = (resolve_function(args.func, self.shell.user_ns, request.call, request.constants)
                if args.func
                else retry.function_for(target))
        if func is None:
            raise InputProblem(f"--retry {name}: the function of that map is unknown here; "
                               f"pass it: %fc_map FUNC --retry {name}")
        indices, items = retry.retry_inputs(target)
        return func, items, (target, indices)

    def _run_and_show(self, func, items, request, *, quiet: bool = False, into=None,
                      stage=None):
        """Run a map with its view; merge into ``into=(result, positions)`` when given.

        ``stage``: the widget box of the control that started this run (retry,
        re-run); the run's live row and then its receipt are drawn there.
        """
        from . import views
        from .engine import run_map

        kind = views.choose_view_kind(self.shell, self.view)
        backend = self._backend_with_note(request, quiet)
        display = views.MapDisplay(kind, progress_after=self.progress_after, quiet=quiet,
                                   stage=stage, where=backend.describe(request))
        try:
            result = run_map(func, items, request, on_snapshot=display.on_snapshot,
                             should_cancel=display.should_cancel)
        except FCMagicError as exc:  # e.g. aliyun_fc credentials refused, endpoint down
            raise UsageError(f"%fc_map: {exc}") from None
        from .tracebacks import name_cells

        name_cells(result, self._cell_name, func)
        if into is not None:
            result = retry.merge(*into, result)
        else:
            retry.remember_function(result, func, (request.call, request.constants))
        self.last_map, self.last_request = result, request
        display.show_result(result, memory=self.memory_setting, cpu=self.cpu_setting,
                            on_retry=lambda place: self._retry_from_view(result, request, place),
                            on_rerun=lambda mb, place: self._rerun_from_view(result, mb, request,
                                                                             place))
        if kind == "widget" and display.view is not None and stage is None:
            # Out[] of this very cell need not repeat what the receipt shows.
            count = self.shell.execution_count
            result.receipt_shown = lambda: self.shell.execution_count == count
        return result

    @staticmethod
    def _backend_with_note(request, quiet: bool):
        """The request's backend, after showing its one-line note (where, credentials)."""
        from . import views

        backend = backends.get(request.backend)
        try:
            note = backend.note(request)
        except FCMagicError as exc:
            raise UsageError(f"%fc_map: {exc}") from None
        if note and not quiet:
            views.show_note(note)
        return backend

    def _cell_name(self, filename: str) -> str | None:
        """'Cell In[3]' for a file name the kernel compiled a cell under (IPython's own naming)."""
        compiler = getattr(self.shell, "compile", None)
        name = getattr(compiler, "format_code_name", None)
        found = name(filename) if name is not None else None
        return " ".join(found) if found else None

    def _run_in_background(self, func, items, request, *, quiet: bool = False):
        """Start a map in a thread; its view (made now, in this cell) is fed from there."""
        from . import background, views

        from .tracebacks import name_cells

        kind = views.choose_view_kind(self.shell, self.view)
        backend = self._backend_with_note(request, quiet)
        count = self.shell.execution_count
        display = views.MapDisplay(kind, quiet=quiet, background=True,
                                   where=backend.describe(request),
                                   in_own_cell=lambda: self.shell.execution_count == count)

        def on_end(result):
            if runner.error is not None:
                logger.warning("background map %s failed to run: %s", result.function,
                               runner.error)
                return
            name_cells(result, self._cell_name, func)
            retry.remember_function(result, func, (request.call, request.constants))
            self.last_map, self.last_request = result, request
            display.show_result(result, memory=self.memory_setting, cpu=self.cpu_setting,
                                on_retry=lambda place: self._retry_from_view(result, request,
                                                                             place),
                                on_rerun=lambda mb, place: self._rerun_from_view(
                                    result, mb, request, place))

        runner = background.BackgroundMap(
            func, items, request, on_snapshot=display.on_snapshot,
            should_cancel=display.should_cancel, on_cancel=display.cancelling, on_end=on_end)
        return runner.start()

    # ----------------------------------------------------------------- %fc_wait
    @magic_arguments()
    @argument("names", metavar="NAME", nargs="+",
              help="Variables holding MapResults of background maps.")
    @argument("--timeout", "-t", type=float, default=None,
              help="Give up waiting after this many seconds (the maps keep running).")
    @line_magic
    def fc_wait(self, line: str = ""):
        """Wait until the background maps stored in NAME ... have finished.

        Shows one progress row per map while it waits and each map's final
        line at the end. Interrupting the wait (the stop button) stops the
        wait only; the maps keep running. Returns the MapResult, or a list
        of them for several names.

        Examples
        --------
        ::

            In [1]: r = %fc_map slow range(200) --background

            In [2]: len(r.results), r.progress        # meanwhile, other work

            In [3]: %fc_wait r                        # blocks until r is complete
        """
        import time

        from . import views

        args = _parse(self.fc_wait, line, "fc_wait")
        results = []
        for name in args.names:
            try:
                check_identifier(name, "NAME")
            except InputProblem as exc:
                raise UsageError(f"%fc_wait: {exc}") from None
            value = self.shell.user_ns.get(name)
            if not isinstance(value, MapResult):
                raise UsageError(f"%fc_wait: {name!r} is not a MapResult in the notebook; "
                                 f"start one with {name} = %fc_map FUNC ITERABLE --background")
            results.append(value)
        kind = views.choose_view_kind(self.shell, self.view)
        displays = [views.MapDisplay(kind, progress_after=0.0) for _ in results]
        if kind != "widget":  # the map's own final line would repeat the one printed here
            for result in results:
                if result._runner is not None:
                    result._runner.quiet_end = True
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        while True:
            runners = [r._runner for r in results]
            for runner, display in zip(runners, displays):
                if runner is not None and not runner.latest.final:  # the end is drawn below
                    display.on_snapshot(runner.latest)
            if all(r.done() for r in results):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise UsageError(f"%fc_wait: not finished after {args.timeout:g} s "
                                 f"(they keep running); wait again or cancel with NAME.cancel()")
            results[[r.done() for r in results].index(False)].wait(0.2)
        for result in results:
            result.wait()  # the map's own end is drawn (its thread draws it right after done)
        for result, display in zip(results, displays):
            display.on_snapshot(_final_snapshot_of(result))
            if kind == "widget":  # this cell still runs: the static receipt, as a foreground map
                display.show_result(result)
        return results[0] if len(results) == 1 else results

    def _retry_from_view(self, result, request, stage=None):
        """The view's "retry failed" button: the failed inputs again, same runtime and settings."""
        indices, items = retry.retry_inputs(result)
        return self._run_and_show(retry.function_for(result), items, request,
                                  into=(result, indices), stage=stage)

    def _rerun_from_view(self, result, memory_mb: int, request, stage=None):
        """The slider's "re-run with this memory": the whole map again, in place."""
        from .pricing import fitting_cpu

        # A chosen vCPU the new size does not allow gives way to that size's default.
        request = dataclasses.replace(request, memory_mb=memory_mb,
                                      cpu=fitting_cpu(request.cpu, memory_mb))
        return self._run_and_show(retry.function_for(result), list(result.inputs), request,
                                  into=(result, list(range(len(result.inputs)))), stage=stage)

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

        views.show_memory(self.memory_setting, views.choose_view_kind(self.shell, self.view),
                          last_map=self.last_map, on_rerun=self._rerun_last,
                          cpu=self.cpu_setting)

    def _rerun_last(self, memory_mb: int, stage=None):
        if self.last_map is not None and self.last_request is not None:
            self._rerun_from_view(self.last_map, memory_mb, self.last_request, stage)

    # -------------------------------------------------------------- %%fc_runtime

    @magic_arguments()
    @argument("name", metavar="NAME", nargs="?", default=None,
              help="Runtime name (letters, digits, '_', '-'). As a line magic: switch to "
                   "the cached runtime of that name.")
    @argument("--capture", "-c", action="store_true",
              help="Also add the packages imported by the cells executed so far "
                   "(pinned to the versions installed in this kernel).")
    @argument("--no-pin", action="store_true",
              help="Leave requirements without a version unpinned instead of pinning them "
                   "to the versions installed in this kernel.")
    @argument("--memory", "-m", type=int, default=None,
              help="Default memory in MB of every %%fc_map that uses this runtime.")
    @argument("--cpu", type=float, default=None,
              help="vCPU per task of every later %%fc_map on Function Compute (sets "
                   "FCMagic.cpu; 0: the least FC allows for the memory).")
    @argument("--rebuild", action="store_true",
              help="Build again even if the cache already holds this runtime.")
    @argument("--list", "-l", dest="list_all", action="store_true",
              help="List the cached runtimes (name, target, key, size, packages).")
    @argument("--remove", metavar="NAME", default=None,
              help="Forget runtime NAME and delete its cached builds no other name uses.")
    @argument("--gc", action="store_true",
              help="Delete cached builds no runtime name uses any more.")
    @argument("--remote", action="store_true",
              help="With --gc on aliyun_fc: also delete the FC functions and OSS packages "
                   "of runtimes no name here uses, unless used in the last hour (asks first).")
    @argument("--yes", "-y", action="store_true",
              help="With --gc --remote: delete without asking.")
    @line_cell_magic
    def fc_runtime(self, line: str = "", cell: str | None = None):
        """Build (once) the runtime that %fc_map runs tasks in, from a package list.

        The cell body is a requirements list (PEP 508 lines; comments and blank
        lines allowed). It is resolved (pinned to this kernel's versions, Lithops'
        worker packages added), shown, and built for the current backend: a venv
        for 'localhost', a Function Compute code package for 'aliyun_fc'. Builds
        are cached by content under FCMagic.cache_dir: running the same cell
        again reuses the build at once, and a changed list gets a new deploy name
        (NAME-<key8>). The runtime becomes the current one for %fc_map; a package
        missing from it is not importable in a task.

        Examples
        --------
        ::

            In [1]: %%fc_runtime my_rt --memory 1024
               ...: humanize
               ...: scikit-learn>=1.3

            In [2]: %fc_runtime              # the current runtime

            In [3]: %fc_runtime --list       # every cached runtime

            In [4]: %fc_runtime --remove my_rt

            In [5]: %fc_runtime --gc         # drop builds no name uses
        """
        args = _parse(self.fc_runtime, line, "fc_runtime")
        magic = "%%fc_runtime" if cell is not None else "%fc_runtime"
        try:
            if cell is not None:
                return self._build_runtime(args, cell)
            return self._runtime_line(args)
        except InputProblem as exc:
            raise UsageError(f"{magic}: {exc}") from None

    def _build_runtime(self, args, cell: str) -> None:
        from . import views
        from .capture import kernel_capture
        from .requirements import check_runtime_name, requirements_table, resolve_requirements
        from .runtime import BuildFailed, ensure_runtime
        from .views import build as build_views

        if args.list_all or args.remove or args.gc:
            raise InputProblem("--list, --remove and --gc are line forms; use %fc_runtime "
                               "--list (one %) in a cell of their own")
        if not args.name:
            raise InputProblem("a runtime NAME is required, e.g. %%fc_runtime my_rt")
        name = check_runtime_name(args.name)
        if args.memory is not None and limits.memory_problem(args.memory):
            raise InputProblem(f"{limits.memory_problem(args.memory)}; pass a valid --memory")
        if args.cpu:
            problem = limits.cpu_problem(args.cpu, args.memory or self.memory)
            if problem:
                raise InputProblem(f"{problem}; pass a valid --cpu")
        captured, warnings = (), []
        if args.capture:
            report = kernel_capture(self.shell)
            captured, warnings = report.modules, list(report.warnings)
        reqs = resolve_requirements(cell, captured, backend=self.backend,
                                    pin=not args.no_pin, local_dir=os.getcwd())
        kind = views.choose_view_kind(self.shell, self.view)
        shown = build_views.requirements_shown(requirements_table(reqs),
                                               [*warnings, *reqs.warnings])
        # The table shows when a build starts; a cache hit is one line with it folded away.
        feed = build_views.build_feed(kind, requirements=shown)
        message = ""
        try:
            if self.backend == "aliyun_fc" and self.shared_cache:
                from .backends.aliyun_store import lazy_store
                from .runtime.shared import team_runtime

                outcome = team_runtime(name, reqs, store=lazy_store(self._settings_request()),
                                       cache_dir=self.cache_dir, rebuild=args.rebuild,
                                       on_snapshot=feed)
                entry, message = outcome.entry, outcome.message
            else:
                entry = ensure_runtime(name, reqs, target=backends.target_for(self.backend),
                                       cache_dir=self.cache_dir, rebuild=args.rebuild,
                                       on_snapshot=feed)
        except BuildFailed as exc:
            raise InputProblem(f"building {name} failed ({exc}); fix or remove that "
                               f"requirement and run the cell again") from None
        if message:
            build_views.show_text(message, kind)
        self._make_current(entry, args.memory)
        if args.cpu is not None:
            self.cpu = args.cpu
        if feed.view is None:  # nothing reported (a builder that reports nothing)
            build_views.show_requirements(shown, kind)
        hit = getattr(feed.view, "hit_html", None) is not None
        if kind == "widget" and (args.memory is not None or not hit):
            # The memory setting as a slider; a plain cache hit stays one line.
            views.memory_slider(self.memory_setting, result=self.last_map,
                                cpu=self.cpu_setting)

    def _make_current(self, entry, memory_mb: int | None) -> None:
        """Use ``entry`` for the next maps; ``--memory`` becomes FCMagic.memory."""
        self.current_runtime = entry
        if memory_mb:
            self.memory = memory_mb

    def _runtime_line(self, args) -> None:
        from . import views
        from .runtime import gc_runtimes, list_runtimes, remove_runtime, runtime_by_name
        from .views import build as build_views

        kind = views.choose_view_kind(self.shell, self.view)
        if args.list_all:
            text = build_views.runtime_list_text(list_runtimes(self.cache_dir))
            if self.backend == "aliyun_fc" and self.shared_cache:
                text += "\n\n" + self._shared_list_text()
        elif args.remove:
            done = remove_runtime(self.cache_dir, args.remove)
            if self.current_runtime is not None and self.current_runtime.name == args.remove:
                self.current_runtime = None
            text = done.summary(args.remove)
        elif args.gc:
            text = gc_runtimes(self.cache_dir).summary()
            if args.remote:
                text += "\n" + self._remote_gc(args.yes, kind)
        elif args.remote or args.yes:
            raise InputProblem("--remote and --yes go with --gc: %fc_runtime --gc --remote")
        elif args.name:
            target = backends.target_for(self.backend)
            entry = runtime_by_name(self.cache_dir, args.name, target)
            if entry is None:
                raise InputProblem(f"no cached {target} runtime named {args.name!r}; build it "
                                   f"with %%fc_runtime {args.name} and its package list")
            self._make_current(entry, args.memory)
            text = build_views.runtime_text(entry)
        elif self.current_runtime is None:
            text = ("no current runtime: %fc_map runs tasks with this kernel's Python; "
                    "define one with %%fc_runtime NAME and a package list")
        else:
            text = build_views.runtime_text(self.current_runtime)
        build_views.show_text(text, kind)

    def _remote_gc(self, yes: bool, kind: str) -> str:
        """The cloud half of --gc: show the plan, ask (unless --yes), delete."""
        from .backends.aliyun_gc import delete, plan
        from .backends.aliyun_store import open_store
        from .runtime import named_keys
        from .runtime.shared import publish_names
        from .runtime.sizes import human
        from .views import build as build_views

        if self.backend != "aliyun_fc":
            raise InputProblem("--remote cleans Function Compute; set %config FCMagic.backend "
                               "= 'aliyun_fc' first")
        request = self._settings_request()
        store = open_store(request)
        # This machine's names as they are now: a name removed here stops keeping its key.
        publish_names(store, self.cache_dir)
        executor = backends.get("aliyun_fc").executor(request)
        try:
            backend = executor.compute_handler.backend
            planned = plan(store, backend, named_keys(self.cache_dir, "fc"))
            if not planned.keys:
                return "remote: " + planned.describe(human)
            if not yes:
                build_views.show_text("remote: would delete " + planned.describe(human), kind)
                if not self.shell.ask_yes_no("Delete them? [y/N]", default="n"):
                    return "remote: nothing deleted"
            delete(planned, store, backend)
            return "remote: deleted " + planned.describe(human)
        finally:
            executor.job_monitor.stop()

    def _settings_request(self) -> MapRequest:
        """The aliyun_fc settings alone, for the team cache (no runtime, no sizes)."""
        return MapRequest(backend=self.backend, **self._aliyun_settings())

    def _shared_list_text(self) -> str:
        from .backends.aliyun_store import PREFIX, open_store
        from .runtime.shared import list_shared
        from .views import build as build_views

        store = open_store(self._settings_request())
        return build_views.shared_list_text(list_shared(store),
                                            f"oss://{store.bucket_name}/{PREFIX}")

    def _map_request(self, args) -> MapRequest:
        """The request for this call: traits, then this call's flags, checked by its backend."""
        runtime = self.current_runtime
        # A runtime's --memory was copied into the trait when it became current,
        # so the trait (and every slider bound to it) decides.
        memory = self.memory if args.memory is None else args.memory
        timeout = self.timeout if args.timeout is None else args.timeout
        cpu = (self.cpu if getattr(args, "cpu", None) is None else args.cpu) or None
        for problem, flag in ((limits.memory_problem(memory), "--memory"),
                              (limits.timeout_problem(timeout), "--timeout")):
            if problem:
                raise InputProblem(f"{problem}; pass a valid {flag} or set "
                                   f"%config FCMagic.{flag[2:]}")
        if cpu is not None and limits.memory_problem(memory) is None:
            problem = limits.cpu_problem(cpu, memory)
            if problem:
                raise InputProblem(f"{problem}; pass a valid --cpu or set %config FCMagic.cpu")
        fields = {}
        if runtime is not None:
            from .runtime import map_fields

            fields = map_fields(runtime, self.backend)
        request = MapRequest(backend=self.backend, memory_mb=memory, timeout_s=timeout,
                             cpu=cpu, workers=self.workers or None, **self._aliyun_settings(), **fields)
        backends.get(self.backend).check(request)
        return request

    def _aliyun_settings(self) -> dict:
        """The aliyun_fc traits as MapRequest fields (empty trait: not set)."""
        return {"region": self.region or None, "fc_endpoint": self.fc_endpoint or None,
                "oss_endpoint": self.oss_endpoint or None,
                "config_file": self.config_file or None, "profile": self.profile or None}
