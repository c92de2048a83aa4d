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
import filecmp
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

#: Fixtures of the tests that take seconds (an IPython kernel, a sandbox, a runtime
#: build): a module marked `fast_only` runs without them, since mutmut runs every
#: covering test once per mutant.
SLOW_FIXTURES = ("ip", "_shell", "fc", "cell", "fake_build", "sandbox", "config_file",
                 "lithops_cache")


@dataclass(frozen=True)
class Target:
    """A module to mutate and the fast tests that exercise it."""

    source: str
    tests: tuple[str, ...]
    #: Leave out the tests that use one of SLOW_FIXTURES.
    fast_only: bool = False
    #: Imported once in mutmut's fork server, not in every mutant's worker (the
    #: third-party packages a test's notebook imports; none of them is mutated).
    preload: tuple[str, ...] = ()
    #: Python run once in the fork server after the preloads: fills caches of modules
    #: not under mutation (installed distributions' metadata takes seconds to read).
    warm: str = ""
    #: Tests (FILE::NAME) left out: they check another module and cost seconds.
    deselect: tuple[str, ...] = ()
    #: Python run before every test: clears a cache of the mutated module, without which
    #: mutmut maps the cached function to the first test that called it only.
    per_test: str = ""


#: Reads every installed distribution's module layout once (fc_magic.requirements
#: caches them; a cold read costs seconds of CPU in every mutant's worker). Only
#: for modules whose tests never call resolve_requirements, which re-reads them
#: when a folder on sys.path changed (mutmut writes into its own).
_WARM_LAYOUTS = (
    "from fc_magic import requirements as _r\n"
    "for _backend in ('localhost', 'aliyun_fc'):\n"
    "    _r.lithops_worker_requirements(_backend)\n"
    "for _dists in _r._packages_distributions().values():\n"
    "    for _dist in _dists:\n"
    "        _r._distribution_layout(_dist)\n")

#: Slow tests (builds, sandbox, kernels, browser, CLI subprocesses, which import the
#: unmutated package) are left out.
MODULES: dict[str, Target] = {
    "limits": Target("fc_magic/limits.py", ("test_limits.py", "test_config.py")),
    "pricing": Target("fc_magic/pricing.py", ("test_pricing.py", "test_views_widgets.py")),
    "progress": Target("fc_magic/progress.py", ("test_views.py", "test_views_widgets.py")),
    "results": Target("fc_magic/results.py", ("test_results.py", "test_views.py")),
    "retry": Target("fc_magic/retry.py", ("test_retry.py", "test_views_widgets.py")),
    "capture": Target("fc_magic/capture.py", ("test_capture.py", "test_capture_units.py"),
                      fast_only=True, deselect=(
                          # requirements' module -> distribution mapping, tested there
                          "test_capture.py::test_notebook_to_requirements_names_mismatched_"
                          "distributions",
                          "test_capture.py::test_local_modules_next_to_the_notebook_are_left_out")),
    "preflight": Target("fc_magic/preflight.py", ("test_preflight.py", "test_preflight_units.py"),
                        fast_only=True,
                        preload=("numpy", "sklearn.linear_model", "yaml", "bs4", "nacl.secret",
                                 "Crypto.Cipher"), warm=_WARM_LAYOUTS),
    "requirements": Target("fc_magic/requirements.py", ("test_requirements.py",
                                                        "test_requirements_units.py"),
                           fast_only=True,
                           per_test="from fc_magic import requirements as _r\n"
                                    "_r._worker_requirements.cache_clear()"),
    "runtime.cache": Target("fc_magic/runtime/cache.py", ("test_runtime_cache.py",
                                                          "test_runtime_units.py")),
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
    """Mutant names explained as equivalent: every backticked name in a list item.

    A name without its module (`x_f__mutmut_3`) belongs to the module of the
    `## MODULE` heading above it; a bare `_N` after a name means that function's
    mutant N.
    """
    if not EQUIVALENTS.exists():
        return set()
    names: set[str] = set()
    prefix = "fc_magic."
    for line in EQUIVALENTS.read_text().splitlines():
        if line.startswith("## "):
            prefix = f"fc_magic.{line[3:].strip()}."
            continue
        if not line.startswith("- "):
            continue
        last = None
        for token in re.findall(r"`([^`]+)`", line):
            if "__mutmut_" in token:
                if not token.startswith("fc_magic."):
                    token = prefix + token
                last = token.rsplit("_", 1)[0]
                names.add(token)
            elif last and re.fullmatch(r"_\d+", token):
                names.add(last + token)
    return names


def _selection_conftest(target: Target) -> str:
    """A root conftest for the mutmut run: preloads and warms once (pytest imports a
    conftest again in every mutant's session: the fork server's import is the one
    that counts) and leaves out the slow tests."""
    slow = SLOW_FIXTURES if target.fast_only else ()
    deselect = [f"tests/{test}" for test in target.deselect]
    return (f'"""Written by tools/mutate.py for {target.source}."""\n'
            "import importlib\nimport sys\n\n"
            "if not getattr(sys, '_fc_mutate_warm', False):\n"
            "    sys._fc_mutate_warm = True\n"
            f"    for _name in {list(target.preload)!r}:\n"
            "        importlib.import_module(_name)\n"
            + "".join(f"    {line}\n" for line in target.warm.splitlines()) + "\n"
            + ("import pytest\n\n\n@pytest.fixture(autouse=True)\ndef _mutate_per_test():\n"
               + "".join(f"    {line}\n" for line in target.per_test.splitlines())
               + "    yield\n\n\n" if target.per_test else "")
            + f"SLOW_FIXTURES = set({list(slow)!r})\n"
            f"DESELECT = {deselect!r}\n\n\n"
            "def pytest_collection_modifyitems(config, items):\n"
            "    slow = [i for i in items if SLOW_FIXTURES & set(getattr(i, 'fixturenames', ()))\n"
            "            or any(i.nodeid.startswith(d) for d in DESELECT)]\n"
            "    if slow:\n"
            "        config.hook.pytest_deselected(items=slow)\n"
            "        items[:] = [i for i in items if i not in slow]\n")


def _verdicts(work: Path, env: dict[str, str]) -> dict[str, str]:
    listed = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"],
                            cwd=work, env=env, capture_output=True, text=True, check=True)
    verdicts = {}
    for line in listed.stdout.splitlines():
        match = _RESULT.match(line)
        if match:
            verdicts[match.group(1)] = match.group(2).strip()
    return verdicts


def _same_package(work: Path) -> bool:
    """Whether the copy in `work` holds the package as it is now (same files, same bytes)."""
    if not (work / "mutants").is_dir():
        return False
    here = {p.relative_to(ROOT): p for p in (ROOT / "fc_magic").rglob("*.py")}
    there = {p.relative_to(work): p for p in (work / "fc_magic").rglob("*.py")}
    return here.keys() == there.keys() and all(
        filecmp.cmp(here[k], there[k], shallow=False) for k in here)


def run_module(name: str, survivors_only: bool = False) -> ModuleScore:
    target = MODULES[name]
    source, tests = target.source, target.tests
    work = WORK / name
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # The machine is shared: MUTATE_JOBS caps mutmut's parallel workers (default 2).
    jobs = os.environ.get("MUTATE_JOBS", "2")
    if survivors_only and _same_package(work):
        # Only the last run's survivors again, against the tests as they are now: mutmut
        # keeps every other verdict and maps the new tests to the functions they reach.
        started = time.monotonic()
        for test in ["conftest.py", *tests]:
            shutil.copy2(ROOT / "tests" / test, work / "tests" / test)
        (work / "conftest.py").write_text(_selection_conftest(target))
        # mutmut maps a test to the functions it reaches only when the test is new:
        # drop the map so that changed tests are mapped again.
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        again = sorted(m for m, v in _verdicts(work, env).items()
                       if v not in KILLED and v != "skipped")
        if again:
            run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", jobs,
                                  *again], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            if run.returncode != 0:
                raise SystemExit(f"mutate: mutmut run failed for {name}:\n{run.stderr[-3000:]}")
        return ModuleScore(name, _verdicts(work, env), time.monotonic() - started)
    if survivors_only:
        print(f"{name}: the package changed since the last run (or there was none): "
              f"running every mutant", flush=True)
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
        # The root conftest that selects the fast tests (_selection_conftest).
        'also_copy = ["conftest.py"]\n'
        # A worker's wall-clock limit is (estimate + constant) * 15 s: on a loaded shared
        # machine a worker for a 10 ms test can take 15 s to start, and a timeout counts
        # as killed, so the constant leaves a minute.
        'timeout_constant = 4.0\n'
        "[tool.pytest.ini_options]\n"
        'markers = ["slow: end-to-end cases"]\n'
        "timeout = 300\n")
    (work / "conftest.py").write_text(_selection_conftest(target))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", jobs],
                         cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:
        raise SystemExit(f"mutate: mutmut run failed for {name}:\n{run.stderr[-3000:]}")
    score = ModuleScore(name, _verdicts(work, env), time.monotonic() - started)
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
    parser.add_argument("--survivors", action="store_true",
                        help="rerun only the last run's surviving mutants against the current "
                             "tests (a full run when the package changed since)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = args.modules or list(MODULES)
    known_equivalent = equivalents()
    scores = []
    for name in names:
        score = run_module(name, survivors_only=args.survivors)
        scores.append(score)
        equivalent = {m for m in score.survivors() if m in known_equivalent}
        unexplained = {m: v for m, v in score.survivors().items() if m not in known_equivalent}
        print(f"{name}: {score.killed}/{score.total} killed = {score.killed / score.total:.2f}"
              f" ({len(equivalent)} equivalent, {len(unexplained)} unexplained; "
              f"{score.seconds:.0f} s)", flush=True)
        for mutant, verdict in sorted(unexplained.items()):
            print(f"    {verdict}: {mutant}", flush=True)
        # A listed name that no longer survives is stale (killed, or renumbered by a change).
        module_prefix = "fc_magic." + name + ".x"
        for mutant in sorted(m for m in known_equivalent if m.startswith(module_prefix)
                             and m not in equivalent):
            print(f"    listed as equivalent but {score.verdicts.get(mutant, 'no such mutant')}: "
                  f"{mutant}", flush=True)
    unexplained = sum(len(set(s.survivors()) - known_equivalent) for s in scores)
    print(record(scores, unexplained).removeprefix(LINE_PREFIX).strip())
    killed = sum(s.killed for s in scores)
    total = sum(s.total for s in scores)
    print(f"mutation score: {killed}/{total} = {killed / total:.2f} over {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
