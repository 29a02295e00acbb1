"""``ketch stats``: a container's CPU, memory, network, block I/O and process counts, read from
its cgroup and its network namespace, in podman's fields."""

from __future__ import annotations

import os
import time
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.containers.engine import ContainerRecord


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _network(pid: int) -> tuple[int, int]:
    """Bytes received and sent by the namespace ``pid`` is in, loopback excluded."""
    received = sent = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        if len(fields) >= 9:
            received += int(fields[0])
            sent += int(fields[8])
    return received, sent


def _block_io(cgroup) -> tuple[int, int]:
    read = write = 0
    if cgroup.unified:
        try:
            with open(os.path.join(cgroup.dirs[""], "io.stat")) as f:
                for line in f:
                    for item in line.split()[1:]:
                        key, _, value = item.partition("=")
                        if key == "rbytes":
                            read += int(value)
                        elif key == "wbytes":
                            write += int(value)
        except OSError:
            pass
        return read, write
    directory = cgroup.dirs.get("blkio")
    if not directory:
        return 0, 0
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
        try:
            with open(os.path.join(directory, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        read += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        write += int(parts[2])
            break
        except OSError:
            continue
    return read, write


def sample(record: ContainerRecord, current: dict, cgroup_path: str | None) -> dict[str, Any]:
    """One container's numbers (zeros for one that does not run), from its cgroup (the
    ``linux.cgroupsPath`` it was started with; a container without one has its network's alone)."""
    from ketch.runtime.cgroups import Cgroup

    out: dict[str, Any] = {"ContainerID": record.id, "Name": record.name, "CPUNano": 0, "CPU": 0.0,
                           "AvgCPU": 0.0, "MemUsage": 0, "MemLimit": 0, "MemPerc": 0.0, "NetInput": 0,
                           "NetOutput": 0, "BlockInput": 0, "BlockOutput": 0, "PIDs": 0, "UpTime": 0,
                           "Duration": 0, "SystemNano": time.time_ns()}
    if current["status"] not in ("running", "paused") or not current.get("pid"):
        return out
    cgroup = Cgroup(cgroup_path) if cgroup_path else None
    numbers = cgroup.stats() if cgroup else {}
    cpu = ((numbers.get("cpu") or {}).get("usage") or {}).get("total") or 0
    memory = (numbers.get("memory") or {})
    usage = (memory.get("usage") or {}).get("usage") or 0
    raw = memory.get("raw") or {}
    usage = max(0, usage - raw.get("total_inactive_file", raw.get("inactive_file", 0)))
    limit = (memory.get("usage") or {}).get("limit") or 0
    host = _host_memory()
    if not limit or limit > host:
        limit = host
    elapsed = max(time.time() - (current.get("started_at") or time.time()), 1e-9)
    percent = 100.0 * cpu / (elapsed * 1e9)
    received, sent = _network(current["pid"])
    read, write = _block_io(cgroup) if cgroup else (0, 0)
    out.update(CPUNano=cpu, CPU=percent, AvgCPU=percent, MemUsage=usage, MemLimit=limit,
               MemPerc=100.0 * usage / limit if limit else 0.0, NetInput=received, NetOutput=sent, BlockInput=read,
               BlockOutput=write, PIDs=((numbers.get("pids") or {}).get("current") or 0), UpTime=cpu,
               Duration=cpu)
    return out


def go_duration(nanoseconds: int) -> str:
    """Go's time.Duration.String(): 37.087328ms, 1.5s, 2m3.1s, 0s."""
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 1000:
        return f"{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return _trim(f"{nanoseconds / 1e3:.3f}") + "µs"
    if nanoseconds < 1_000_000_000:
        return _trim(f"{nanoseconds / 1e6:.6f}") + "ms"
    seconds = nanoseconds / 1e9
    hours, rest = divmod(int(nanoseconds // 1_000_000_000), 3600)
    minutes, whole = divmod(rest, 60)
    fraction = _trim(f"{whole + (seconds - int(seconds)):.9f}")
    if hours:
        return f"{hours}h{minutes}m{fraction}s"
    if minutes:
        return f"{minutes}m{fraction}s"
    return f"{fraction}s"


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text
