"""`make bench`: every bench/*.py in a fresh process, then bench/RESULTS.md.

Each script reports through bench/_report.emit (a `RESULT {json}` line per
figure). The table records what was measured side by side in this run, on
this machine, today; nothing here compares against a stored number.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all.py", "_report.py"}


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.3g} {unit}".strip()


def run_one(script: Path) -> tuple[list[dict], str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=HERE.parent, timeout=3600)
    took = time.perf_counter() - start
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return [], f"{script.name}: FAILED (exit {proc.returncode}) " + " | ".join(tail)
    return results, f"{script.name}: {len(results)} figure(s) in {took:.0f} s"


#: Lines other tools own in RESULTS.md (tools/mutate.py's score): a bench run keeps them.
KEPT_PREFIXES = ("- make mutate:",)


def kept_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.startswith(KEPT_PREFIXES)]


def earlier_rows(path: Path, rerun: set[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The table rows and notes of the scripts not run again now, by script name."""
    rows: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    if not path.exists():
        return rows, notes
    for line in path.read_text().splitlines():
        if line.startswith("| ") and line.split(" | ")[0][2:].endswith(".py"):
            name = line.split(" | ")[0][2:]
            if name not in rerun:
                rows.setdefault(name, []).append(line)
        elif line.startswith("- ") and line[2:].split(":")[0].endswith(".py"):
            name = line[2:].split(":")[0]
            if name not in rerun:
                notes[name] = line
    return rows, notes


def main(names: list[str]) -> int:
    """Run every benchmark, or only ``names`` (their rows replaced, the others kept)."""
    every = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    unknown = sorted(set(names) - {p.name for p in every})
    if unknown:
        print(f"no benchmark {', '.join(unknown)} in bench/; choose from "
              f"{', '.join(p.name for p in every)}", file=sys.stderr)
        return 2
    scripts = [p for p in every if not names or p.name in names]
    kept_rows, kept_notes = earlier_rows(HERE / "RESULTS.md", {p.name for p in scripts})
    table: dict[str, list[str]] = dict(kept_rows)
    notes: dict[str, str] = dict(kept_notes)
    failed = 0
    today = dt.date.today().isoformat()
    for script in scripts:
        print(f"running {script.name} ...", flush=True)
        results, note = run_one(script)
        notes[script.name] = f"- {note}"
        failed += not results
        table[script.name] = [
            f"| {script.name} | {r['figure']} | {fmt(r['fc_magic'], r['unit'])} | "
            f"{fmt(r['baseline'], r['unit'])} | {r['ratio']:.3f} | {r['goal']} | "
            f"{machine()} | {today} |" for r in results]
    lines = ["# Benchmark results", "",
             "Written by `make bench` (bench/run_all.py; `python bench/run_all.py NAME.py` "
             "reruns one script and keeps the other rows). Every ratio is fc_magic against a "
             "baseline measured side by side in the same run.", "",
             "| script | figure | fc_magic | baseline | ratio | goal | machine | date |",
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted(table):
        lines += table[name]
    lines += ["", *[notes[name] for name in sorted(notes)], *kept_lines(HERE / "RESULTS.md"), ""]
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
