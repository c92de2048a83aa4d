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


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    rows, notes, failed = [], [], 0
    for script in scripts:
        print(f"running {script.name} ...", flush=True)
        results, note = run_one(script)
        notes.append(note)
        failed += not results
        for r in results:
            rows.append((script.name, r))
    today = dt.date.today().isoformat()
    lines = ["# Benchmark results", "",
             "Written by `make bench` (bench/run_all.py). Every ratio is fc_magic against a "
             "baseline measured side by side in the same run.", "",
             "| script | figure | fc_magic | baseline | ratio | goal | machine | date |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['figure']} | {fmt(r['fc_magic'], r['unit'])} | "
                     f"{fmt(r['baseline'], r['unit'])} | {r['ratio']:.3f} | {r['goal']} | "
                     f"{machine()} | {today} |")
    lines += ["", *[f"- {n}" for n in notes], *kept_lines(HERE / "RESULTS.md"), ""]
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
