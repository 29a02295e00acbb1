"""A container's run state, kept beside it in the store: ``userdata/state.json``, written whole
(to a temporary name, then renamed) by whichever process starts, watches or cleans up the
container. Its truth is checked against the process table: a recorded pid that is gone (or is
another process now) means the container exited, whoever was supposed to notice.

This module imports only ``os``, ``json`` and ``time``: the detached monitor uses it.
"""

from __future__ import annotations

import json
import os
import time

STATE_FILE = "state.json"
LOG_FILE = "ctr.log"


def now_rfc3339(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e9) % 10**9:09d}Z"


EXIT_FILE = "exit-code"  # written by the monitor when the init exits, before state.json is


def read(userdata: str) -> dict:
    try:
        with open(os.path.join(userdata, STATE_FILE)) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {"status": "created"}
    if state.get("status") == "running":
        exit_file = os.path.join(userdata, EXIT_FILE)
        code = read_exit_file(exit_file)
        if code is not None:  # exited; the monitor's finish has not recorded it yet
            state.update(status="exited", exit_code=code, pid=0, finished_at=os.path.getmtime(exit_file))
    return state


def read_exit_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def write_exit_file(path: str, status: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{status}\n")
    os.replace(tmp, path)


def write(userdata: str, state: dict) -> None:
    path = os.path.join(userdata, STATE_FILE)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps(state))
    os.replace(tmp, path)


def update(userdata: str, **changes) -> dict:
    state = read(userdata)
    state.update(changes)
    write(userdata, state)
    return state


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None  # a zombie has exited
    return fields[19]


def alive(pid: int | None, started: str | None) -> bool:
    return pid is not None and pid > 0 and start_time(pid) == started


def exited(userdata: str, exit_code: int, *, oom_killed: bool = False) -> dict:
    state = update(userdata, status="exited", exit_code=exit_code, finished_at=time.time(), pid=0,
                   oom_killed=oom_killed)
    try:
        os.unlink(os.path.join(userdata, EXIT_FILE))  # recorded now; a next start begins clean
    except FileNotFoundError:
        pass
    return state


def started(userdata: str, **fields) -> dict:
    """Record a start: the exit status of an earlier run (if a killed monitor left one) goes."""
    try:
        os.unlink(os.path.join(userdata, EXIT_FILE))
    except FileNotFoundError:
        pass
    return update(userdata, status="running", exit_code=None, finished_at=None, cleaned=False, paused=False, **fields)
