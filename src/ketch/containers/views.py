"""What ``ps``, ``inspect`` and ``info`` show, in podman's JSON shapes (podman 4)."""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ketch.containers import state as states
from ketch.containers.options import CreateOptions
from ketch.errors import InvalidInputError, KetchError

ZERO_TIME = "0001-01-01T00:00:00Z"
ZERO_EPOCH = -62135596800  # Go's zero time, as podman prints an unset one


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size * 2:
            return f"{seconds // size} {unit}"
    if seconds >= 60:
        return "About a minute"
    return "Less than a second" if seconds < 1 else "1 second" if seconds == 1 else f"{seconds} seconds"


def _status_text(current: dict) -> str:
    status = current["status"]
    now = time.time()
    if status == "running":
        return f"Up {_ago(now - (current.get('started_at') or now))}"
    if status == "paused":
        return "Paused"
    if status == "exited":
        code = current.get("exit_code")
        return f"Exited ({-1 if code is None else code}) {_ago(now - (current.get('finished_at') or now))} ago"
    return "Created"


def _command(engine, record: dict) -> list[str]:
    from ketch.containers.spec import command_of

    try:
        image = engine.store.lookup(record["image"]).parsed_config
        return command_of(image, record["options"])
    except KetchError:
        return list(record["options"].command or [])


def _image_name(engine, record: dict) -> str:
    try:
        names = engine.store.lookup(record["image"]).names
    except KetchError:
        names = []
    wanted = record["meta"].get("image_name", "")
    for name in names:
        if name == wanted or name.endswith("/" + wanted) or name.endswith("/" + wanted + ":latest"):
            return name
    return names[0] if names else wanted


def _ports(engine, record: dict) -> list[dict] | None:
    ports = engine.ports(record["id"])
    return [{"host_ip": p["host_ip"] if p["host_ip"] != "0.0.0.0" else "", "container_port": p["container_port"],
             "host_port": p["host_port"], "range": 1, "protocol": p["protocol"]} for p in ports] or None


def _networks(engine, record: dict) -> dict[str, str]:
    if record["options"].network in ("none", "host"):
        return {}
    return engine.networks().addresses_of(record["id"])


def ps_entry(engine, record: dict, current: dict) -> dict[str, Any]:
    options: CreateOptions = record["options"]
    status = current["status"]
    code = current.get("exit_code")
    return {
        "AutoRemove": options.remove,
        "Command": _command(engine, record),
        "Created": int(record["created"]),
        "CreatedAt": f"{_ago(time.time() - record['created'])} ago",
        "Exited": status == "exited",
        "ExitedAt": int(current["finished_at"]) if current.get("finished_at") else ZERO_EPOCH,
        "ExitCode": (-1 if code is None else code) if status == "exited" else 0,
        "Id": record["id"],
        "Image": _image_name(engine, record),
        "ImageID": record["image"] or "",
        "IsInfra": False,
        "Labels": dict(options.labels) or None,
        "Mounts": [],
        "Names": [record["name"]],
        "Namespaces": {},
        "Networks": sorted(_networks(engine, record)) if status in ("running", "paused") else [],
        "Pid": (current.get("pid") or 0) if status in ("running", "paused") else 0,
        "Pod": "",
        "PodName": "",
        "Ports": _ports(engine, record),
        "Size": None,
        "StartedAt": int(current["started_at"]) if current.get("started_at") else ZERO_EPOCH,
        "State": status,
        "Status": _status_text(current),
    }


def matches(entry: dict, record: dict, filters: list[str]) -> bool:
    """podman's ``ps --filter``: id, name, status, label, ancestor, exited; the same key twice
    matches either value, different keys must all match."""
    import re

    by_key: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"invalid filter {item!r}: want KEY=VALUE")
        if key not in ("id", "name", "status", "label", "ancestor", "exited"):
            raise InvalidInputError(f"invalid filter {key!r}: ketch filters by id, name, status, label, ancestor "
                                    "and exited")
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        def one(value: str) -> bool:
            if key == "id":
                return entry["Id"].startswith(value)
            if key == "name":
                return re.search(value, entry["Names"][0]) is not None
            if key == "status":
                return entry["State"] == value
            if key == "label":
                name, has_value, wanted = value.partition("=")
                labels = entry["Labels"] or {}
                return name in labels and (not has_value or labels[name] == wanted)
            if key == "ancestor":
                return value in (entry["Image"], entry["ImageID"]) or entry["ImageID"].startswith(value) \
                    or entry["Image"].split("/")[-1] in (value, value + ":latest")
            return entry["Exited"] and str(entry["ExitCode"]) == value
        if not any(one(v) for v in values):
            return False
    return True


def _rfc3339(ts: float | None) -> str:
    return states.now_rfc3339(ts) if ts else ZERO_TIME


def inspect(engine, record: dict, current: dict) -> dict[str, Any]:
    from ketch.runtime.container import parse_signal

    options: CreateOptions = record["options"]
    userdata = engine._userdata(record["id"])
    config: dict[str, Any] = {}
    try:
        with open(os.path.join(userdata, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        pass
    command = _command(engine, record)
    try:
        image = engine.store.lookup(record["image"]).parsed_config.container_config
    except KetchError:
        image = {}
    process = config.get("process") or {}
    caps = (process.get("capabilities") or {})
    status = current["status"]
    code = current.get("exit_code")
    stop_signal = options.stop_signal or image.get("StopSignal") or "SIGTERM"
    try:
        stop_number = parse_signal(stop_signal)
    except KetchError:
        stop_number = 15
    return {
        "Id": record["id"],
        "Created": _rfc3339(record["created"]),
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": {
            "OciVersion": "1.0.2",
            "Status": status,
            "Running": status == "running",
            "Paused": status == "paused",
            "Restarting": False,
            "OOMKilled": bool(current.get("oom_killed")),
            "Dead": False,
            "Pid": (current.get("pid") or 0) if status in ("running", "paused") else 0,
            "ConmonPid": (current.get("monitor_pid") or 0) if status in ("running", "paused") else 0,
            "ExitCode": (-1 if code is None else code) if status == "exited" else 0,
            "Error": "",
            "StartedAt": _rfc3339(current.get("started_at")),
            "FinishedAt": _rfc3339(current.get("finished_at")),
        },
        "Image": record["image"] or "",
        "ImageName": _image_name(engine, record),
        "Rootfs": "",
        "Pod": "",
        "ResolvConfPath": os.path.join(userdata, "resolv.conf"),
        "HostnamePath": os.path.join(userdata, "hostname"),
        "HostsPath": os.path.join(userdata, "hosts"),
        "StaticDir": userdata,
        "OCIConfigPath": os.path.join(userdata, "config.json"),
        "OCIRuntime": options.runtime or "ketch-runtime",
        "ConmonPidFile": "",
        "PidFile": "",
        "Name": record["name"],
        "RestartCount": 0,
        "Driver": engine.store.driver_name,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "EffectiveCaps": caps.get("effective") or [],
        "BoundingCaps": caps.get("bounding") or [],
        "ExecIDs": [],
        "GraphDriver": {"Name": engine.store.driver_name,
                        "Data": {"UpperDir": str(engine.store.container_upper(record["id"]))}},
        "Mounts": [{"Type": m["kind"], "Name": m["source"] if m["kind"] == "volume" else "",
                    "Source": engine.volumes().path(m["source"]) if m["kind"] == "volume" else m["source"],
                    "Destination": m["destination"], "RW": "ro" not in m["options"], "Options": m["options"]}
                   for m in options.mounts if m["kind"] != "tmpfs"],
        "Dependencies": [],
        "NetworkSettings": _network_settings(engine, record, current),
        "Namespace": "",
        "IsInfra": False,
        "Config": {
            "Hostname": config.get("hostname") or options.hostname or record["id"][:12],
            "Domainname": "",
            "User": options.user if options.user is not None else image.get("User", ""),
            "AttachStdin": options.interactive,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": options.tty,
            "OpenStdin": options.interactive,
            "StdinOnce": False,
            "Env": process.get("env") or [],
            "Cmd": options.command if options.command else (image.get("Cmd") if options.entrypoint is None else []),
            "Image": record["meta"].get("image_name", ""),
            "Volumes": None,
            "WorkingDir": process.get("cwd") or options.workdir or image.get("WorkingDir") or "/",
            "Entrypoint": options.entrypoint if options.entrypoint is not None else image.get("Entrypoint") or [],
            "OnBuild": None,
            "Labels": dict(options.labels) or None,
            "Annotations": dict(options.annotations),
            "StopSignal": stop_number,
            "CreateCommand": options.create_command,
            "Umask": "0022",
            "Timeout": 0,
            "StopTimeout": options.stop_timeout,
            "Passwd": True,
            "sdNotifyMode": options.sdnotify,
        },
        "HostConfig": {
            "Binds": [],
            "CgroupManager": "cgroupfs",
            "CgroupMode": "host",
            "LogConfig": {"Type": options.log_driver, "Config": None,
                          "Path": os.path.join(userdata, states.LOG_FILE), "Tag": "", "Size": "0B"},
            "NetworkMode": options.network,
            "PortBindings": {},
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
            "AutoRemove": options.remove,
            "CapAdd": list(options.cap_add),
            "CapDrop": list(options.cap_drop),
            "Privileged": options.privileged,
            "ReadonlyRootfs": options.read_only,
            "SecurityOpt": (["no-new-privileges"] if options.no_new_privileges else [])
            + ([f"seccomp={options.seccomp_profile}"] if options.seccomp_profile else []),
            "Tmpfs": {e.partition(":")[0]: e.partition(":")[2] for e in options.tmpfs},
            "Memory": options.memory or 0,
            "NanoCpus": int((options.cpus or 0) * 1e9),
            "PidsLimit": options.pids_limit or 0,
            "Ulimits": [{"Name": r["type"], "Soft": r["soft"], "Hard": r["hard"]}
                        for r in process.get("rlimits") or []],
            "Init": options.init,
        },
    }


def _network_settings(engine, record: dict, current: dict) -> dict[str, Any]:
    ports: dict[str, list | None] = {}
    for p in engine.ports(record["id"]):
        ports.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"] if p["host_ip"] != "0.0.0.0" else "", "HostPort": str(p["host_port"])})
    networks = {}
    for name, address in _networks(engine, record).items():
        network = engine.networks().get(name)
        prefix = network["subnet"].split("/")[1]
        networks[name] = {"IPAddress": address, "IPPrefixLen": int(prefix), "Gateway": network["gateway"],
                          "NetworkID": network["id"]}
    first = next(iter(networks.values()), {})
    return {"Ports": ports, "SandboxKey": current.get("netns") or "", "Networks": networks,
            "IPAddress": first.get("IPAddress", ""), "Gateway": first.get("Gateway", ""),
            "IPPrefixLen": first.get("IPPrefixLen", 0)}


def process_row(pid: int) -> dict[str, Any]:
    """One process as ``podman top`` shows it: USER PID PPID %CPU ELAPSED TTY TIME COMMAND."""
    import pwd

    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return {"USER": "?", "PID": str(pid), "PPID": "?", "%CPU": "0.000", "ELAPSED": "0s", "TTY": "?",
                "TIME": "0s", "COMMAND": "?"}
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks
    elapsed = max(uptime - int(fields[19]) / ticks, 0.001)
    tty = int(fields[4])
    return {"USER": user, "PID": str(pid), "PPID": fields[1], "%CPU": f"{100 * cpu_seconds / elapsed:.3f}",
            "ELAPSED": _duration(elapsed), "TTY": f"pts/{os.minor(tty)}" if tty else "?",
            "TIME": _duration(cpu_seconds), "COMMAND": command or stat[stat.index("(") + 1:stat.rindex(")")]}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"


def info(engine) -> dict[str, Any]:
    from ketch import __version__
    from ketch.runtime import cgroups

    counts = {"running": 0, "paused": 0, "stopped": 0}
    total = 0
    for entry in engine.list(all=True):
        total += 1
        key = entry["State"] if entry["State"] in ("running", "paused") else "stopped"
        counts[key] += 1
    uname = os.uname()
    store = engine.store
    os_release = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                os_release[key] = value.strip('"')
    except OSError:
        pass
    return {
        "host": {
            "arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
            "cgroupManager": "cgroupfs",
            "cgroupVersion": "v2" if cgroups.is_unified() else "v1",
            "distribution": {"distribution": os_release.get("ID", ""), "version": os_release.get("VERSION_ID", "")},
            "hostname": uname.nodename,
            "kernel": uname.release,
            "os": "linux",
            "ociRuntime": {"name": "ketch-runtime", "package": "ketch", "version": __version__},
            "security": {"rootless": os.geteuid() != 0, "seccompEnabled": True,
                         "seccompProfilePath": str(engine.conf.seccomp_file()),
                         "capabilities": ",".join("CAP_" + c for c in engine.conf.default_capabilities)},
            "containersConf": engine.conf.files,
        },
        "store": {
            "configFile": "",
            "containerStore": {"number": total, **counts},
            "graphDriverName": store.driver_name,
            "graphRoot": str(store.root),
            "runRoot": str(store.runroot),
            "imageStore": {"number": len(store.images())},
        },
        "version": {"Version": __version__, "APIVersion": __version__, "OsArch": f"linux/{uname.machine}"},
    }
