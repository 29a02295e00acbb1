"""The store's event log: what happened to containers, images, volumes and networks, for
``ketch events`` (podman's file events backend) and any tool that wants to know.

One JSON object a line in ``ROOT/events/events.log``, appended with a single ``write`` on an
``O_APPEND`` descriptor (the kernel keeps such appends whole and in order across processes, so
no lock is needed to write). When the file passes ``ROTATE_BYTES`` the writer that notices
moves it to ``events.log.1`` under a lock (one generation kept). Readers read both.

A record: ``{"Type", "Status", "ID", "Name", "Image", "Attributes", "Time"}`` (``Time`` in
Unix nanoseconds), plus ``ContainerExitCode`` for ``died``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

ROTATE_BYTES = 8 << 20
TYPES = ("container", "image", "volume", "network", "system", "pod")


class EventLog:
    def __init__(self, root: str | os.PathLike) -> None:
        self.dir = Path(root) / "events"
        self.path = self.dir / "events.log"
        self.enabled = os.environ.get("KETCH_EVENTS_BACKEND", "file") != "none"

    def emit(self, type: str, status: str, *, id: str = "", name: str = "", image: str = "",  # noqa: A002
             attributes: dict[str, str] | None = None, exit_code: int | None = None) -> None:
        """Record one event. Never fails the operation it reports: a log that cannot be
        written loses the event."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"Type": type, "Status": status, "ID": id, "Name": name, "Image": image,
                                  "Attributes": attributes or {}, "Time": time.time_ns()}
        if exit_code is not None:
            record["ContainerExitCode"] = exit_code
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # the first event of this store
                self.dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > ROTATE_BYTES:
                self._rotate()
        except OSError:
            pass

    def _rotate(self) -> None:
        from ketch.filelocks import file_lock

        with file_lock(self.dir / ".rotate.lock"):
            try:
                if os.stat(self.path).st_size > ROTATE_BYTES:
                    os.replace(self.path, str(self.path) + ".1")
            except OSError:
                pass

    def read(self) -> Iterator[dict[str, Any]]:
        """Every recorded event, oldest first."""
        for path in (Path(str(self.path) + ".1"), self.path):
            try:
                with open(path, "rb") as f:
                    for line in f:
                        try:
                            yield json.loads(line)
                        except ValueError:
                            continue  # a torn line from a crash mid-write
            except FileNotFoundError:
                continue

    def position(self) -> tuple[int | None, int]:
        """Where the log ends now (for :meth:`follow` to start there)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None, 0
        return st.st_ino, st.st_size

    def follow(self, interval: float = 0.1, position: tuple[int | None, int] | None = None
               ) -> Iterator[dict[str, Any] | None]:
        """Events written from now (or ``position``) on, as they come (None at each idle poll,
        so a caller can check its own ending conditions)."""
        inode, offset = position if position is not None else self.position()
        pending = b""
        while True:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and inode is not None and st.st_ino != inode:
                # rotated: what the old file gained since the last look, then the new one's beginning
                try:
                    with open(str(self.path) + ".1", "rb") as f:
                        if os.fstat(f.fileno()).st_ino == inode:
                            f.seek(offset)
                            pending += f.read()
                except OSError:
                    pass
                offset = 0
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
                pending = b""
            if st is not None:
                inode = st.st_ino
                with open(self.path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
            yield None
            time.sleep(interval)


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """podman's ``events --filter``: container=, image=, volume=, network=, type=, event=
    (status), label=KEY[=VALUE]; the same key twice matches either value."""
    for key, values in filters.items():
        def one(value: str, key: str = key) -> bool:
            if key in ("event", "status"):
                return event["Status"] == value
            if key == "type":
                return event["Type"] == value
            if key in ("container", "volume", "network", "pod"):
                return event["Type"] == key and (event["ID"].startswith(value) or event["Name"] == value)
            if key == "image":
                if event["Type"] == "image":
                    return event["ID"].startswith(value) or event["Name"] == value or \
                        event["Name"].endswith("/" + value) or event["Name"].endswith("/" + value + ":latest")
                return event.get("Image") == value or (event.get("Image") or "").endswith("/" + value) or \
                    (event.get("Image") or "").endswith("/" + value + ":latest")
            if key == "label":
                name, has_value, wanted = value.partition("=")
                attributes = event.get("Attributes") or {}
                return name in attributes and (not has_value or attributes[name] == wanted)
            return False
        if not any(one(v) for v in values):
            return False
    return True
