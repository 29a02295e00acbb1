"""What a container is created with: podman's ``create``/``run`` flags, as one record.

The options are stored with the container (in the store's container row, in the transaction
that creates it), so any ketch process can start, inspect or restart it later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ketch.errors import InvalidInputError

SDNOTIFY_MODES = ("container", "conmon", "ignore")
LOG_DRIVERS = ("k8s-file", "none", "passthrough")
PULL_POLICIES = ("always", "missing", "never", "newer")


@dataclass
class CreateOptions:
    command: list[str] | None = None  # None: the image's Cmd
    entrypoint: list[str] | None = None  # None: the image's Entrypoint; [] clears it
    name: str | None = None
    env: list[str] = field(default_factory=list)  # KEY=VALUE, or KEY to take ours
    workdir: str | None = None
    user: str | None = None
    group_add: list[str] = field(default_factory=list)
    hostname: str | None = None
    interactive: bool = False
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
    network: str = "none"  # none or host here; bridge networks come with networking
    preserve_fds: int = 0
    sdnotify: str = "container"
    stop_signal: str | None = None
    stop_timeout: int = 10
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_driver: str = "k8s-file"
    init: bool = False
    remove: bool = False  # --rm
    runtime: str | None = None  # a runc-compatible runtime binary instead of ketch's own
    create_command: list[str] = field(default_factory=list)

    def check(self) -> "CreateOptions":
        if self.sdnotify not in SDNOTIFY_MODES:
            raise InvalidInputError(f"invalid sdnotify value {self.sdnotify!r}: must be "
                                    f"{', '.join(SDNOTIFY_MODES)}")
        if self.log_driver not in LOG_DRIVERS:
            raise InvalidInputError(f"invalid log driver {self.log_driver!r}: must be {', '.join(LOG_DRIVERS)}")
        if self.network not in ("none", "host"):
            raise InvalidInputError(f"network {self.network!r} is not available: ketch runs containers with "
                                    "--network none or host")
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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CreateOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
