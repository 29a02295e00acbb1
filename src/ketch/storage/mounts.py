"""mount(2) and umount2(2) through libc (Python has neither), and the boot id
that mount counts are tied to.

Overlay mounts with relative lower-directory names need a ``chdir``, which is
process-wide: they are made in a forked child, never in a threaded process.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REMOUNT = 0x20
MS_PRIVATE = 1 << 18
MS_REC = 0x4000
MNT_DETACH = 0x2

# The soname directly: ctypes.util.find_library runs ldconfig, which costs a process start.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # not a mount point (any more)
            return
        raise OSError(err, f"unmount {target}: {os.strerror(err)}")


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
