"""The `fc-magic` command: what the magics do, from a terminal or a script."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from .runtime.cache import default_cache_dir


def _cmd_run(args) -> int:
    from .notebooks import execute, summary

    try:
        nb = execute(args.notebook, args.output, timeout=args.timeout)
    except FileNotFoundError:
        print(f"fc-magic run: no such notebook: {args.notebook}", file=sys.stderr)
        return 2
    except Exception as exc:  # nbclient's CellExecutionError names the cell
        print(f"fc-magic run: {args.notebook} failed:\n{exc}", file=sys.stderr)
        return 1
    print(summary(nb))
    if args.output:
        print(f"\nexecuted copy saved to {args.output}")
    return 0


def _cmd_runtimes(args) -> int:
    from .errors import InputProblem
    from .runtime import gc_runtimes, list_runtimes, remove_runtime
    from .views.build import runtime_list_text

    cache_dir = args.cache_dir or default_cache_dir()
    try:
        if args.action == "list":
            print(runtime_list_text(list_runtimes(cache_dir)))
            if args.team or args.config:
                print("\n" + _team_list_text(args))
        elif args.action == "remove":
            if not args.name:
                print("fc-magic runtimes remove: NAME is required", file=sys.stderr)
                return 2
            print(remove_runtime(cache_dir, args.name).summary(args.name))
        else:
            print(gc_runtimes(cache_dir).summary())
    except InputProblem as exc:
        print(f"fc-magic runtimes {args.action}: {exc}", file=sys.stderr)
        return 2
    return 0


def _team_list_text(args) -> str:
    """The team cache's runtimes in the bucket of the Lithops config, as %fc_runtime --list."""
    import oss2

    from .backends.aliyun_store import PREFIX, open_store
    from .backends.request import MapRequest
    from .errors import InputProblem
    from .runtime.shared import list_shared
    from .views.build import shared_list_text

    request = MapRequest(backend="aliyun_fc", config_file=args.config, profile=args.profile)
    try:
        store = open_store(request)
        rows = list_shared(store)
    except oss2.exceptions.RequestError:
        raise InputProblem("OSS did not answer; check the network and the Lithops config's "
                           "aliyun_oss endpoint") from None
    except oss2.exceptions.OssError as exc:
        answer = f"{exc.status} {exc.code or ''}".strip()
        raise InputProblem(f"the team cache could not be listed (OSS answered {answer}); "
                           f"check the bucket and the oss:ListObjects permission") from None
    return shared_list_text(rows, f"oss://{store.bucket_name}/{PREFIX}")


def _notebook_declared(path: str, name: str) -> str:
    """The body of the notebook's ``%%fc_runtime NAME`` cell, if it has one."""
    from .capture import notebook_sources

    for source in notebook_sources(path):
        first, _, body = source.partition("\n")
        words = first.split()
        if words[:1] == ["%%fc_runtime"] and len(words) > 1 and words[1] == name:
            return body
    return ""


def _cmd_build(args) -> int:
    import os

    from .errors import InputProblem
    from .requirements import (check_runtime_name, format_table_text, requirements_table,
                               resolve_requirements)
    from .runtime import BuildFailed, ensure_runtime
    from .views.build import build_feed

    source = args.source
    backend = "localhost" if args.target == "local" else "aliyun_fc"
    try:
        name = check_runtime_name(args.name)
        if not os.path.isfile(source):
            raise InputProblem(f"no such file: {source}")
        if source.endswith(".ipynb"):
            from .capture import notebook_capture

            report = notebook_capture(source)
            for warning in report.warnings:
                print(f"note: {warning}")
            declared, captured = _notebook_declared(source, name), report.modules
        else:
            with open(source, encoding="utf-8") as fh:
                declared, captured = fh.read(), ()
        reqs = resolve_requirements(declared, captured, backend=backend, pin=not args.no_pin,
                                    local_dir=os.path.dirname(os.path.abspath(source)))
        print(format_table_text(requirements_table(reqs)))
        for warning in reqs.warnings:
            print(f"note: {warning}")
        entry = ensure_runtime(name, reqs, target=args.target,
                               cache_dir=args.cache_dir or default_cache_dir(),
                               rebuild=args.rebuild,
                               on_snapshot=build_feed("text", stream=sys.stdout))
    except BuildFailed as exc:
        print(f"fc-magic build: {exc}", file=sys.stderr)
        return 1
    except (InputProblem, ValueError) as exc:  # NotebookProblem is a ValueError
        print(f"fc-magic build: {exc}", file=sys.stderr)
        return 2
    print(entry.interpreter or entry.package)
    return 0


def _cmd_requirements(args) -> int:
    """requirements.txt lines on stdout, warnings on stderr: pipe-friendly."""
    from .capture import NotebookProblem
    from .requirements import notebook_requirements

    try:
        reqset = notebook_requirements(args.notebooks, pin=not args.no_pin)
    except NotebookProblem as exc:
        print(f"fc-magic requirements: {exc}", file=sys.stderr)
        return 2
    for warning in reqset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for line in reqset.user_lines():
        print(line)
    return 0


def _write_private(path: str, text: str) -> None:
    """Write ``text`` (it holds a secret) to ``path`` with mode 0600, whatever was there.

    A new file in the same folder, renamed over the target: an existing file
    keeps neither its mode (a 0644 file would show the secret to everyone)
    nor, if it is a symlink, its target.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fc-magic-sandbox-", dir=folder)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def _cmd_sandbox(args) -> int:
    """Run a local FC + OSS sandbox until Ctrl-C and print how to use it."""
    import logging
    import signal
    import threading

    from .sandbox import Faults, Sandbox
    from .sandbox.server import DEFAULT_CONCURRENCY

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    print("starting (the first start on a machine installs FC's preinstalled modules, "
          "about a minute)", flush=True)
    sandbox = Sandbox(port=args.port, concurrency=args.concurrency or DEFAULT_CONCURRENCY,
                      faults=Faults(args.throttle_rate, args.error_rate)).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        text = sandbox.config_yaml()
        if args.config_out:
            _write_private(args.config_out, text)
        where = args.config_out or "<the config above, saved to a file>"
        print(f"Function Compute + OSS sandbox at {sandbox.endpoint} "
              f"(region {sandbox.region}, account {sandbox.account_id})")
        print(f"AccessKey ID:     {sandbox.access_key_id}")
        print(f"AccessKey secret: {sandbox.access_key_secret}  (generated; valid only here)")
        print("\nLithops config (fc_magic also reads the two 'endpoint' keys):\n")
        print(text)
        print("In a notebook:")
        print("  %load_ext fc_magic")
        print("  %config FCMagic.backend = 'aliyun_fc'")
        print(f"  %config FCMagic.config_file = '{where}'")
        print(f"or, with these credentials in your own Lithops config:\n"
              f"  %config FCMagic.fc_endpoint = '{sandbox.endpoint}'\n"
              f"  %config FCMagic.oss_endpoint = '{sandbox.host}'")
        print("\nready; Ctrl-C stops the sandbox", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        sandbox.stop()
    print("sandbox stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fc-magic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute a notebook headless and summarise its outputs")
    run.add_argument("notebook")
    run.add_argument("--output", "-o", help="where to save the executed copy")
    run.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    run.set_defaults(handler=_cmd_run)

    reqs = sub.add_parser("requirements",
                          help="print the packages notebooks import, as requirements.txt lines")
    reqs.add_argument("notebooks", nargs="+", metavar="NOTEBOOK.ipynb")
    reqs.add_argument("--no-pin", action="store_true",
                      help="do not pin to the versions installed here")
    reqs.set_defaults(handler=_cmd_requirements)

    rts = sub.add_parser("runtimes", help="list, remove or garbage-collect cached runtimes")
    rts.add_argument("action", choices=("list", "remove", "gc"))
    rts.add_argument("name", nargs="?", help="runtime name (for remove)")
    rts.add_argument("--cache-dir", help="runtime cache (default ~/.cache/fc_magic)")
    rts.add_argument("--team", action="store_true",
                     help="list: also the team cache (runtimes shared in the Lithops "
                          "config's OSS bucket), as %%fc_runtime --list does on aliyun_fc")
    rts.add_argument("--config", metavar="FILE",
                     help="the Lithops config with the aliyun_fc settings (implies --team; "
                          "default: Lithops' own lookup)")
    rts.add_argument("--profile", help="aliyun credentials profile (as FCMagic.profile)")
    rts.set_defaults(handler=_cmd_runtimes)

    build = sub.add_parser("build", help="build (or find cached) the runtime of a notebook's "
                                         "imports or of a requirements.txt")
    build.add_argument("source", metavar="NOTEBOOK.ipynb|requirements.txt")
    build.add_argument("--name", required=True, help="runtime name, as in %%%%fc_runtime NAME")
    build.add_argument("--target", choices=("local", "fc"), default="local",
                       help="local venv (localhost backend) or FC code package (aliyun_fc)")
    build.add_argument("--no-pin", action="store_true",
                       help="do not pin unversioned requirements to this Python's versions")
    build.add_argument("--rebuild", action="store_true", help="build even if cached")
    build.add_argument("--cache-dir", help="runtime cache (default ~/.cache/fc_magic)")
    build.set_defaults(handler=_cmd_build)

    sbx = sub.add_parser("sandbox", help="run a local Function Compute + OSS on 127.0.0.1 "
                                         "for the aliyun_fc backend, until Ctrl-C")
    sbx.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sbx.add_argument("--concurrency", type=int, default=None,
                     help="function instances running at once (default 32)")
    sbx.add_argument("--config-out", metavar="FILE",
                     help="also write the Lithops config to FILE (mode 600)")
    sbx.add_argument("--throttle-rate", type=float, default=0.0,
                     help="fraction of invocations answered 429 (fault injection)")
    sbx.add_argument("--error-rate", type=float, default=0.0,
                     help="fraction of invocations answered 503 (fault injection)")
    sbx.add_argument("--verbose", "-v", action="store_true",
                     help="log deployments and requests (never payloads)")
    sbx.set_defaults(handler=_cmd_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
