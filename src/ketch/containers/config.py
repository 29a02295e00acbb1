"""The engine's configuration, read from containers.conf as podman reads it, and the default
security profile.

Files: ``$CONTAINERS_CONF`` alone when set; otherwise ``/usr/share/containers/containers.conf``
then ``/etc/containers/containers.conf``, then for a rootless user
``$XDG_CONFIG_HOME/containers/containers.conf`` (a later file overrides the keys it sets). Keys read
from ``[containers]``: ``default_capabilities``, ``default_ulimits``, ``default_sysctls``,
``env``, ``init_path``, ``seccomp_profile``.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

from ketch.errors import InvalidInputError
from ketch.records import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.runtime.spectypes import Rlimit

SYSTEM_FILES = ("/usr/share/containers/containers.conf", "/etc/containers/containers.conf")

# podman's defaults (containers/common), for a config that does not say.
DEFAULT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP",
                        "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATHS = ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit")
SECCOMP_PROFILE = "/usr/share/containers/seccomp.json"
BUILTIN_SECCOMP = Path(__file__).with_name("default-seccomp.json")

# What podman masks and makes read-only in every unprivileged container.
MASKED_PATHS = ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
                "/sys/dev/block"]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

ALL_CAPABILITIES = ["AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
                    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
                    "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
                    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
                    "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT",
                    "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG",
                    "WAKE_ALARM"]

ULIMIT_NAMES = {"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
                "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
                "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
                "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
                "stack": "RLIMIT_STACK", "as": "RLIMIT_AS"}


class EngineConfig(Record):
    default_capabilities: list[str]
    env: list[str]
    default_ulimits: list[str] = field(default_factory=list)
    default_sysctls: list[str] = field(default_factory=list)
    init_path: str = ""
    seccomp_profile: str = ""
    files: list[str] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    dns_searches: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    base_hosts_file: str = ""  # the /etc/hosts a container's starts from (default: a minimal one)
    no_hosts: bool = False  # no /etc/hosts of ketch's: the image's own
    tz: str = ""
    umask: str = "0022"
    http_proxy: bool = True
    shm_size: str = "65536k"
    env_host: bool = False

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("default_capabilities", list(DEFAULT_CAPABILITIES))
        kwargs.setdefault("env", [DEFAULT_PATH])
        super().__init__(**kwargs)

    @classmethod
    def load(cls, path: str | None = None, cache_dir: str | None = None) -> EngineConfig:
        """Read the files; with ``cache_dir``, what was read last time is reused while no file
        changed (tomllib's import and parse cost ~8 ms of every ``ketch run``)."""
        wanted = path or os.environ.get("CONTAINERS_CONF")
        if wanted:
            files = [wanted]
        else:
            from ketch.userns import config_home, is_rootless

            user = [str(config_home() / "containers" / "containers.conf")] if is_rootless() else []
            files = [f for f in (*SYSTEM_FILES, *user) if os.path.exists(f)]
        key = []
        for name in files:
            try:
                st = os.stat(name)
                key.append([name, st.st_mtime_ns, st.st_size, st.st_ino])
            except OSError:
                key.append([name, None])
        cache = os.path.join(cache_dir, "containers-conf.json") if cache_dir else None
        if cache:
            try:
                with open(cache) as f:
                    cached = json.load(f)
                if cached.get("key") == key:
                    return cls(**cached["config"])
            except (OSError, ValueError, TypeError):
                pass
        config = cls._parse(files)
        if cache:
            try:
                tmp = f"{cache}.{os.getpid()}"
                with open(tmp, "w") as f:
                    f.write(json.dumps({"key": key, "config": config.as_dict()}))
                os.replace(tmp, cache)
            except OSError:
                pass
        return config

    @classmethod
    def _parse(cls, files: list[str]) -> EngineConfig:
        import tomllib

        config = cls()
        for name in files:
            try:
                with open(name, "rb") as f:
                    data = tomllib.load(f)
            except FileNotFoundError as exc:
                raise InvalidInputError(f"containers.conf {name} does not exist") from exc
            except tomllib.TOMLDecodeError as exc:
                raise InvalidInputError(f"containers.conf {name}: {exc}") from exc
            section = data.get("containers") or {}
            for key in ("default_capabilities", "default_ulimits", "default_sysctls", "env", "dns_servers",
                        "dns_searches", "dns_options"):
                if key in section:
                    value = section[key]
                    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                        raise InvalidInputError(f"containers.conf {name}: {key} must be a list of strings")
                    setattr(config, key, list(value))
            for key in ("init_path", "seccomp_profile", "base_hosts_file", "tz", "umask", "shm_size"):
                if key in section:
                    setattr(config, key, str(section[key]))
            for key in ("no_hosts", "http_proxy", "env_host"):
                if key in section:
                    if not isinstance(section[key], bool):
                        raise InvalidInputError(f"containers.conf {name}: {key} must be true or false")
                    setattr(config, key, section[key])
            config.files.append(name)
        return config

    def init_binary(self, wanted: str | None = None) -> str:
        if wanted:
            if not os.access(wanted, os.X_OK):
                raise InvalidInputError(f"--init-path {wanted}: not an executable file")
            return wanted
        for candidate in ([self.init_path] if self.init_path else []) + list(INIT_PATHS):
            if os.access(candidate, os.X_OK):
                return candidate
        raise InvalidInputError("--init: no init binary (install catatonit or set init_path in containers.conf)")

    def seccomp_file(self) -> Path:
        if self.seccomp_profile:
            return Path(self.seccomp_profile)
        return Path(SECCOMP_PROFILE) if os.path.exists(SECCOMP_PROFILE) else BUILTIN_SECCOMP


def normalize_capability(name: str) -> str:
    upper = name.upper()
    if upper == "ALL":
        return upper
    bare = upper[4:] if upper.startswith("CAP_") else upper
    if bare not in ALL_CAPABILITIES:
        raise InvalidInputError(f"unknown capability {name!r}")
    return bare


def bounding_set() -> set[str]:
    """The capabilities this process could give: its bounding set (what ``all`` means, as for
    podman; a host may withhold some, as these machines withhold SYS_RESOURCE)."""
    from ketch.runtime.capabilities import NAMES

    with open("/proc/self/status") as f:
        mask = next((int(line.split()[1], 16) for line in f if line.startswith("CapBnd:")), 0)
    return {NAMES[i][4:] for i in range(len(NAMES)) if mask & (1 << i)}


def capabilities(defaults: list[str], add: list[str], drop: list[str], privileged: bool) -> list[str]:
    """podman's order: the defaults (all, when privileged), then --cap-drop, then --cap-add."""
    caps = bounding_set() if privileged else {normalize_capability(c) for c in defaults}
    dropped = {normalize_capability(c) for c in drop}
    caps = set() if "ALL" in dropped else caps - dropped
    added = {normalize_capability(c) for c in add}
    caps |= bounding_set() if "ALL" in added else added - {"ALL"}
    return sorted("CAP_" + c for c in caps)


def parse_ulimit(text: str) -> Rlimit:
    """``name=soft[:hard]`` (``-1`` or ``unlimited`` for no limit) → an OCI rlimit."""
    name, sep, values = text.partition("=")
    if not sep or name not in ULIMIT_NAMES:
        raise InvalidInputError(f"invalid ulimit {text!r}: want NAME=SOFT[:HARD] with NAME one of "
                                f"{', '.join(sorted(ULIMIT_NAMES))}")
    soft_text, _, hard_text = values.partition(":")

    def number(value: str) -> int:
        if value in ("-1", "unlimited"):
            return resource.RLIM_INFINITY & 0xFFFFFFFFFFFFFFFF
        try:
            parsed = int(value)
        except ValueError as exc:
            raise InvalidInputError(f"invalid ulimit {text!r}: {value!r} is not a number") from exc
        if parsed < 0:
            raise InvalidInputError(f"invalid ulimit {text!r}: negative value")
        return parsed

    soft = number(soft_text)
    hard = number(hard_text) if hard_text else soft
    if soft > hard:
        raise InvalidInputError(f"invalid ulimit {text!r}: the soft limit is above the hard limit")
    return {"type": ULIMIT_NAMES[name], "soft": soft, "hard": hard}


def default_rlimits() -> list[Rlimit]:
    """Without configured ulimits: open files and processes as high as the hard limits we hold, and
    never above (raising a hard limit needs CAP_SYS_RESOURCE, which a host may not give)."""
    out: list[Rlimit] = []
    for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC"):
        _, hard = resource.getrlimit(getattr(resource, name))
        value = hard & 0xFFFFFFFFFFFFFFFF
        out.append({"type": name, "soft": value, "hard": value})
    return out


def seccomp_for(profile_path: Path, capabilities_held: list[str], arch: str = "amd64") -> dict | None:
    """A containers-ecosystem seccomp profile (archMap, includes/excludes by capability and
    architecture) in the runtime-spec form, for a container with these capabilities; as podman
    turns /usr/share/containers/seccomp.json into the config it hands the runtime."""
    try:
        profile = json.loads(profile_path.read_text())
    except OSError as exc:
        raise InvalidInputError(f"seccomp profile {profile_path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"seccomp profile {profile_path} is not JSON: {exc}") from exc
    caps = set(capabilities_held)
    native = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}.get(arch, "")
    out: dict = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"), "architectures": [],
                 "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            out["architectures"] = [entry["architecture"], *entry.get("subArchitectures", [])]
    if not profile.get("archMap") and profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    for rule in profile.get("syscalls") or []:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("caps") and not set(includes["caps"]) <= caps:
            continue
        if includes.get("arches") and arch not in includes["arches"]:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & caps:
            continue
        if excludes.get("arches") and arch in excludes["arches"]:
            continue
        if includes.get("minKernel") and _kernel_version() < _version(includes["minKernel"]):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names:
            continue
        kept = {"names": names, "action": rule["action"]}
        for key in ("args", "errnoRet"):
            if rule.get(key) is not None:
                kept[key] = rule[key]
        out["syscalls"].append(kept)
    return out


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _kernel_version() -> tuple[int, ...]:
    return _version(os.uname().release)
