"""The `fc-magic` command: what the magics do, from a terminal or a script."""
from __future__ import annotations

import argparse
import sys


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
