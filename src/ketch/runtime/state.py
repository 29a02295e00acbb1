"""Container state under the runtime root: ``ROOT/ID/state.json`` and the exec FIFO.

The status is derived, never trusted from the file alone: a recorded pid whose
process is gone (or was reused, checked by its start time) is ``stopped``; a
live init that still holds the exec FIFO is ``created``; otherwise ``running``.
"""

from __future__ import annotations

import os
import time

from ketch.errors import InvalidInputError, KetchError, NotFoundError
from ketch.records import Record, field
from ketch.runtime import leanjson
from ketch.runtime.paths import read_bytes, write_bytes

TYPE_CHECKING = False  # typing is not imported on the runtime's start path (it costs milliseconds)
if TYPE_CHECKING:
    from typing import Any

FIFO = "exec.fifo"


class ContainerNotFound(NotFoundError):
    pass


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        data = read_bytes(f"/proc/{pid}/stat")
    except OSError:
        return None
    return data.rsplit(b")", 1)[1].decode().split()


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a process from a later one with the same pid."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def process_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def read_file(path: str) -> bytes:
    return read_bytes(path)


class State(Record):
    """What the runtime records of a container (``state.json``)."""

    id: str
    bundle: str
    rootfs: str
    pid: int = 0
    pid_start: str = ""
    created: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    status_override: str = ""  # "creating" while create runs
    creator: int = 0  # the create command's pid and start time
    creator_start: str = ""
    cgroup: dict[str, str] = field(default_factory=dict)  # linux.cgroupsPath as read (container.parse_cgroups_path)
    cgroup_path: str = ""  # the cgroup made for it ("" when none was made)
    cgroup_dirs: dict[str, str] = field(default_factory=dict)  # hierarchy -> its directory
    cgroup_unified: bool = False
    hooks: dict[str, list] = field(default_factory=dict)  # poststart and poststop, as the config had them

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        """From a ``state.json``: keys this version does not know are ignored, null is empty."""
        known = {k: v for k, v in data.items() if k in cls._field_set and v is not None}
        return cls(**known)

    def cgroup_handle(self):
        """The container's cgroup, or None."""
        if not self.cgroup_path:
            return None
        from ketch.runtime.cgroups import Cgroup

        return Cgroup.recorded(self.cgroup_path, self.cgroup_dirs, self.cgroup_unified)

    def hook_state(self, status: str) -> dict[str, Any]:
        out = {"ociVersion": "1.0.2", "id": self.id, "status": status, "pid": self.pid, "bundle": self.bundle}
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    def alive(self) -> bool:
        if self.pid <= 0:
            return False
        state = process_state(self.pid)
        return state not in (None, "Z", "X") and process_start_time(self.pid) == self.pid_start

    def status(self, directory: str) -> str:
        if self.status_override == "creating":
            creator_alive = self.creator and process_start_time(self.creator) == self.creator_start
            return "creating" if creator_alive else "stopped"  # a create that was killed
        if self.status_override:
            return self.status_override
        if not self.alive():
            return "stopped"
        if os.path.exists(os.path.join(directory, FIFO)):
            return "created"
        cgroup = self.cgroup_handle()
        if cgroup is not None and cgroup.is_frozen():
            return "paused"
        return "running"

    def spec_json(self, directory: str) -> dict[str, Any]:
        status = self.status(directory)
        out: dict[str, Any] = {"ociVersion": "1.0.2", "id": self.id, "status": status,
                               "pid": self.pid if status in ("created", "running", "paused") else 0,
                               "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                               "owner": ""}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


class StateDir:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def path(self, container_id: str) -> str:
        from ketch.runtime.spec import check_id

        return os.path.join(self.root, check_id(container_id))

    def create(self, container_id: str) -> str:
        directory = self.path(container_id)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.mkdir(directory, 0o700)
        except FileExistsError as exc:
            raise InvalidInputError(f"container with id {container_id} already exists") from exc
        except OSError as exc:
            raise KetchError(f"creating state for {container_id}: {exc.strerror}") from exc
        return directory

    def save(self, state: State) -> None:
        directory = self.path(state.id)
        data = leanjson.dumps(state.as_dict()).encode()
        tmp = os.path.join(directory, f".state-{os.getpid()}")
        write_bytes(tmp, data)
        os.replace(tmp, os.path.join(directory, "state.json"))

    def load(self, container_id: str) -> tuple[State, str]:
        directory = self.path(container_id)
        try:
            data = leanjson.loads(read_file(os.path.join(directory, "state.json")))
        except (FileNotFoundError, NotADirectoryError) as exc:
            if os.path.isdir(directory):  # a create killed before its first state: removable
                return State(id=container_id, bundle="", rootfs="", status_override="stopped"), directory
            raise ContainerNotFound(f"container {container_id} does not exist") from exc
        except ValueError:
            # a create killed before it wrote its state: shown as stopped, removable with delete --force
            return State(id=container_id, bundle="", rootfs="", status_override="stopped"), directory
        if not isinstance(data, dict):
            return State(id=container_id, bundle="", rootfs="", status_override="stopped"), directory
        return State.from_dict(data), directory

    def ids(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        # Names starting with "." are ours (the seccomp cache); no container id starts so.
        return sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e9) % 10**9:09d}Z"
