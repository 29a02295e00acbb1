"""What ``ps``, ``inspect`` and ``info`` show, in podman's JSON shapes (podman 4)."""

from __future__ import annotations

import json
import os
import sys
import time

from ketch.containers import state as states
from ketch.containers.options import CreateOptions
from ketch.errors import InvalidInputError, KetchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ketch.containers.engine import ContainerRecord

ZERO_TIME = "0001-01-01T00:00:00Z"
ZERO_EPOCH = -62135596800  # Go's zero time, as podman prints an unset one


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: "Less than a second", "5 minutes", "About an hour", "3 days"..."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


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


def _command(engine, record: ContainerRecord) -> list[str]:
    from ketch.containers.spec import command_of

    try:
        image = engine._image_record(record.image).parsed_config
        return command_of(image, record.options)
    except KetchError:
        return list(record.options.command or [])


def image_name(engine, record: ContainerRecord) -> str:
    try:
        names = engine._image_record(record.image).names
    except KetchError:
        names = []
    wanted = record.meta.get("image_name", "")
    for candidate in engine.store.candidates(wanted) if wanted else []:
        if candidate in names:
            return candidate  # the name the user's words resolved to, as podman shows it
    for name in names:
        if name == wanted or name.endswith("/" + wanted) or name.endswith("/" + wanted + ":latest"):
            return name
    return names[0] if names else wanted


def _ports(engine, record: ContainerRecord) -> list[dict] | None:
    ports = engine._ports_of(record.id)
    return [{"host_ip": p["host_ip"] if p["host_ip"] != "0.0.0.0" else "", "container_port": p["container_port"],
             "host_port": p["host_port"], "range": 1, "protocol": p["protocol"]} for p in ports] or None


def _networks(engine, record: ContainerRecord) -> dict[str, str]:
    if record.options.network in ("none", "host"):
        return {}
    return engine.networks().addresses_of(record.id)


def _namespaces(pid: int | None) -> dict[str, str]:
    """``ps --ns``: the inode numbers of the init's namespaces."""
    out = {}
    for key, name in (("Cgroup", "cgroup"), ("IPC", "ipc"), ("MNT", "mnt"), ("NET", "net"), ("PIDNS", "pid"),
                      ("User", "user"), ("UTS", "uts")):
        try:
            out[key] = os.readlink(f"/proc/{pid}/ns/{name}").split("[")[1].rstrip("]") if pid else ""
        except (OSError, IndexError):
            out[key] = ""
    return out


def _size(engine, record: ContainerRecord) -> dict[str, int]:
    """``ps --size``: the writable layer's bytes (RwSize) and the image's plus it (RootFsSize)."""
    from ketch.containers.housekeeping import tree_size

    rw = tree_size(str(engine.store.container_upper(record.id)))
    try:
        image = engine.store.lookup(record.image).size if record.image else 0
    except KetchError:
        image = 0
    return {"RwSize": rw, "RootFsSize": image + rw}


def ps_entry(engine, record: ContainerRecord, current: dict, *, size: bool = False,
             namespaces: bool = False) -> dict[str, Any]:
    from ketch.containers import health

    options: CreateOptions = record.options
    status = current["status"]
    code = current.get("exit_code")
    running = status in ("running", "paused")
    return {
        "AutoRemove": options.remove,
        "Command": _command(engine, record),
        "Created": int(record.created),
        "CreatedAt": f"{_ago(time.time() - record.created)} ago",
        "Exited": status == "exited",
        "ExitedAt": int(current["finished_at"]) if current.get("finished_at") else ZERO_EPOCH,
        "ExitCode": (-1 if code is None else code) if status == "exited" else 0,
        "Id": record.id,
        "Image": image_name(engine, record),
        "ImageID": record.image or "",
        "IsInfra": False,
        "Labels": dict(sorted(options.labels.items())) or None,
        "Mounts": [m["destination"] for m in options.mounts],
        "Names": [record.name],
        "Namespaces": _namespaces(current.get("pid")) if namespaces and running else {},
        "Networks": sorted(engine._network_names(record.options)),  # podman's: configured, in any state
        "Pid": (current.get("pid") or 0) if status in ("running", "paused") else 0,
        "Pod": options.pod or "",
        "PodName": _pod_name(engine, options.pod),
        "Ports": _ports(engine, record),
        "Restarts": current.get("restart_count", 0),
        "Size": _size(engine, record) if size else None,
        "StartedAt": int(current["started_at"]) if current.get("started_at") else ZERO_EPOCH,
        "State": status,
        "Status": _status_text(current),
        "Health": health.status(engine._userdata(record.id), options.healthcheck) if running else "",
    }


PS_FILTERS = ("id", "name", "status", "label", "label!", "ancestor", "exited", "before", "since", "volume",
              "network", "health", "restart-policy", "until", "pod", "expose", "publish", "is-task")
STATES = ("created", "running", "paused", "stopped", "exited", "unknown", "initialized", "removing", "configured")


def parse_filters(filters: list[str]) -> dict[str, list[str]]:
    if not filters:
        return {}
    from ketch.storage.filters import split_filters

    by_key = split_filters(filters, PS_FILTERS, unknown="{key} is an invalid filter")
    for value in by_key.get("status", []):
        if value not in STATES:
            raise InvalidInputError(f"{value} is not a valid status")
    return by_key


def matches(entry: dict, record: ContainerRecord, filters: list[str] | dict, anchors: dict | None = None) -> bool:
    """podman's ``ps --filter``: id, name (a regular expression), status, label (and label!=),
    ancestor, exited, before/since (a container), until (a time), volume, network, health,
    restart-policy, expose/publish (a port); the same key twice matches either value, different
    keys must all match."""
    import re

    by_key = parse_filters(filters) if isinstance(filters, list) else filters
    for key, values in by_key.items():
        def one(value: str, key: str = key) -> bool:
            if key == "id":  # podman's: hex digits are a prefix (any case); anything else, a pattern
                if re.fullmatch(r"[0-9a-fA-F]+", value):
                    return entry["Id"].startswith(value.lower())
                return re.search(value, entry["Id"], re.IGNORECASE) is not None
            if key == "name":
                return re.search(value, entry["Names"][0]) is not None
            if key == "status":
                return entry["State"] == value or value == "stopped" and entry["State"] == "exited"
            if key in ("label", "label!"):
                name, has_value, wanted = value.partition("=")
                labels = entry["Labels"] or {}
                return name in labels and (not has_value or labels[name] == wanted)
            if key == "ancestor":
                return value in (entry["Image"], entry["ImageID"]) or entry["ImageID"].startswith(value) \
                    or entry["Image"].split("/")[-1] in (value, value + ":latest") \
                    or entry["Image"].rsplit(":", 1)[0].endswith("/" + value)
            if key == "exited":
                return entry["Exited"] and str(entry["ExitCode"]) == value
            if key in ("before", "since"):
                anchor = (anchors or {}).get(value)
                if anchor is None:
                    raise KetchError(f'no container with name or ID "{value}" found: no such container')
                return record.created < anchor if key == "before" else record.created > anchor
            if key == "until":
                from ketch.storage.filters import parse_time

                return entry["Created"] < parse_time(value)
            if key == "volume":
                mounts = record.options.mounts
                return any(m.get("source") == value or m.get("destination") == value for m in mounts)
            if key == "network":
                return value in (entry["Networks"] or []) or value in record.options.network.split(",")
            if key == "health":
                return entry.get("Health") == value or value == "none" and not entry.get("Health")
            if key == "restart-policy":
                return (record.options.restart_policy or "no") == value
            if key in ("expose", "publish"):
                port = value.split("/")[0]
                if key == "publish":
                    return any(str(p["host_port"]) == port or str(p["container_port"]) == port
                               for p in entry["Ports"] or [])
                return any(e.split("/")[0] == port for e in record.options.expose)
            if key == "pod":
                return bool(entry["Pod"]) and (entry["Pod"].startswith(value) or entry["PodName"] == value)
            return False
        if key == "label!":
            if any(one(v) for v in values):
                return False
            continue
        if not any(one(v) for v in values):
            return False
    return True


def _rfc3339(ts: float | None) -> str:
    return states.now_rfc3339(ts) if ts else ZERO_TIME


def inspect(engine, record: ContainerRecord, current: dict) -> dict[str, Any]:
    from ketch.runtime.container import parse_signal

    options: CreateOptions = record.options
    userdata = engine._userdata(record.id)
    config: dict[str, Any] = {}
    try:
        with open(os.path.join(userdata, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        pass
    command = _command(engine, record)
    try:
        image_record = engine.store.lookup(record.image)
        parsed = image_record.parsed_config
        image, image_digest = parsed.container_config, image_record.digest
    except KetchError:
        parsed, image, image_digest = None, {}, ""
    process = config.get("process") or {}
    caps = (process.get("capabilities") or {})
    status = current["status"]
    code = current.get("exit_code")
    stop_signal = engine._stop_signal(record, parsed)
    try:
        stop_number = parse_signal(stop_signal)
    except KetchError:
        stop_number = 15
    return {
        "Id": record.id,
        "Created": _rfc3339(record.created),
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
            "Error": current.get("restart_error", ""),
            "StartedAt": _rfc3339(current.get("started_at")),
            "FinishedAt": _rfc3339(current.get("finished_at")),
            "Health": _health(engine, record) if options.healthcheck else
            {"Status": "", "FailingStreak": 0, "Log": None},
            "CheckpointedAt": NEVER,
            "RestoredAt": NEVER,
            "CgroupPath": (config.get("linux") or {}).get("cgroupsPath", ""),
        },
        "Image": record.image or "",
        "ImageDigest": image_digest,
        "ImageName": image_name(engine, record),
        "IsService": False,
        "Rootfs": "",
        "Pod": record.options.pod or "",
        "ResolvConfPath": os.path.join(userdata, "resolv.conf"),
        "HostnamePath": os.path.join(userdata, "hostname"),
        "HostsPath": os.path.join(userdata, "hosts"),
        "StaticDir": userdata,
        "OCIConfigPath": os.path.join(userdata, "config.json"),
        "OCIRuntime": options.runtime or "ketch-runtime",
        "ConmonPidFile": "",
        "PidFile": "",
        "Name": record.name,
        "RestartCount": current.get("restart_count", 0),
        "Driver": engine.store.driver_name,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "EffectiveCaps": caps.get("effective") or [],
        "BoundingCaps": caps.get("bounding") or [],
        "ExecIDs": [],
        "GraphDriver": {"Name": engine.store.driver_name,
                        "Data": {"UpperDir": str(engine.store.container_upper(record.id))}},
        "Mounts": [{"Type": m["kind"], "Name": m["source"] if m["kind"] == "volume" else "",
                    "Source": engine.volumes().path(m["source"]) if m["kind"] == "volume" else m["source"],
                    "Destination": m["destination"], "RW": "ro" not in m["options"], "Options": m["options"]}
                   for m in options.mounts if m["kind"] != "tmpfs"],
        "Dependencies": [],
        "NetworkSettings": _network_settings(engine, record, current),
        "Namespace": "",
        "IsInfra": False,
        "Config": {
            "Hostname": config.get("hostname") or options.hostname or record.id[:12],
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
            "Image": image_name(engine, record),  # podman's: the name resolved, not as typed
            "Volumes": None,
            "WorkingDir": process.get("cwd") or options.workdir or image.get("WorkingDir") or "/",
            # podman 4's Entrypoint is one string
            "Entrypoint": " ".join(options.entrypoint if options.entrypoint is not None
                                   else image.get("Entrypoint") or []),
            "OnBuild": None,
            "Labels": dict(sorted(options.labels.items())) or None,
            "Annotations": dict(sorted(options.annotations.items())),
            "StopSignal": stop_number,
            "CreateCommand": options.create_command,
            "Umask": options.umask or engine.conf.umask or "0022",
            "Timeout": options.timeout,
            **({"Healthcheck": {"Test": ["CMD", *options.healthcheck["test"]],
                                "Interval": int(options.healthcheck.get("interval", 0) * 1e9),
                                "Timeout": int(options.healthcheck.get("timeout", 0) * 1e9),
                                "StartPeriod": int(options.healthcheck.get("start_period", 0) * 1e9),
                                "Retries": options.healthcheck.get("retries", 0)}}
               if options.healthcheck and options.healthcheck.get("test") else {}),
            **({"Timezone": options.tz} if options.tz else {}),
            **({"Secrets": [{"Name": secret["name"]} for secret in options.secrets]} if options.secrets else {}),
            "StopTimeout": options.stop_timeout,
            "Passwd": True,
            "sdNotifyMode": options.sdnotify,
            "HealthcheckOnFailureAction": "none",
        },
        "HostConfig": {
            "Binds": [],
            "CgroupManager": "cgroupfs",
            "CgroupMode": "host",
            "LogConfig": {"Type": options.log_driver, "Config": None, "Path": engine._log_path(record),
                          "Tag": options.log_opts.get("tag", ""),
                          "Size": options.log_opts.get("max-size", "0B")},
            "NetworkMode": options.network if options.network != "private" else "bridge",
            "PortBindings": {},
            "RestartPolicy": {"Name": options.restart_policy, "MaximumRetryCount": options.restart_retries},
            "Devices": [{"PathOnHost": d.split(":")[0], "PathInContainer": (d.split(":") + [d])[1]
                         if len(d.split(":")) > 1 and not set(d.split(":")[1]) <= set("rwm") else d.split(":")[0],
                         "CgroupPermissions": d.split(":")[-1] if set(d.split(":")[-1]) <= set("rwm") and ":" in d
                         else "rwm"} for d in options.devices],
            "Dns": list(options.dns), "DnsOptions": list(options.dns_options), "DnsSearch": list(options.dns_search),
            "ShmSize": options.shm_size if options.shm_size is not None else 65536 * 1024,
            "Sysctls": dict(options.sysctls),
            "PidMode": options.pid or "private", "IpcMode": options.ipc or "private",
            "UTSMode": options.uts or "private", "CgroupnsMode": options.cgroupns or "host",
            "OomScoreAdj": options.oom_score_adj or 0, "CpuShares": options.cpu_shares or 0,
            "CpusetCpus": options.cpuset_cpus or "", "CpuQuota": options.cpu_quota or 0,
            "CpuPeriod": options.cpu_period or 0, "MemoryReservation": options.memory_reservation or 0,
            "MemorySwap": options.memory_swap or 0,
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
            # What podman 4.3 always prints, with the values it has when unset (ketch has no
            # such settings, or they are the defaults).
            "BlkioDeviceReadBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteBps": None,
            "BlkioDeviceWriteIOps": None, "BlkioWeight": 0, "BlkioWeightDevice": None, "Cgroup": "",
            "CgroupConf": None, "CgroupParent": "", "Cgroups": "default", "ConsoleSize": [0, 0],
            "ContainerIDFile": options.cidfile or "", "CpuCount": 0, "CpuPercent": 0, "CpuRealtimePeriod": 0,
            "CpuRealtimeRuntime": 0, "CpusetMems": "", "DiskQuota": 0, "ExtraHosts": list(options.add_host),
            "GroupAdd": list(options.group_add), "IOMaximumBandwidth": 0, "IOMaximumIOps": 0, "Isolation": "",
            "KernelMemory": 0, "Links": None, "MemorySwappiness": 0, "OomKillDisable": False,
            "PublishAllPorts": options.publish_all, "Runtime": "oci", "UsernsMode": "", "VolumeDriver": "",
            "VolumesFrom": list(options.volumes_from) or None,
        },
    }


NEVER = "0001-01-01T00:00:00Z"  # Go's zero time, as podman prints a time that never was


def _health(engine, record: ContainerRecord) -> dict[str, Any]:
    from ketch.containers import health

    userdata = engine._userdata(record.id)
    recorded = health.read(userdata) or {}
    return {"Status": health.status(userdata, record.options.healthcheck),
            "FailingStreak": recorded.get("FailingStreak", 0), "Log": recorded.get("Log") or None}


def _network_settings(engine, record: ContainerRecord, current: dict) -> dict[str, Any]:
    ports: dict[str, list] = {}
    for p in engine.ports(record.id):
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


def _proc(pid: int, root: str) -> dict[str, Any] | None:
    """What /proc says of a host process, with names looked up in the container's files."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat_text = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    return {"pid": pid, "comm": stat_text[stat_text.index("(") + 1:stat_text.rindex(")")], "fields": fields,
            "status": status, "argv": [a.decode(errors="replace") for a in argv if a] if argv else [],
            "root": root}


def _name(table: str, number: str, root: str | None) -> str:
    """A uid or gid's name in ``root``'s /etc/passwd or /etc/group (the number if none)."""
    path = os.path.join(root or "/", "etc", table)
    try:
        with open(path) as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2] == number:
                    return parts[0]
    except OSError:
        pass
    return number


def _go_seconds(seconds: float) -> str:
    from ketch.containers.stats import go_duration

    return go_duration(round(seconds * 1e9))


def _elapsed(p: dict) -> float:
    """Since the process started, as psgo (podman's top) measures it: now less the boot time
    (whole seconds, /proc/stat's btime) plus the start in clock ticks."""
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return max(time.time() - (boot + int(p["fields"][19]) / os.sysconf("SC_CLK_TCK")), 0.0)


def _cpu_seconds(p: dict) -> float:
    return (int(p["fields"][11]) + int(p["fields"][12])) / os.sysconf("SC_CLK_TCK")


def _ns_pid(p: dict, key: str = "NSpid") -> str:
    return (p["status"].get(key) or "").split()[-1] if p["status"].get(key) else str(p["pid"])


TOP_DESCRIPTORS: dict[str, tuple[str, Any]] = {
    "user": ("USER", lambda p: _name("passwd", p["status"]["Uid"].split()[1], p["root"])),
    "ruser": ("RUSER", lambda p: _name("passwd", p["status"]["Uid"].split()[0], p["root"])),
    "huser": ("HUSER", lambda p: _name("passwd", p["status"]["Uid"].split()[1], None)),
    "group": ("GROUP", lambda p: _name("group", p["status"]["Gid"].split()[1], p["root"])),
    "rgroup": ("RGROUP", lambda p: _name("group", p["status"]["Gid"].split()[0], p["root"])),
    "hgroup": ("HGROUP", lambda p: _name("group", p["status"]["Gid"].split()[1], None)),
    "pid": ("PID", lambda p: _ns_pid(p)),
    "hpid": ("HPID", lambda p: str(p["pid"])),
    "ppid": ("PPID", lambda p: (p["status"].get("PPid") or "0") if _ns_pid(p) != "1" else "0"),
    "pgid": ("PGID", lambda p: _ns_pid(p, "NSpgid")),
    "pcpu": ("%CPU", lambda p: f"{100 * _cpu_seconds(p) / max(_elapsed(p), 0.001):.3f}"),
    "etime": ("ELAPSED", lambda p: _go_seconds(_elapsed(p))),
    "time": ("TIME", lambda p: _go_seconds(int(_cpu_seconds(p)))),
    "tty": ("TTY", lambda p: f"pts/{os.minor(int(p['fields'][4]))}" if int(p["fields"][4]) else "?"),
    "args": ("COMMAND", lambda p: " ".join(p["argv"]) + " " if p["argv"] else f"[{p['comm']}]"),
    "comm": ("COMMAND", lambda p: p["comm"]),
    "state": ("STATE", lambda p: p["fields"][0]),
    "nice": ("NI", lambda p: p["fields"][16]),
    "vsz": ("VSZ", lambda p: str(int(p["fields"][20]) // 1024)),
    "stime": ("STIME", lambda p: time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(time.time() - _elapsed(p)))),
    "seccomp": ("SECCOMP", lambda p: {"0": "disabled", "1": "strict", "2": "filter"}.get(
        p["status"].get("Seccomp", "0"), "?")),
    "capeff": ("EFFECTIVE CAPS", lambda p: p["status"].get("CapEff", "")),
    "capprm": ("PERMITTED CAPS", lambda p: p["status"].get("CapPrm", "")),
    "capbnd": ("BOUNDING CAPS", lambda p: p["status"].get("CapBnd", "")),
    "capinh": ("INHERITED CAPS", lambda p: p["status"].get("CapInh", "")),
    "capamb": ("AMBIENT CAPS", lambda p: p["status"].get("CapAmb", "")),
    "label": ("LABEL", lambda p: "-"),
}


def top_table(processes: list[dict], descriptors: list[str]) -> list[list[str]]:
    """``podman top``'s rows (a header first) for these descriptors."""
    rows = [[TOP_DESCRIPTORS[d][0] for d in descriptors]]
    for p in processes:
        row = []
        for d in descriptors:
            try:
                row.append(TOP_DESCRIPTORS[d][1](p))
            except (KeyError, IndexError, ValueError, OSError):
                row.append("?")
        rows.append(row)
    return rows


def process_info(pid: int, root: str) -> dict[str, Any] | None:
    return _proc(pid, root)


def info(engine) -> dict[str, Any]:
    """``system info``: podman 4.3's keys, with ketch's values (its monitor where podman has
    conmon, its runtime, its store)."""
    from ketch import __version__
    from ketch.containers import monitor
    from ketch.runtime import cgroups

    counts = {"running": 0, "paused": 0, "stopped": 0}
    total = 0
    for entry in engine.list(all=True):
        total += 1
        key = entry["State"] if entry["State"] in ("running", "paused") else "stopped"
        counts[key] += 1
    uname = os.uname()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine)
    store = engine.store
    os_release = _key_values("/etc/os-release", "=")
    memory = {k: int(v.split()[0]) * 1024 for k, v in _key_values("/proc/meminfo", ":").items()
              if v.split() and v.split()[0].isdigit()}
    disk = os.statvfs(store.root)
    try:
        from ketch.image.registries import RegistriesConf

        search = RegistriesConf.load().unqualified_search
    except KetchError:
        search = []
    return {
        "host": {
            "arch": arch,
            "buildahVersion": __version__,  # ketch's builder is ketch
            "cgroupManager": "cgroupfs",
            "cgroupVersion": "v2" if cgroups.is_unified() else "v1",
            "cgroupControllers": cgroup_controllers(),
            "conmon": {"package": "ketch", "path": monitor.NATIVE if os.access(monitor.NATIVE, os.X_OK)
                       else monitor.__file__, "version": f"ketch-monitor version {__version__}"},
            "cpus": os.cpu_count() or 1,
            "cpuUtilization": _cpu_utilization(),
            "distribution": {"distribution": os_release.get("ID", ""), "version": os_release.get("VERSION_ID", ""),
                             **({"codename": os_release["VERSION_CODENAME"]}
                                if os_release.get("VERSION_CODENAME") else {})},
            "eventLogger": "file",
            "hostname": uname.nodename,
            "idMappings": {"gidmap": None, "uidmap": None},
            "kernel": uname.release,
            "logDriver": "k8s-file",
            "memFree": memory.get("MemFree", 0),
            "memTotal": memory.get("MemTotal", 0),
            "networkBackend": "ketch",
            "ociRuntime": {"name": "ketch-runtime", "package": "ketch", "path": _which("ketch-runtime"),
                           "version": f"ketch-runtime version {__version__}"},
            "os": "linux",
            "remoteSocket": {"path": ""},  # no service: ketch has no daemon
            "serviceIsRemote": False,
            "security": {"apparmorEnabled": False, "capabilities": ",".join(
                "CAP_" + c for c in engine.conf.default_capabilities), "rootless": engine.store.rootless,
                "seccompEnabled": True, "seccompProfilePath": str(engine.conf.seccomp_file()),
                "selinuxEnabled": False},
            "slirp4netns": {"executable": "", "package": "", "version": ""},
            "swapFree": memory.get("SwapFree", 0),
            "swapTotal": memory.get("SwapTotal", 0),
            "uptime": _uptime(),
            "linkmode": "dynamic",
            "containersConf": engine.conf.files,
        },
        "plugins": {"volume": ["local"], "network": ["bridge"], "log": ["k8s-file", "none", "passthrough"],
                    "authorization": None},
        "registries": {"search": search} if search else {},
        "store": {
            "configFile": "",
            "containerStore": {"number": total, **counts},
            "graphDriverName": store.driver_name,
            "graphOptions": {},
            "graphRoot": str(store.root),
            "graphRootAllocated": disk.f_blocks * disk.f_frsize,
            "graphRootUsed": (disk.f_blocks - disk.f_bfree) * disk.f_frsize,
            "graphStatus": {},
            "imageCopyTmpDir": os.environ.get("TMPDIR") or "/var/tmp",
            "imageStore": {"number": len(store.images())},
            "runRoot": str(store.runroot),
            "volumePath": str(store.root / "volumes"),
        },
        "version": {"APIVersion": __version__, "Version": __version__, "GoVersion": f"python{sys.version.split()[0]}",
                    "GitCommit": "", "BuiltTime": "", "Built": 0, "OsArch": f"linux/{arch}", "Os": "linux"},
    }


def _which(program: str) -> str:
    import shutil  # (not at the top: views is on ketch run's path, shutil costs ~2 ms)

    return shutil.which(program) or ""


def _key_values(path: str, separator: str) -> dict[str, str]:
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.strip().partition(separator)
                out[key.strip()] = value.strip().strip('"')
    except OSError:
        pass
    return out


def _pod_name(engine, pod_id: str | None) -> str:
    if not pod_id:
        return ""
    from ketch.containers.pods import Pods
    from ketch.errors import NotFoundError

    try:
        return Pods(engine.store).get(pod_id).name
    except NotFoundError:
        return ""  # (removed meanwhile)


def cgroup_controllers() -> list[str]:
    """The controllers containers' cgroups get here: cgroup v2's (a v2-only host), or the v1
    hierarchies' (a v1 or hybrid host, where ketch uses v1)."""
    from ketch.runtime import cgroups

    if cgroups.is_unified():
        try:
            with open("/sys/fs/cgroup/cgroup.controllers") as f:
                return f.read().split()
        except OSError:
            return []
    return [c for names in cgroups.hierarchies() for c in names.split(",") if c and not c.startswith("name=")]


def _cpu_utilization() -> dict[str, float]:
    """Since boot, as podman's info reports it: user, system and idle shares of the CPU time."""
    fields = _key_values("/proc/stat", " ").get("cpu", "").split()
    try:
        user, nice, system, idle = (int(v) for v in fields[:4])
    except ValueError:
        return {"userPercent": 0.0, "systemPercent": 0.0, "idlePercent": 0.0}
    total = sum(int(v) for v in fields[:8]) or 1
    return {"userPercent": round(100 * (user + nice) / total, 2), "systemPercent": round(100 * system / total, 2),
            "idlePercent": round(100 * idle / total, 2)}


def _uptime() -> str:
    """podman's words: "1h 31m 28.00s (Approximately 0.04 days)"."""
    try:
        with open("/proc/uptime") as f:
            seconds = float(f.read().split()[0])
    except OSError:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}h {int(minutes)}m {secs:.2f}s (Approximately {seconds / 86400:.2f} days)"
