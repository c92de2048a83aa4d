"""The same 200 tiny tasks through %fc_map on the FC sandbox and on localhost, in one run.

The sandbox side is the whole cloud path on this machine: the runtime's FC
code package deployed through the FC API, one Async invocation per task
(Lithops' default), the real Lithops handler in warm instances, inputs and
results through the sandbox's OSS. Localhost is fc_magic's embedded default.
Rounds alternate so machine noise hits both; the first map on each side
(deploy, imports) is not timed; both poll job status at Lithops' default
interval. Prints each side's median throughput and,
last, the ratio sandbox / localhost (goal >= 0.5).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TMPDIR", tempfile.mkdtemp(prefix="fc_magic_bench_"))
tempfile.tempdir = None
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import emit  # noqa: E402

TASKS, ROUNDS = 200, 3


def tiny(x):
    return x + 7


def timed_map(ip) -> float:
    start = time.perf_counter()
    result = ip.run_line_magic("fc_map", f"tiny range({TASKS})")
    elapsed = time.perf_counter() - start
    assert result.values == [x + 7 for x in range(TASKS)], result.failures[:1]
    return elapsed


def main() -> None:
    import yaml
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from lithops.storage import storage

    from fc_magic.sandbox import Sandbox

    work = tempfile.mkdtemp(prefix="fc_magic_bench_sandbox_")
    storage.CACHE_DIR = os.path.join(work, "lithops-cache")  # no stale deployments
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fc_magic")
    magic = ip.magics_manager.registry["FCMagic"]
    magic.view = "text"
    ip.user_ns["tiny"] = tiny
    local, cloud = [], []
    with Sandbox(concurrency=4) as sandbox, capture_output():
        config = os.path.join(work, "lithops.yaml")
        settings = sandbox.lithops_config()
        # Both sides poll job status at Lithops' default interval (the
        # sandbox's own config polls faster, which would flatter it).
        settings["lithops"].pop("monitoring_interval", None)
        with open(config, "w") as f:
            yaml.safe_dump(settings, f)

        magic.backend, magic.config_file = "aliyun_fc", config
        ip.run_cell_magic("fc_runtime", "bench", "humanize\n")
        runtime = magic.current_runtime

        def use(backend: str) -> None:
            magic.backend = backend
            magic.config_file = config if backend == "aliyun_fc" else ""
            magic.current_runtime = runtime if backend == "aliyun_fc" else None

        for backend in ("aliyun_fc", "localhost"):  # deploy, cold instances, imports
            use(backend)
            timed_map(ip)
        for _ in range(ROUNDS):
            use("localhost")
            local.append(timed_map(ip))
            use("aliyun_fc")
            cloud.append(timed_map(ip))
    s, l_ = statistics.median(cloud), statistics.median(local)
    print(f"tasks: {TASKS}, rounds: {ROUNDS}, sandbox concurrency: 4, cores: {os.cpu_count()}")
    print(f"sandbox (aliyun_fc path): {s:.3f} s median, {TASKS / s:.1f} tasks/s")
    print(f"localhost: {l_:.3f} s median, {TASKS / l_:.1f} tasks/s")
    emit("sandbox throughput, 200 tiny tasks (sandbox / localhost)", TASKS / s, TASKS / l_,
         ">= 0.5", unit="tasks/s", lower_is_better=False)


if __name__ == "__main__":
    main()
