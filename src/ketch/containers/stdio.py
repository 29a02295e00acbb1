"""The engine's standard streams of containers: ``logs`` (the k8s-file log, followed as it
grows), ``attach`` (to a detached container's monitor), and the tee of a foreground container's
output into its log, as a part of :class:`~ketch.containers.engine.Engine`."""

from __future__ import annotations

import os
import time

from ketch.containers import logs as logfiles
from ketch.errors import ContainerError, InvalidInputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from ketch.containers.enginepart import EnginePart

else:
    EnginePart = object  # (what the engine's parts use of it matters to type checkers only)


class ContainerStdio(EnginePart):
    """``logs`` and ``attach``: mixed into the Engine."""

    def logs(self, name_or_id: str, *, follow: bool = False, tail: int | None = None, since: float | None = None,
             timestamps: bool = False, until: float | None = None) -> Iterator[tuple[str, bytes]]:
        """The container's output as recorded (k8s-file): (stream, bytes) of each record, "stdout"
        or "stderr", from ``since`` to ``until``; with ``follow``, until it stops (or ``until``
        passes)."""
        record = self._record(name_or_id)
        if record.options.log_driver == "none":
            raise InvalidInputError(f"container {record.name} was created with --log-driver none: no logs")
        if record.options.log_driver == "passthrough":
            raise InvalidInputError(f"container {record.name}'s output went to its caller (passthrough): "
                                    "no logs")
        path = self._log_path(record)
        records = logfiles.read_records(path, since=since, tail=tail, until=until)
        for entry in records:
            yield entry[1], logfiles.render(entry, timestamps)
        if not follow or (until is not None and until <= time.time()):
            return
        follower = logfiles.LogFollower(path)
        while True:
            running = self._status(record)["status"] in ("running", "paused", "created")
            new = follower.new_records()
            for entry in new:
                yield entry[1], logfiles.render(entry, timestamps)
            if not running and not new or until is not None and time.time() > until:
                return
            time.sleep(0.1)

    def attach(self, name_or_id: str, *, stdin: bool = True, stdio: tuple[int, int, int] = (0, 1, 2),
               sig_proxy: bool = True) -> int:
        """Follow a detached container's output and send it our input (when it was created with
        ``-i``) until it exits; its exit status."""
        from ketch.containers import attach as attaching

        record = self._record(name_or_id)
        current = self._status(record)
        if current["status"] not in ("running", "paused"):
            raise ContainerError(f"you can only attach to running containers: {record.name} is "
                                 f"{current['status']}")
        self._record_event("attach", record)
        return attaching.attach(self, record, stdin=stdin and record.options.interactive, stdio=stdio,
                                sig_proxy=sig_proxy)


class OutputTee:
    """A foreground container's stdout and stderr through pipes: each copied to where it would
    have gone (ours, or the caller's ``stdio``) and into the log."""

    def __init__(self, stdio: tuple[int, int, int] | None, log) -> None:
        self.log = log
        targets = stdio or (0, 1, 2)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.container_stdio = (targets[0], out_w, err_w)
        self.sources = {out_r: (targets[1], "stdout"), err_r: (targets[2], "stderr")}
        self._write_ends = [out_w, err_w]

    def created(self) -> None:
        for fd in self._write_ends:  # the container holds them now
            os.close(fd)
        self._write_ends = []

    @property
    def active(self) -> bool:
        """False once both pipes are at their end: the waiter may then block on the exit."""
        return bool(self.sources)

    def pump(self, timeout: float) -> None:
        import select

        if not self.sources:
            return
        try:
            ready = select.select(list(self.sources), [], [], timeout)[0]
        except InterruptedError:
            return
        for fd in ready:
            data = os.read(fd, 65536)
            target, stream = self.sources[fd]
            if not data:
                del self.sources[fd]
                os.close(fd)
                continue
            try:
                os.write(target, data)
            except OSError:
                pass  # our reader went away: the log still gets it
            self.log.write(stream, data)

    def drain(self) -> None:
        deadline = time.monotonic() + 2
        while self.sources and time.monotonic() < deadline:
            self.pump(0.1)

    def close(self) -> None:
        for fd in list(self.sources) + self._write_ends:
            os.close(fd)
        self.sources, self._write_ends = {}, []
