"""What a container is created with: podman's ``create``/``run`` flags, as one record.

The options are stored with the container (in the store's container row, in the transaction
that creates it), so any ketch process can start, inspect or restart it later.
"""

from __future__ import annotations

from ketch.errors import InvalidInputError
from ketch.records import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SDNOTIFY_MODES = ("container", "conmon", "ignore")
LOG_DRIVERS = ("k8s-file", "none", "passthrough")
PULL_POLICIES = ("always", "missing", "never", "newer")


class CreateOptions(Record):
    """The options of ``ketch create``/``run``, stored with the container."""

    command: list[str] | None = None  # None: the image's Cmd
    entrypoint: list[str] | None = None  # None: the image's Entrypoint; [] clears it
    name: str | None = None
    env: list[str] = field(default_factory=list)  # KEY=VALUE, or KEY to take ours
    workdir: str | None = None
    user: str | None = None
    userns: str = ""  # --userns: "" / host, or keep-id[:uid=,gid=] (rootless)
    group_add: list[str] = field(default_factory=list)
    hostname: str | None = None
    interactive: bool = False
    stdin_once: bool = False  # (the CRI's) stdin closes when the first attached client closes its own
    tty: bool = False
    read_only: bool = False
    read_only_tmpfs: bool = True
    tmpfs: list[str] = field(default_factory=list)  # DEST[:OPTIONS]
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    seccomp_profile: str | None = None  # a path, or "unconfined"
    no_new_privileges: bool = False
    unmask: list[str] = field(default_factory=list)  # paths, or ALL
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids_limit: int | None = None
    ulimits: list[str] = field(default_factory=list)
    network: str = "bridge"  # none, host, bridge (the default network) or network names, comma-separated
    preserve_fds: int = 0
    sdnotify: str = "container"
    systemd: str = "true"  # podman's --systemd: true (when the command is an init), always, false
    stop_signal: str | None = None
    stop_timeout: int = 10
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_driver: str = "k8s-file"
    init: bool = False
    remove: bool = False  # --rm
    runtime: str | None = None  # a runc-compatible runtime binary instead of ketch's own
    create_command: list[str] = field(default_factory=list)
    ip: str | None = None  # --ip on the first network
    # other names of the container on its networks (network -> names; "" for every network: --network-alias)
    network_aliases: dict[str, list[str]] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)  # NAME:IP
    publish: list[str] = field(default_factory=list)  # -p specs
    publish_all: bool = False  # -P
    mounts: list[dict] = field(default_factory=list)  # MountSpec fields, from -v, --mount and --volumes-from
    volumes_from: list[str] = field(default_factory=list)
    restart_policy: str = ""  # "", no, always, on-failure, unless-stopped
    restart_retries: int = 0  # on-failure's :N (0: no limit)
    cidfile: str | None = None  # the container's id is written here at create
    tz: str | None = None  # local, or an Area/City of the host's zoneinfo
    timeout: int = 0  # seconds before the container is killed (0: never)
    log_opts: dict[str, str] = field(default_factory=dict)  # path, max-size (bytes), tag
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    http_proxy: bool = True  # the host's proxy variables go into the container
    devices: list[str] = field(default_factory=list)  # HOST[:CONTAINER][:PERMISSIONS]
    shm_size: int | None = None  # bytes of /dev/shm
    sysctls: dict[str, str] = field(default_factory=dict)
    umask: str | None = None  # octal
    secrets: list[dict] = field(default_factory=list)  # name, type (mount|env), target, uid, gid, mode
    healthcheck: dict | None = None  # test (argv), interval, timeout, start_period (seconds), retries
    no_healthcheck: bool = False
    pid: str | None = None  # host, private, container:NAME, ns:PATH
    ipc: str | None = None
    uts: str | None = None
    cgroupns: str | None = None
    expose: list[str] = field(default_factory=list)
    no_hosts: bool = False
    pidfile: str | None = None
    unsetenv: list[str] = field(default_factory=list)
    unsetenv_all: bool = False
    memory_reservation: int | None = None
    memory_swap: int | None = None  # -1: unlimited
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    oom_score_adj: int | None = None
    oom_kill_disable: bool = False
    init_path: str | None = None
    anonymous_volumes: list[str] = field(default_factory=list)  # names of the volumes made for -v /path, removed with rm -v
    hostname_given: bool = False
    env_host: bool = False  # every variable of the caller goes into the container
    device_cgroup_rules: list[str] = field(default_factory=list)  # "c 1:3 mr": a device cgroup rule of the container's
    blkio_weight: int | None = None
    blkio_weight_devices: list[str] = field(default_factory=list)  # DEVICE:WEIGHT
    device_read_bps: list[str] = field(default_factory=list)  # DEVICE:RATE (bytes per second, with a unit: 1mb)
    device_write_bps: list[str] = field(default_factory=list)
    device_read_iops: list[str] = field(default_factory=list)  # DEVICE:RATE (operations per second)
    device_write_iops: list[str] = field(default_factory=list)
    memory_swappiness: int | None = None
    cpu_rt_period: int | None = None
    cpu_rt_runtime: int | None = None
    cgroup_parent: str | None = None  # the cgroup the container's goes under (default: ketch's)
    env_merge: list[str] = field(default_factory=list)  # KEY=VALUE with ${KEY}s of the environment so far (podman's --env-merge)
    conmon_pidfile: str | None = None  # where the container's monitor writes its pid
    image_volume: str = "bind"  # the image's VOLUMEs: bind (anonymous volumes), tmpfs or ignore
    personality: str | None = None  # LINUX or LINUX32
    remove_image: bool = False  # --rmi: with --rm, the image goes too when nothing else uses it
    requires: list[str] = field(default_factory=list)  # containers started first
    pod: str | None = None  # the id of the pod whose namespaces the container joins (--pod, the CRI's sandboxes)
    masked_paths: list[str] | None = None  # None: the engine's defaults (the CRI's kubelet sends its own)
    readonly_paths: list[str] | None = None
    hugepage_limits: dict[str, int] = field(default_factory=dict)  # page size ("2MB") -> bytes
    groups_include_primary: bool = False  # the primary group among the process's groups (the CRI's, as containerd)

    def check(self) -> CreateOptions:
        if self.image_volume not in ("bind", "tmpfs", "ignore"):
            raise InvalidInputError(f"invalid image volume type {self.image_volume!r}: must be bind, tmpfs or "
                                    "ignore")
        if self.personality is not None and self.personality not in ("LINUX", "LINUX32"):
            raise InvalidInputError(f"invalid --personality {self.personality!r}: LINUX or LINUX32")
        if self.memory_swappiness is not None and not (-1 <= self.memory_swappiness <= 100):
            raise InvalidInputError(f"invalid --memory-swappiness {self.memory_swappiness}: must be 0-100")
        if self.sdnotify not in SDNOTIFY_MODES:
            raise InvalidInputError(f"invalid sdnotify value {self.sdnotify!r}: must be "
                                    f"{', '.join(SDNOTIFY_MODES)}")
        if self.log_driver not in LOG_DRIVERS:
            raise InvalidInputError(f"invalid log driver {self.log_driver!r}: must be {', '.join(LOG_DRIVERS)}")
        networks = [n for n in self.network.split(",") if n]
        if not networks:
            raise InvalidInputError("--network needs a value")
        special = [n for n in networks if n in ("none", "host", "private") or n.startswith(("container:", "ns:"))]
        if len(networks) > 1 and special:
            raise InvalidInputError(f"--network {self.network}: {special[0]} cannot be combined with networks")
        if networks[0] in ("container:", "ns:"):
            raise InvalidInputError(f"invalid --network {self.network}: name the container or the path")
        if self.ip and (self.network in ("none", "host") or self.network.startswith(("container:", "ns:"))):
            raise InvalidInputError(f"--ip needs a bridge network, not --network {self.network}")
        if self.network == "host" and self.dns:
            raise InvalidInputError("--dns cannot be used with --network host")
        if self.publish:  # (the network module costs ~3 ms to import: only when ports are published)
            from ketch.containers.network import parse_publish

            for spec in self.publish:
                parse_publish(spec)
        for entry in self.add_host:
            name, sep, address = entry.partition(":")
            if not sep or not name or not address:
                raise InvalidInputError(f"invalid --add-host {entry!r}: want NAME:IP")
        import ipaddress

        for server in self.dns:
            try:
                ipaddress.ip_address(server)
            except ValueError as exc:
                raise InvalidInputError(f"invalid --dns {server!r}: not an IP address") from exc
        if self.memory is not None and self.memory < 0:
            raise InvalidInputError("--memory must not be negative")
        if self.restart_policy not in RESTART_POLICIES:
            raise InvalidInputError(f"invalid restart policy {self.restart_policy!r}: must be one of "
                                    f"{', '.join(p for p in RESTART_POLICIES if p)}")
        if self.restart_policy in ("always", "unless-stopped", "on-failure") and self.remove:
            raise InvalidInputError("the --rm option conflicts with --restart, when the restartPolicy is not "
                                    "\"\" and not \"no\"")
        if self.restart_retries and self.restart_policy != "on-failure":
            raise InvalidInputError("restart policy retries can only be specified with on-failure restart policy")
        for namespace, value in (("pid", self.pid), ("ipc", self.ipc), ("uts", self.uts),
                                 ("cgroupns", self.cgroupns)):
            if value is not None:
                parse_namespace_mode(value, namespace)
        self._check_mount_destinations()
        if self.cpus is not None and self.cpus <= 0:
            raise InvalidInputError("--cpus must be positive")
        if self.preserve_fds < 0:
            raise InvalidInputError("--preserve-fds must not be negative")
        if self.stop_timeout < 0:
            raise InvalidInputError("--stop-timeout must not be negative")
        for entry in self.env:
            if not entry or entry.startswith("="):
                raise InvalidInputError(f"invalid environment variable {entry!r}")
        for mount in self.tmpfs:
            if not mount.split(":", 1)[0].startswith("/"):
                raise InvalidInputError(f"invalid --tmpfs {mount!r}: the destination must be absolute")
        if self.name is not None:
            from ketch.containers.names import check_name

            check_name(self.name)
        return self

    def discard_ports(self) -> bool:
        """Published ports mean nothing without a network of the container's own (host, none,
        another container's or a given namespace): podman drops them with a warning. True if
        some were dropped."""
        if (self.publish or self.publish_all) and (self.network in ("none", "host") or
                                                   self.network.startswith(("container:", "ns:"))):
            self.publish, self.publish_all = [], False
            return True
        return False

    def _check_mount_destinations(self) -> None:
        """Two mounts on one destination: refused, as podman refuses them."""
        seen: set[str] = set()
        anonymous = set()
        destinations = []
        for mount in self.mounts:
            if mount.get("kind") == "volume" and not mount.get("source"):
                if mount["destination"] in anonymous:
                    continue  # the same anonymous volume twice is one (podman takes it)
                anonymous.add(mount["destination"])
            destinations.append(mount["destination"])
        destinations += [t.split(":", 1)[0] for t in self.tmpfs]
        for destination in destinations:
            clean = "/" + destination.strip("/") if destination != "/" else "/"
            while "//" in clean:
                clean = clean.replace("//", "/")
            if clean in seen:
                raise InvalidInputError(f"{clean}: duplicate mount destination")
            seen.add(clean)

    def to_dict(self) -> dict[str, Any]:
        return self.as_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CreateOptions:
        """Options as stored; keys of other versions are left out, missing ones take defaults."""
        return cls(**{k: v for k, v in data.items() if k in cls._field_set})


RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")


def parse_memory(text: str, *, zero: bool = False) -> int:
    """podman's sizes: a number with an optional b, k, m or g suffix (powers of 1024). With
    ``zero``, 0 is allowed (``--memory 0``: no limit)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = text.strip().lower()
    factor = 1
    if value.endswith("b") and len(value) > 1 and value[-2] in units:
        value = value[:-1]
    if value and value[-1] in units:
        factor = units[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError as exc:
        raise InvalidInputError(f"invalid size {text!r}") from exc
    if number < 0 or number == 0 and not zero:
        raise InvalidInputError(f"invalid size {text!r}: must be positive")
    return int(number * factor)


def parse_restart(text: str) -> tuple[str, int]:
    """``--restart``: no, always, on-failure[:N], unless-stopped → (policy, retries)."""
    policy, sep, count = text.partition(":")
    if policy not in RESTART_POLICIES:
        raise InvalidInputError(f"invalid restart policy {text!r}: must be no, always, on-failure[:N] or "
                                "unless-stopped")
    if sep:
        if policy != "on-failure":
            raise InvalidInputError("restart policy retries can only be specified with on-failure restart policy")
        if not count.isdigit():
            raise InvalidInputError(f"invalid restart policy retries {count!r}: must be a non-negative number")
        return policy, int(count)
    return policy, 0


def parse_duration(text: str, what: str) -> float:
    """A Go duration ("30s", "1m30s", "500ms", "2h"); a bare number is seconds."""
    import re

    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InvalidInputError(f"invalid {what} {text!r}: want a duration such as 30s, 1m30s or 500ms")
    scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_namespace_mode(text: str, namespace: str) -> tuple[str, str]:
    """--pid/--ipc/--uts/--cgroupns: host, private, container:NAME, ns:PATH (ipc: shareable)."""
    mode, _, target = text.partition(":")
    allowed = {"host", "private", "container", "ns"} | ({"shareable", "none"} if namespace == "ipc" else set())
    if mode not in allowed or (mode in ("container", "ns")) != bool(target):
        raise InvalidInputError(f"invalid --{namespace} {text!r}: use host, private, container:NAME or ns:PATH")
    return mode, target


def parse_key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidInputError(f"invalid {what} {item!r}: want KEY=VALUE")
        out[key] = value
    return out


def read_env_file(path: str) -> list[str]:
    """``--env-file``: KEY=VALUE lines; a bare KEY takes our value; # comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidInputError(f"--env-file {path}: {exc.strerror}") from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def parse_signal(text: str | int) -> int:
    """A signal's number from its name (``TERM``, ``SIGTERM``) or number, as the runtime reads
    them (for the builder's STOPSIGNAL, which checks it without driving a runtime)."""
    from ketch.runtime.container import parse_signal as parse

    return parse(str(text))
