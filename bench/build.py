"""fc_magic's FC code package build against a Lithops-style build, cold caches, one run.

Same requirement list on both sides (numpy, pandas, humanize plus Lithops'
worker packages, as `%%fc_runtime` resolves it). Lithops' recipe
(`aliyun_fc.build_runtime`, with the user's packages actually installed):
`pip install -t DIR -r requirements.txt`, copy Lithops and its handler in,
`zip -r`. fc_magic: `ensure_runtime(target="fc")` (uv for FC's Python and
platform, binary wheels only, slimmed, zipfile). Caches are cold on both
sides: a fresh fc_magic cache and uv cache, and pip with --no-cache-dir.
Rounds alternate; the best round of each counts. Prints the size ratio, then,
last, the time ratio (goals <= 0.7 and <= 0.5).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import emit  # noqa: E402

from fc_magic.requirements import resolve_requirements  # noqa: E402
from fc_magic.runtime import ensure_runtime, fcpackage  # noqa: E402

PACKAGES = "numpy\npandas\nhumanize\n"
ROUNDS = 2


def lithops_style(lines: list[str], work: str) -> tuple[float, int]:
    """Lithops 3.8's zip recipe with the user's requirements included."""
    build = os.path.join(work, "build")
    os.makedirs(build)
    req = os.path.join(work, "requirements.txt")
    with open(req, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "-q",
                    "-t", build, "-r", req], check=True, cwd=work)
    shutil.copy(fcpackage.handler_file(), build)
    shutil.copytree(fcpackage.lithops_dir(), os.path.join(build, "lithops"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    package = os.path.join(work, "runtime.zip")
    subprocess.run(["zip", "-q", "-r", package, "."], check=True, cwd=build)
    return time.perf_counter() - start, os.path.getsize(package)


def fc_magic_build(reqs, work: str) -> tuple[float, int, float]:
    """(cold build seconds, zip bytes, median cache-hit seconds afterwards)."""
    os.environ["UV_CACHE_DIR"] = os.path.join(work, "uv-cache")
    cache_dir = os.path.join(work, "cache")
    start = time.perf_counter()
    entry = ensure_runtime("bench", reqs, target="fc", cache_dir=cache_dir)
    elapsed = time.perf_counter() - start
    hits = []
    for _ in range(21):
        t = time.perf_counter()
        ensure_runtime("bench", reqs, target="fc", cache_dir=cache_dir)
        hits.append(time.perf_counter() - t)
    return elapsed, os.path.getsize(entry.package), statistics.median(hits)


def main() -> None:
    reqs = resolve_requirements(PACKAGES, backend="aliyun_fc")
    print(f"requirements: {', '.join(reqs.lines())}")
    ours, theirs = [], []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="fc_magic_bench_build_") as work:
            ours.append(fc_magic_build(reqs, work))
        with tempfile.TemporaryDirectory(prefix="fc_magic_bench_build_") as work:
            theirs.append(lithops_style(reqs.lines(), work))
    our_t, our_size = min(t for t, _s, _h in ours), ours[0][1]
    their_t, their_size = min(t for t, _ in theirs), theirs[0][1]
    print(f"cache hit afterwards: {min(h for _t, _s, h in ours) * 1000:.2f} ms (median of 21)")
    print(f"fc_magic:      {our_t:.2f} s  {our_size / 2**20:.1f} MB zip")
    print(f"Lithops-style: {their_t:.2f} s  {their_size / 2**20:.1f} MB zip")
    emit("fc build zip size ratio", our_size / 2**20, their_size / 2**20, "<= 0.7",
         unit="MB")
    emit("fc build time ratio", our_t, their_t, "<= 0.5")


if __name__ == "__main__":
    main()
