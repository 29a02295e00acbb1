"""Health checks (``--health-cmd`` and friends, an image's HEALTHCHECK, ``ketch healthcheck
run``), as podman runs them.

A check is the command run in the container (as ``exec`` runs processes); exit 0 is healthy.
The result goes into ``userdata/healthcheck.json`` (podman's shape: ``Status``,
``FailingStreak``, ``Log`` of the last five runs). ``retries`` failures in a row make the
container unhealthy; failures within ``start_period`` of its start do not count. The monitor of
a detached container runs ``ketch healthcheck run ID`` every ``interval`` seconds: there is no
daemon and no systemd timer.
"""

from __future__ import annotations

import json
import os
import time

from ketch.containers import state as states

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs ~2.5 ms to import: not on ketch run's path)
    from typing import Any

HEALTH_FILE = "healthcheck.json"
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
KEEP_LOG = 5
MAX_OUTPUT = 4096


def parse_healthcheck(cmd: str | None, interval: str | None, timeout: str | None, start_period: str | None,
                      retries: int | None) -> dict[str, Any] | None:
    """``--health-cmd`` (a command line, run by /bin/sh, or a JSON array; ``none`` disables)
    and its settings, as podman reads them."""
    from ketch.containers.options import parse_duration
    from ketch.errors import InvalidInputError

    if cmd is None:
        if any(v is not None for v in (interval, timeout, start_period, retries)):
            raise InvalidInputError("healthcheck options need --health-cmd")
        return None
    if cmd.strip().lower() == "none":
        return {"test": []}
    test: list[str]
    if cmd.strip().startswith("["):
        try:
            parsed = json.loads(cmd)
        except ValueError as exc:
            raise InvalidInputError(f"invalid --health-cmd {cmd!r}: not a JSON array") from exc
        if not parsed or not all(isinstance(p, str) for p in parsed):
            raise InvalidInputError(f"invalid --health-cmd {cmd!r}: want a JSON array of strings")
        if parsed[0] == "CMD-SHELL":
            test = ["/bin/sh", "-c", " ".join(parsed[1:])]
        elif parsed[0] == "CMD":
            test = parsed[1:]
        else:
            test = parsed
    else:
        test = ["/bin/sh", "-c", cmd]
    every = 30.0 if interval is None else (0.0 if interval == "disable" else parse_duration(interval,
                                                                                             "--health-interval"))
    if retries is not None and retries < 1:
        raise InvalidInputError("healthcheck-retries must be greater than 0")
    wait = 30.0 if timeout is None else parse_duration(timeout, "--health-timeout")
    if wait < 1:
        raise InvalidInputError("healthcheck-timeout must be at least 1 second")
    return {"test": test, "interval": every, "timeout": wait,
            "start_period": 0.0 if start_period is None else parse_duration(start_period, "--health-start-period"),
            "retries": 3 if retries is None else retries}


def read(userdata: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(userdata, HEALTH_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def status(userdata: str, check: dict | None) -> str:
    """"healthy", "unhealthy", "starting", or "" for a container without a check."""
    if not check or not check.get("test"):
        return ""
    recorded = read(userdata)
    return recorded["Status"] if recorded else STARTING


def record(userdata: str, check: dict, started_at: float, exit_code: int, output: str, began: float) -> str:
    """Add one run's result; the container's health after it."""
    current = read(userdata) or {"Status": STARTING, "FailingStreak": 0, "Log": []}
    entry = {"Start": states.now_rfc3339(began), "End": states.now_rfc3339(), "ExitCode": exit_code,
             "Output": output[:MAX_OUTPUT]}
    current["Log"] = (current.get("Log") or [])[-(KEEP_LOG - 1):] + [entry]
    if exit_code == 0:
        current["FailingStreak"] = 0
        current["Status"] = HEALTHY
    elif time.time() - started_at >= check.get("start_period", 0):
        current["FailingStreak"] = current.get("FailingStreak", 0) + 1
        if current["FailingStreak"] >= check.get("retries", 3):
            current["Status"] = UNHEALTHY
    path = os.path.join(userdata, HEALTH_FILE)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(current, f)
    os.replace(tmp, path)
    return current["Status"]


def reset(userdata: str) -> None:
    """A new start begins "starting" again."""
    try:
        os.unlink(os.path.join(userdata, HEALTH_FILE))
    except FileNotFoundError:
        pass
