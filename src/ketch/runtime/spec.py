"""Reading, checking and writing runtime-spec ``config.json``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ketch.errors import InvalidInputError, NotFoundError

OCI_VERSION = "1.0.2"
NAMESPACES = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}$")


def check_id(container_id: str) -> str:
    if not ID_RE.match(container_id):
        raise InvalidInputError(f"invalid container id {container_id!r}: letters, digits and _.+- only")
    return container_id


def load(bundle: str) -> dict[str, Any]:
    path = Path(bundle) / "config.json"
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file (is {bundle} a bundle?)") from None
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise InvalidInputError(f"reading {path}: {exc.strerror}") from None
    validate(data, bundle)
    return data


def _type(value: Any, kind, what: str) -> None:
    if not isinstance(value, kind):
        raise InvalidInputError(f"config.json: {what} must be {getattr(kind, '__name__', kind)}")


def validate(config: Any, bundle: str) -> None:
    _type(config, dict, "the document")
    if not isinstance(config.get("ociVersion"), str):
        raise InvalidInputError("config.json: ociVersion is missing")
    root = config.get("root")
    _type(root, dict, "root")
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise InvalidInputError("config.json: root.path is missing")
    rootfs = Path(bundle) / root["path"] if not os.path.isabs(root["path"]) else Path(root["path"])
    if not rootfs.is_dir():
        raise NotFoundError(f"root file system {rootfs} does not exist")
    process = config.get("process")
    if process is not None:
        _type(process, dict, "process")
        args = process.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise InvalidInputError("config.json: process.args must be a non-empty list of strings")
        if not isinstance(process.get("cwd"), str) or not process["cwd"].startswith("/"):
            raise InvalidInputError("config.json: process.cwd must be an absolute path")
        user = process.get("user", {})
        _type(user, dict, "process.user")
        for key in ("uid", "gid"):
            if key in user and (not isinstance(user[key], int) or user[key] < 0):
                raise InvalidInputError(f"config.json: process.user.{key} must be a non-negative integer")
        env = process.get("env", [])
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise InvalidInputError("config.json: process.env must be a list of strings")
    for i, mount in enumerate(config.get("mounts") or []):
        _type(mount, dict, f"mounts[{i}]")
        if not isinstance(mount.get("destination"), str) or not mount["destination"].startswith("/"):
            raise InvalidInputError(f"config.json: mounts[{i}].destination must be an absolute path")
    linux = config.get("linux", {})
    _type(linux, dict, "linux")
    seen = set()
    for ns in linux.get("namespaces") or []:
        _type(ns, dict, "linux.namespaces entry")
        kind = ns.get("type")
        if kind not in NAMESPACES:
            raise InvalidInputError(f"config.json: unknown namespace type {kind!r}")
        if kind in seen:
            raise InvalidInputError(f"config.json: namespace {kind} listed twice")
        seen.add(kind)
        if "path" in ns and not os.path.lexists(ns["path"]):  # /proc/PID/ns/* are magic links
            raise NotFoundError(f"namespace path {ns['path']} does not exist")


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """What ``spec`` writes: runc's default, a busybox-friendly shell container."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ketch",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        spec["linux"].pop("resources")
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "cgroup"]
        for m in spec["mounts"]:
            if m["type"] == "sysfs":
                m.update(type="none", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
            if m["type"] == "devpts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
    return spec
