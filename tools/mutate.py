"""Mutation testing of fc_magic's pure modules with mutmut, one module at a time.

`make mutate` (or `python tools/mutate.py [MODULE ...]`) copies the package and
the module's fast tests into `.mutate/MODULE/`, runs `mutmut run` there with
only those tests, and reads back each mutant's verdict. It prints, per module,
the score (killed / all mutants; a mutant no test reaches counts as surviving)
and the surviving mutants not listed as equivalent in
tests/mutation_equivalents.md, then the overall score as its last line.
`mutmut show NAME` inside `.mutate/MODULE/` prints a mutant's diff.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutate"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.md"
RESULTS = ROOT / "bench" / "RESULTS.md"
#: bench/run_all.py keeps lines with this prefix when it rewrites RESULTS.md.
LINE_PREFIX = "- make mutate:"
_FIGURE = re.compile(r"([\w.]+) (\d+)/(\d+)")

#: module -> (source file, the fast tests that exercise it). Slow tests (builds,
#: sandbox, kernels, browser) are left out: mutmut runs the covering tests per mutant.
MODULES: dict[str, tuple[str, list[str]]] = {
    "limits": ("fc_magic/limits.py", ["test_limits.py", "test_config.py"]),
    "pricing": ("fc_magic/pricing.py", ["test_pricing.py", "test_views_widgets.py"]),
    "progress": ("fc_magic/progress.py", ["test_views.py", "test_views_widgets.py"]),
    "results": ("fc_magic/results.py", ["test_results.py", "test_views.py"]),
    "retry": ("fc_magic/retry.py", ["test_retry.py", "test_views_widgets.py"]),
    "capture": ("fc_magic/capture.py", ["test_capture.py", "test_cli_requirements.py"]),
    "preflight": ("fc_magic/preflight.py", ["test_preflight.py"]),
    "requirements": ("fc_magic/requirements.py", ["test_requirements.py",
                                                  "test_cli_requirements.py"]),
    "runtime.cache": ("fc_magic/runtime/cache.py", ["test_runtime_cache.py",
                                                     "test_runtime_units.py"]),
}
KILLED = {"killed", "timeout"}
_RESULT = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")


@dataclass
class ModuleScore:
    name: str
    verdicts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def killed(self) -> int:
        return sum(v in KILLED for v in self.verdicts.values())

    @property
    def total(self) -> int:
        return sum(v != "skipped" for v in self.verdicts.values())

    def survivors(self) -> dict[str, str]:
        return {m: v for m, v in self.verdicts.items() if v not in KILLED and v != "skipped"}


def equivalents() -> set[str]:
    """Mutant names explained as equivalent: every backticked name in a list item, where
    a bare `_N` after a full name means that function's mutant N."""
    if not EQUIVALENTS.exists():
        return set()
    names: set[str] = set()
    for line in EQUIVALENTS.read_text().splitlines():
        if not line.startswith("- "):
            continue
        last = None
        for token in re.findall(r"`([^`]+)`", line):
            if "__mutmut_" in token:
                last = token.rsplit("_", 1)[0]
                names.add(token)
            elif last and re.fullmatch(r"_\d+", token):
                names.add(last + token)
    return names


def run_module(name: str) -> ModuleScore:
    source, tests = MODULES[name]
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "tests").mkdir(parents=True)
    shutil.copytree(ROOT / "fc_magic", work / "fc_magic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for test in ["conftest.py", *tests]:
        shutil.copy2(ROOT / "tests" / test, work / "tests" / test)
    selection = ", ".join(f'"tests/{t}"' for t in tests)
    (work / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["fc_magic"]\n'
        f'only_mutate = ["{source}"]\n'
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        # One fixed order inside mutmut: it maps tests to the functions they reach.
        'pytest_add_cli_args = ["-p", "no:randomly", "-p", "no:cacheprovider", "-q"]\n'
        # Maps run Lithops' threads in the process that ran the tests; a worker forked
        # from it can inherit a held lock, so workers fork from a clean server.
        'process_isolation = "forkserver"\n'
        "[tool.pytest.ini_options]\n"
        'markers = ["slow: end-to-end cases"]\n'
        "timeout = 300\n")
    started = time.monotonic()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:
        raise SystemExit(f"mutate: mutmut run failed for {name}:\n{run.stderr[-3000:]}")
    listed = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                            cwd=work, env=env, capture_output=True, text=True, check=True)
    score = ModuleScore(name, seconds=time.monotonic() - started)
    for line in listed.stdout.splitlines():
        match = _RESULT.match(line)
        if match:
            score.verdicts[match.group(1)] = match.group(2).strip()
    if not score.verdicts:
        raise SystemExit(f"mutate: mutmut reported no mutants for {name}")
    return score


def record(scores: list[ModuleScore], unexplained: int) -> str:
    """Write (or update) the mutation line of bench/RESULTS.md; modules not run keep
    the figures recorded before. Returns the line."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    old = next((line for line in lines if line.startswith(LINE_PREFIX)), "")
    figures = {m: (int(k), int(n)) for m, k, n in _FIGURE.findall(old.split("(", 1)[-1])}
    figures.update({s.name: (s.killed, s.total) for s in scores})
    ordered = [m for m in MODULES if m in figures]
    killed = sum(figures[m][0] for m in ordered)
    total = sum(figures[m][1] for m in ordered)
    line = (f"{LINE_PREFIX} mutation score {killed}/{total} = {killed / total:.2f} ("
            + ", ".join(f"{m} {figures[m][0]}/{figures[m][1]}" for m in ordered)
            + f"); {unexplained} survivor(s) of this run not in tests/mutation_equivalents.md; "
            + time.strftime("%Y-%m-%d"))
    if old:
        lines[lines.index(old)] = line
    else:
        lines.append(line)
    RESULTS.write_text("\n".join(lines) + "\n")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = args.modules or list(MODULES)
    known_equivalent = equivalents()
    scores = []
    for name in names:
        score = run_module(name)
        scores.append(score)
        equivalent = {m for m in score.survivors() if m in known_equivalent}
        unexplained = {m: v for m, v in score.survivors().items() if m not in known_equivalent}
        print(f"{name}: {score.killed}/{score.total} killed = {score.killed / score.total:.2f}"
              f" ({len(equivalent)} equivalent, {len(unexplained)} unexplained; "
              f"{score.seconds:.0f} s)", flush=True)
        for mutant, verdict in sorted(unexplained.items()):
            print(f"    {verdict}: {mutant}", flush=True)
    unexplained = sum(len(set(s.survivors()) - known_equivalent) for s in scores)
    print(record(scores, unexplained).removeprefix(LINE_PREFIX).strip())
    killed = sum(s.killed for s in scores)
    total = sum(s.total for s in scores)
    print(f"mutation score: {killed}/{total} = {killed / total:.2f} over {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
