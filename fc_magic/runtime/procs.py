"""Name a process so that another one can tell later whether it still runs (PID + start time)."""
from __future__ import annotations

import logging
import os

import psutil

logger = logging.getLogger(__name__)

#: Start times are compared with this slack (psutil derives them from clock ticks).
_SLACK_S = 0.5


def stamp(pid: int | None = None) -> dict:
    """``{"pid", "started"}`` of a process (this one by default), for a file others read."""
    pid = os.getpid() if pid is None else pid
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = None
    return {"pid": pid, "started": started}


def alive(record: object) -> bool:
    """Whether the process a `stamp` names still runs (a reused PID is not it)."""
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return False
    try:
        proc = psutil.Process(record["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = record.get("started")
        return not isinstance(started, (int, float)) or \
            abs(proc.create_time() - started) < _SLACK_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error as exc:  # another user's process: it exists, so it counts
        logger.debug("cannot inspect process %s: %s", record["pid"], exc)
        return True


def kill_dead_builders_group(group: object) -> bool:
    """SIGKILL the process group an installer of a dead build ran in; whether it was signalled.

    ``group`` is a `stamp` of the group's leader. Linux does not hand out a
    number still in use as a group id, so if a process with that number exists
    and is not the leader that was recorded, the old group is empty: leave it.
    """
    from .installer import kill_group

    if not isinstance(group, dict) or not isinstance(group.get("pid"), int) or group["pid"] <= 1:
        return False
    pgid = group["pid"]
    try:
        leader = psutil.Process(pgid)
        same = abs(leader.create_time() - float(group.get("started") or 0)) < _SLACK_S
        if not same:
            return False
    except psutil.NoSuchProcess:
        pass  # the leader ended; members may remain, and they keep the id reserved
    except psutil.Error as exc:
        logger.debug("cannot inspect process %s: %s", pgid, exc)
        return False
    kill_group(pgid)
    return True
