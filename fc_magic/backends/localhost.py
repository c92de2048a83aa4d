"""The embedded default: Lithops' `localhost` backend, tasks in local processes, no account."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .request import MapRequest, merge_sections

logger = logging.getLogger(__name__)


def lithops_config(request: MapRequest) -> dict:
    """The Lithops config for a localhost map; no file or environment is read.

    Lithops' localhost default runtime is a bare interpreter name looked up
    on PATH: with another Python first on PATH every task dies silently and
    get_result() waits for execution_timeout. fc_magic always passes an
    absolute path. Version 1 runs a whole job in one process pool: 100 tiny
    tasks in 0.8 s against 13.8 s for version 2's process per task.
    """
    localhost = {"runtime": request.runtime or sys.executable, "version": 1}
    if request.workers:
        localhost["worker_processes"] = request.workers
    config = {"lithops": {"backend": "localhost", "storage": "localhost"},
              "localhost": localhost}
    return merge_sections(config, request.extra_config)


class LocalhostBackend:
    """Lithops' localhost compute and storage, with a runtime's venv as the task interpreter."""

    name = "localhost"
    target = "local"

    def check(self, request: MapRequest) -> None:
        """Nothing to check before a local map: the interpreter path comes from the cache."""

    def executor(self, request: MapRequest) -> Any:
        import lithops

        return lithops.FunctionExecutor(config=lithops_config(request), log_level=None)

    def describe(self, request: MapRequest) -> str:
        workers = request.workers or os.cpu_count() or 1
        return f"localhost, {workers} worker process{'es' if workers != 1 else ''}"

    def clean(self, executor: Any, futures: list) -> None:
        """Delete the job's data here and now, in this process.

        Lithops' shared background cleaner serves every executor of the
        machine in turn, so a request stuck on an unreachable cloud bucket
        would hold back the local ones indefinitely.
        """
        from lithops.constants import JOBS_PREFIX

        internal = executor.internal_storage
        prefixes = {f"{JOBS_PREFIX}/{f.job_key}/" for f in futures}
        # The runner's job description sits beside the job's folder; a job
        # cancelled before its runner took it would leave it behind.
        prefixes |= {f"{JOBS_PREFIX}/{f.job_key}-job.json" for f in futures}
        prefixes.add(f"{JOBS_PREFIX}/{executor.executor_id}/")
        for prefix in sorted(prefixes):
            try:
                keys = internal.storage.list_keys(internal.bucket, prefix)
                if keys:
                    internal.storage.delete_objects(internal.bucket, keys)
            except OSError as exc:  # a folder another cleaner removed first
                logger.debug("could not delete job data under %s: %s", prefix, exc)


BACKEND = LocalhostBackend()
