"""Reading, checking and writing runtime-spec ``config.json``."""

from __future__ import annotations

import os

from ketch.errors import InvalidInputError, NotFoundError
from ketch.runtime import leanjson
from ketch.runtime.paths import read_bytes

TYPE_CHECKING = False  # neither typing nor re is imported on the runtime's start path: each costs milliseconds
if TYPE_CHECKING:
    from typing import Any

    from ketch.runtime.spectypes import Spec

OCI_VERSION = "1.0.2"
NAMESPACES = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_REST = _ID_FIRST | frozenset("_.+-")


def check_id(container_id: str) -> str:
    if not (0 < len(container_id) <= 1024 and container_id[0] in _ID_FIRST
            and _ID_REST.issuperset(container_id)):
        raise InvalidInputError(f"invalid container id {container_id!r}: letters, digits and _.+- only")
    return container_id


def load(bundle: str) -> Spec:
    path = os.path.join(bundle, "config.json")
    try:
        data = leanjson.loads(read_bytes(path))
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such file (is {bundle} a bundle?)") from exc
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise InvalidInputError(f"reading {path}: {exc.strerror}") from exc
    validate(data, bundle)
    return data  # type: ignore[return-value]  # (validate checked it is an object)


_SEMVER_EXTRA = _ID_REST - frozenset("_+")


def semver_major(version: str) -> str | None:
    """The major number of a SemVer 2.0 version (MAJOR.MINOR.PATCH[-pre][+build]), or None."""
    core, _, build = version.partition("+")
    core, _, pre = core.partition("-")
    numbers = core.split(".")
    if len(numbers) != 3 or not all(n.isdigit() and n.isascii() and (n == "0" or n[0] != "0") for n in numbers):
        return None
    for extra in (pre, build):
        if extra and not _SEMVER_EXTRA.issuperset(extra):
            return None
    if ("-" in version.partition("+")[0] and not pre) or ("+" in version and not build):
        return None
    return numbers[0]


def _type(value: Any, kind, what: str) -> None:
    if not isinstance(value, kind):
        raise InvalidInputError(f"config.json: {what} must be {getattr(kind, '__name__', kind)}")


def validate(config: Any, bundle: str) -> None:
    _type(config, dict, "the document")
    version = config.get("ociVersion")
    if not isinstance(version, str):
        raise InvalidInputError("config.json: ociVersion is missing")
    major = semver_major(version)
    if major is None:
        raise InvalidInputError(f"config.json: ociVersion {version!r} is not a SemVer version")
    if major != "1":
        raise InvalidInputError(f"config.json: ociVersion {version} is not supported (1.x is)")
    root = config.get("root")
    _type(root, dict, "root")
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise InvalidInputError("config.json: root.path is missing")
    rootfs = os.path.join(bundle, root["path"])  # an absolute root.path stays itself
    if not os.path.isdir(rootfs):
        raise NotFoundError(f"root file system {rootfs} does not exist")
    process = config.get("process")
    if process is not None:
        validate_process(process)
    for i, mount in enumerate(config.get("mounts") or []):
        _type(mount, dict, f"mounts[{i}]")
        if not isinstance(mount.get("destination"), str) or not mount["destination"].startswith("/"):
            raise InvalidInputError(f"config.json: mounts[{i}].destination must be an absolute path")
    _validate_linux(config)


def validate_process(process: Any) -> None:
    """A runtime-spec process object (config.json's, or exec's --process)."""
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
    kinds = [str(limit.get("type")) for limit in process.get("rlimits") or [] if isinstance(limit, dict)]
    for kind in sorted({k for k in kinds if kinds.count(k) > 1}):
        raise InvalidInputError(f"config.json: rlimit {kind} is listed twice")


def _validate_linux(config: dict[str, Any]) -> None:
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
    if "mount" not in seen:
        # runc and crun make the config's mounts (/proc, /dev, ...) in the host's mount namespace
        # then, and leave them there after the container is gone; ketch refuses it at create
        raise InvalidInputError("config.json: linux.namespaces has no mount namespace: ketch-runtime sets up a "
                                "container's root and mounts only in a mount namespace of its own (add "
                                "{\"type\": \"mount\"}); without one they would be made on the host")


def default_spec(rootless: bool = False) -> Spec:
    """What ``spec`` writes: runc's default, a busybox-friendly shell container."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec: Spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps),
                             "ambient": list(caps)},
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
                m["type"], m["source"] = "none", "/sys"
                m["options"] = ["rbind", "nosuid", "noexec", "nodev", "ro"]
            if m["type"] == "devpts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
    return spec
