"""How every benchmark reports, so `make bench` can tabulate them.

Each figure is printed twice: a `RESULT {json}` line for bench/run_all.py,
and a human line. A script's headline figure is printed last, as the
project's convention asks ("each benchmark prints its figure as its last line").
"""
from __future__ import annotations

import json


def emit(figure: str, fc_magic: float, baseline: float, goal: str, *, unit: str = "s",
         ratio: float | None = None, lower_is_better: bool = True) -> float:
    """Print one figure measured side by side with its baseline; return the ratio."""
    if ratio is None:
        ratio = fc_magic / baseline if baseline else float("inf")
    print("RESULT " + json.dumps({"figure": figure, "fc_magic": fc_magic, "baseline": baseline,
                                  "unit": unit, "ratio": ratio, "goal": goal,
                                  "lower_is_better": lower_is_better}))
    print(f"{figure} (goal {goal}): {ratio:.3f}")
    return ratio
