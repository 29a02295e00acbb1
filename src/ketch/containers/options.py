"""What a container is created with: podman's ``create``/``run`` flags, as one record.

The options are stored with the container (in the store's container row, in the transaction
that creates it), so any ketch process can start, inspect or restart it later.
"""

from __future__ import annotations


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ketch.errors import InvalidInputError
from ketch.records import Record

SDNOTIFY_MODES = ("container", "conmon", "ignore")
LOG_DRIVERS = ("k8s-file", "none", "passthrough")
PULL_POLICIES = ("always", "missing", "never", "newer")


class CreateOptions(Record):
    """The options of ``ketch create``/``run``, stored with the container."""

    __slots__ = (
        "command", "entrypoint", "name", "env", "workdir", "user", "group_add", "hostname", "interactive", "tty",
        "read_only", "read_only_tmpfs", "tmpfs", "cap_add", "cap_drop", "privileged", "seccomp_profile",
        "no_new_privileges", "unmask", "memory", "cpus", "pids_limit", "ulimits", "network", "preserve_fds",
        "sdnotify", "stop_signal", "stop_timeout", "labels", "annotations", "log_driver", "init", "remove",
        "runtime", "create_command",
        "ip", "dns", "add_host", "publish", "publish_all", "mounts", "volumes_from"
    )
    _defaults = {
        "command": None, "entrypoint": None, "name": None, "env": list, "workdir": None, "user": None, "group_add":
        list, "hostname": None, "interactive": False, "tty": False, "read_only": False, "read_only_tmpfs": True,
        "tmpfs": list, "cap_add": list, "cap_drop": list, "privileged": False, "seccomp_profile": None,
        "no_new_privileges": False, "unmask": list, "memory": None, "cpus": None, "pids_limit": None, "ulimits":
        list, "network": "bridge", "preserve_fds": 0, "sdnotify": "container", "stop_signal": None, "stop_timeout":
        10, "labels": dict, "annotations": dict, "log_driver": "k8s-file", "init": False, "remove": False,
        "runtime": None, "create_command": list, "ip": None, "dns": list, "add_host": list, "publish": list, "publish_all": False,
        "mounts": list, "volumes_from": list
    }
    command: list[str] | None  # None: the image's Cmd
    entrypoint: list[str] | None  # None: the image's Entrypoint; [] clears it
    name: str | None
    env: list[str]  # KEY=VALUE, or KEY to take ours
    workdir: str | None
    user: str | None
    group_add: list[str]
    hostname: str | None
    interactive: bool
    tty: bool
    read_only: bool
    read_only_tmpfs: bool
    tmpfs: list[str]  # DEST[:OPTIONS]
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    seccomp_profile: str | None  # a path, or "unconfined"
    no_new_privileges: bool
    unmask: list[str]  # paths, or ALL
    memory: int | None  # bytes
    cpus: float | None
    pids_limit: int | None
    ulimits: list[str]
    network: str  # none, host, bridge (the default network) or network names, comma-separated
    preserve_fds: int
    sdnotify: str
    stop_signal: str | None
    stop_timeout: int
    labels: dict[str, str]
    annotations: dict[str, str]
    log_driver: str
    init: bool
    remove: bool  # --rm
    runtime: str | None  # a runc-compatible runtime binary instead of ketch's own
    create_command: list[str]
    ip: str | None  # --ip on the first network
    dns: list[str]
    add_host: list[str]  # NAME:IP
    publish: list[str]  # -p specs
    publish_all: bool  # -P
    mounts: list[dict]  # MountSpec fields, from -v, --mount and --volumes-from
    volumes_from: list[str]

    def check(self) -> "CreateOptions":
        if self.sdnotify not in SDNOTIFY_MODES:
            raise InvalidInputError(f"invalid sdnotify value {self.sdnotify!r}: must be "
                                    f"{', '.join(SDNOTIFY_MODES)}")
        if self.log_driver not in LOG_DRIVERS:
            raise InvalidInputError(f"invalid log driver {self.log_driver!r}: must be {', '.join(LOG_DRIVERS)}")
        networks = [n for n in self.network.split(",") if n]
        if not networks:
            raise InvalidInputError("--network needs a value")
        if len(networks) > 1 and ({"none", "host"} & set(networks)):
            raise InvalidInputError(f"--network {self.network}: none and host cannot be combined with networks")
        if (self.publish or self.publish_all or self.ip) and self.network in ("none", "host"):
            raise InvalidInputError(f"-p, -P and --ip need a bridge network, not --network {self.network}")
        if self.network == "host" and self.dns:
            raise InvalidInputError("--dns cannot be used with --network host")
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
            except ValueError:
                raise InvalidInputError(f"invalid --dns {server!r}: not an IP address") from None
        if self.memory is not None and self.memory <= 0:
            raise InvalidInputError("--memory must be positive")
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

    def to_dict(self) -> dict[str, Any]:
        return self.as_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CreateOptions":
        """Options as stored; keys of other versions are left out, missing ones take defaults."""
        return cls(**{k: v for k, v in data.items() if k in cls._fields})


def parse_memory(text: str) -> int:
    """podman's sizes: a number with an optional b, k, m or g suffix (powers of 1024)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = text.strip().lower()
    factor = 1
    if value.endswith("b") and len(value) > 1 and value[-2] in units:
        value = value[:-1]
    if value and value[-1] in units:
        factor = units[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"invalid size {text!r}") from None
    if number <= 0:
        raise InvalidInputError(f"invalid size {text!r}: must be positive")
    return int(number * factor)


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
        raise InvalidInputError(f"--env-file {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
