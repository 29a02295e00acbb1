"""Mounts for the store: the syscalls (from :mod:`ketch.syscalls`), mount-point
detection, the boot id that mount counts are tied to, and mounting from a
forked child.

Overlay mounts with relative lower-directory names need a ``chdir``, which is
process-wide: they are made in a forked child, never in a threaded process.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ketch.syscalls import (  # noqa: F401
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
)
from ketch.syscalls import umount as _umount


def umount(target: str, flags: int = 0) -> None:
    try:
        _umount(target, flags)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point (any more)
            raise


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def is_mountpoint(path: str) -> bool:
    """True if something is mounted on ``path`` (bind mounts of the same device too,
    which ``os.path.ismount`` cannot see)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(_unescape(line.split()[4]) == target for line in f)
    except OSError:
        return False


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def mount_in_child(cwd: str, source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """Mount from a forked child that changed into ``cwd`` (for relative overlay paths)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python-level cleanup, just mount and report
        try:
            os.close(read_end)
            os.chdir(cwd)
            mount(source, target, fstype, flags, data)
            os.write(write_end, b"0")
        except OSError as exc:
            os.write(write_end, str(exc.errno or errno.EIO).encode() + b" " + str(exc).encode()[:400])
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    if report != b"0":
        code, _, message = report.decode(errors="replace").partition(" ")
        raise OSError(int(code) if code.isdigit() else errno.EIO, message or "mount failed")
