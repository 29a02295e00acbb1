"""Container logs in the k8s-file format that conmon writes and ``podman logs`` reads: one line
per record, ``TIMESTAMP STREAM F|P TEXT``, where P marks a partial line (the text went on without
a newline) and F a full one.

Only ``os`` and ``time`` are imported: the detached monitor writes logs with this module.
"""

from __future__ import annotations

import os
import time


def _timestamp(ts: float) -> str:
    # RFC 3339 with nanoseconds and a numeric zone, as conmon writes it
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e9) % 10**9:09d}+00:00"


class LogWriter:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.pending = {"stdout": b"", "stderr": b""}

    def reopen(self) -> None:
        """Go on in a new file at the same path (the old one was rotated away: SIGHUP to the monitor)."""
        fresh = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.dup2(fresh, self.fd, inheritable=False)
        os.close(fresh)

    def write(self, stream: str, data: bytes) -> None:
        """Record ``data`` from ``stream``; complete lines at once, a trailing partial line when
        more comes or at ``flush``."""
        buffered = self.pending[stream] + data
        lines = buffered.split(b"\n")
        self.pending[stream] = lines.pop()
        stamp = _timestamp(time.time()).encode()
        out = b"".join(stamp + b" " + stream.encode() + b" F " + line + b"\n" for line in lines)
        if len(self.pending[stream]) > 16384:  # a very long line: write it as partial records
            out += stamp + b" " + stream.encode() + b" P " + self.pending[stream] + b"\n"
            self.pending[stream] = b""
        if out:
            os.write(self.fd, out)

    def flush(self) -> None:
        stamp = _timestamp(time.time()).encode()
        for stream, rest in self.pending.items():
            if rest:
                os.write(self.fd, stamp + b" " + stream.encode() + b" P " + rest + b"\n")
        self.pending = {"stdout": b"", "stderr": b""}

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def parse_line(line: bytes) -> tuple[str, str, bool, bytes] | None:
    """(timestamp, stream, partial, text) of one record, or None for a line that is not one."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    return parts[0].decode(), parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) == 4 else b""


def _epoch(stamp: str) -> float:
    """The time of a k8s-file timestamp (seconds since the epoch)."""
    import datetime

    main, _, rest = stamp.partition(".")
    fraction = "".join(c for c in rest if c.isdigit())
    base = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
    return base.timestamp() + (float("0." + fraction) if fraction else 0.0)


def read_records(path: str, *, since: float | None = None, tail: int | None = None, until: float | None = None):
    """The records of a log file: (timestamp, stream, partial, text)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    records = [r for r in (parse_line(line) for line in data.splitlines(keepends=True)) if r is not None]
    if since is not None:
        records = [r for r in records if _epoch(r[0]) >= since]
    if until is not None:
        records = [r for r in records if _epoch(r[0]) <= until]
    if tail is not None and tail >= 0:
        # --tail counts lines as the user sees them: a run of partial records ends in a full one
        full_ends = [i for i, r in enumerate(records) if not r[2]]
        if tail == 0:
            return []
        if len(full_ends) > tail:
            records = records[full_ends[-tail - 1] + 1:]
    return records


class LogFollower:
    """The records a growing log gained since the last look (``logs -f`` and ``attach``): whole
    lines only; a line still being written waits for the next look."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self._pending = b""

    def new_records(self) -> list[tuple[str, str, bool, bytes]]:
        """The records written since the last call (an empty list: nothing new)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        self.offset += len(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return [entry for entry in map(parse_line, lines) if entry is not None]


def render(record, timestamps: bool) -> bytes:
    stamp, _, partial, text = record
    prefix = (stamp.replace("+00:00", "Z").encode() + b" ") if timestamps else b""  # podman writes Z
    return prefix + text + (b"" if partial else b"\n")
