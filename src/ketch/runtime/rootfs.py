"""The container's root file system, made by its init in its mount namespace: the config's
mounts (each target resolved inside the root, never following a link out of it), the cgroup
mount, device nodes, ``pivot_root`` (or ``chroot`` with ``--no-pivot``), masked and read-only
paths, and the console (a pty of the container's devpts, its master sent to the console socket).
Imported by :mod:`ketch.runtime.init` before the fork."""

from __future__ import annotations

import errno
import os
import stat
import sys

from ketch import syscalls as sc
from ketch.runtime.initbase import SetupError
from ketch.runtime.paths import resolve_in_root
from ketch.runtime.private import socket_module as _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MOUNT_FLAGS = {
    "ro": (sc.MS_RDONLY, True), "rw": (sc.MS_RDONLY, False), "nosuid": (sc.MS_NOSUID, True),
    "suid": (sc.MS_NOSUID, False), "nodev": (sc.MS_NODEV, True), "dev": (sc.MS_NODEV, False),
    "noexec": (sc.MS_NOEXEC, True), "exec": (sc.MS_NOEXEC, False), "sync": (sc.MS_SYNCHRONOUS, True),
    "async": (sc.MS_SYNCHRONOUS, False), "dirsync": (sc.MS_DIRSYNC, True), "remount": (sc.MS_REMOUNT, True),
    "mand": (sc.MS_MANDLOCK, True), "nomand": (sc.MS_MANDLOCK, False), "atime": (sc.MS_NOATIME, False),
    "noatime": (sc.MS_NOATIME, True), "diratime": (sc.MS_NODIRATIME, False),
    "nodiratime": (sc.MS_NODIRATIME, True), "bind": (sc.MS_BIND, True), "rbind": (sc.MS_BIND | sc.MS_REC, True),
    "relatime": (sc.MS_RELATIME, True), "norelatime": (sc.MS_RELATIME, False),
    "strictatime": (sc.MS_STRICTATIME, True), "nostrictatime": (sc.MS_STRICTATIME, False),
    "lazytime": (sc.MS_LAZYTIME, True), "nolazytime": (sc.MS_LAZYTIME, False),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, True), "symfollow": (sc.MS_NOSYMFOLLOW, False),
}
PROPAGATION = {"private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC, "shared": sc.MS_SHARED,
               "rshared": sc.MS_SHARED | sc.MS_REC, "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
               "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC}
DEFAULT_DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
                   ("tty", 5, 0)]
# asm-generic/ioctls.h (termios does not export them): unlock a pty, get its number.
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
EXTENSION_OPTIONS = {"tmpcopyup", "notmpcopyup", "copy", "nocopy", "z", "Z", "U", "idmap", "private-shared"}
_CGROUP_PATH = ""  # the container's cgroup, relative to each hierarchy (set by the init: set_cgroup_path)


def set_cgroup_path(path: str) -> None:
    global _CGROUP_PATH
    _CGROUP_PATH = path


def _parse_options(options: list[str]) -> tuple[int, int, list[str]]:
    flags, propagation, data = 0, 0, []
    for option in options:
        if option in EXTENSION_OPTIONS:
            continue
        if option in MOUNT_FLAGS:
            bit, on = MOUNT_FLAGS[option]
            flags = flags | bit if on else flags & ~bit
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, data


def _secure_join(root: str, path: str) -> str:
    """``path`` inside ``root``, following symlinks as if ``root`` were ``/``."""
    try:
        return resolve_in_root(root, path)
    except OSError as exc:
        raise SetupError(f"too many symlinks under {path}") from exc


def _make_target(target: str, source_is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    if source_is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def _mount_one(rootfs: str, mount: dict[str, Any], bundle_dir: str, real_root: str) -> None:
    """One ``mounts`` entry; ``real_root`` is ``rootfs`` with its symbolic links resolved."""
    kind = mount.get("type") or ""
    options = list(mount.get("options") or [])
    source = mount.get("source") or kind or "none"
    flags, propagation, data = _parse_options(options)
    is_bind = bool(flags & sc.MS_BIND) or kind == "bind"
    if is_bind:
        flags |= sc.MS_BIND
        if not os.path.isabs(source):
            source = os.path.join(bundle_dir, source)
        if not os.path.exists(source):
            raise SetupError(f"bind mount source {source} does not exist")
    target = _secure_join(rootfs, mount["destination"])
    real_target = os.path.realpath(target)
    if real_target != real_root and not real_target.startswith(real_root.rstrip("/") + "/"):
        raise SetupError(f"mount destination {mount['destination']} resolves outside the root file system")
    _make_target(target, os.path.isdir(source) if is_bind else True)
    if kind == "cgroup":
        _mount_cgroups(target, flags)
    else:
        try:
            if is_bind:
                sc.mount(source, target, None, flags & (sc.MS_BIND | sc.MS_REC))
                if flags & ~(sc.MS_BIND | sc.MS_REC):
                    sc.mount(None, target, None, flags | sc.MS_REMOUNT | sc.MS_BIND)
            elif kind == "tmpfs" and "tmpcopyup" in options and os.listdir(target):
                _tmpfs_copy_up(target, flags, ",".join(data) or None)
            else:
                sc.mount(source, target, kind or None, flags, ",".join(data) or None)
        except OSError as exc:
            if kind == "sysfs" and exc.errno == errno.EPERM:
                # sysfs needs a network namespace of our own: bind the host's read-only, as runc does.
                sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
                sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID
                         | sc.MS_NODEV | sc.MS_NOEXEC)
            elif kind == "mqueue" and exc.errno == errno.EPERM:
                sc.mount("/dev/mqueue", target, None, sc.MS_BIND | sc.MS_REC)
            else:
                raise SetupError(f"mounting {kind or 'bind'} {source} on {mount['destination']}: "
                                 f"{exc.strerror}") from exc
    if propagation:
        sc.mount(None, target, None, propagation)


def _tmpfs_copy_up(target: str, flags: int, data: str | None) -> None:
    """A tmpfs that starts with the image's content of ``target`` (podman's tmpcopyup, as runc does it)."""
    import subprocess  # still before pivot_root: the host's library is reachable

    staging = target + ".ketch-tmpcopyup"
    os.mkdir(staging)
    try:
        sc.mount("tmpfs", staging, "tmpfs", flags, data)
        subprocess.run(["cp", "-a", f"{target}/.", staging], check=True, capture_output=True)
        sc.mount(staging, target, None, sc.MS_MOVE)
    finally:
        os.rmdir(staging)


def _mount_cgroups(target: str, flags: int) -> None:
    """The container's own cgroup of each hierarchy, read-only (but for systemd's, when the mount
    is writable), as runc lays out v1 (a tmpfs of per-controller mounts); on a unified host,
    cgroup2 itself (in the cgroup namespace, if any)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        try:
            sc.mount("cgroup2", target, "cgroup2", flags)
        except OSError:
            sc.mount("/sys/fs/cgroup", target, None, sc.MS_BIND | sc.MS_REC)  # outside a cgroup namespace
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
                     | sc.MS_NOEXEC)
        return
    sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for entry in sorted(os.listdir("/sys/fs/cgroup")):
        source = os.path.join("/sys/fs/cgroup", entry)
        own = source + _CGROUP_PATH if _CGROUP_PATH and _CGROUP_PATH != "/" else source
        if os.path.isdir(own) and not os.path.islink(source):
            source = own
        if os.path.islink(source):
            os.symlink(os.readlink(source), os.path.join(target, entry))
        elif os.path.isdir(source):
            os.makedirs(os.path.join(target, entry), exist_ok=True)
            sc.mount(source, os.path.join(target, entry), None, sc.MS_BIND | sc.MS_REC)
            # a writable cgroup mount (podman's systemd mode) makes systemd's own hierarchies
            # writable -- the container's cgroup in them, no more; the controllers stay read-only
            writable = not flags & sc.MS_RDONLY and entry in ("systemd", "unified")
            sc.mount(None, os.path.join(target, entry), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_NOSUID | sc.MS_NODEV
                     | sc.MS_NOEXEC | (0 if writable else sc.MS_RDONLY))
    if flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def _setup_devices(rootfs: str, linux: dict[str, Any], dev_is_tmpfs: bool) -> None:
    dev = os.path.join(rootfs, "dev")
    os.makedirs(dev, exist_ok=True)
    devices: list[dict[str, Any]] = [
        {"path": f"/dev/{n}", "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
        for n, ma, mi in DEFAULT_DEVICES] if dev_is_tmpfs else []
    devices += list(linux.get("devices") or [])
    for device in devices:
        target = _secure_join(rootfs, device["path"])
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        if device.get("type") not in kinds:
            raise SetupError(f"device {device.get('path')}: unknown type {device.get('type')!r}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        mode = device.get("fileMode", 0o666)
        try:
            os.mknod(target, mode | kinds[device["type"]], os.makedev(device.get("major", 0), device.get("minor", 0)))
        except PermissionError:
            # in a user namespace devices cannot be made: bind the host's, as runc does
            _make_target(target, False)
            sc.mount(device["path"], target, None, sc.MS_BIND)
            continue
        os.chmod(target, mode)
        os.chown(target, device.get("uid", 0), device.get("gid", 0))
    if dev_is_tmpfs:
        for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
            path = os.path.join(dev, link)
            if not os.path.lexists(path):
                os.symlink(to, path)
    ptmx = os.path.join(dev, "ptmx")
    if os.path.isdir(os.path.join(dev, "pts")) and not os.path.exists(ptmx) or \
            (os.path.lexists(ptmx) and not os.path.islink(ptmx) and dev_is_tmpfs):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def _setup_rootfs(config: dict[str, Any], bundle_dir: str, rootfs: str, no_pivot: bool,
                  new_namespaces: set[str], before_root_change) -> None:
    linux = config.get("linux") or {}
    propagation = linux.get("rootfsPropagation")
    if propagation and propagation not in PROPAGATION:
        raise SetupError(f"unknown rootfsPropagation {propagation!r}")
    # As runc: the new mount namespace's tree as rootfsPropagation asks (rslave when it does not
    # say: the host's mounts reach us, ours do not reach the host). A shared tree is what lets a
    # container's mount under an rshared bind reach the host (the CRI's Bidirectional); then the
    # rootfs's own mount is made private first, so that the mounts setting up the container do
    # not propagate anywhere.
    flags = PROPAGATION[propagation] if propagation else sc.MS_REC | sc.MS_SLAVE
    sc.mount(None, "/", None, flags)
    if flags & sc.MS_SHARED:
        sc.mount(None, _mount_point_of(rootfs), None, sc.MS_PRIVATE)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    dev_is_tmpfs = False
    real_root = os.path.realpath(rootfs)
    for mount in config.get("mounts") or []:
        _mount_one(rootfs, mount, bundle_dir, real_root)
        if mount.get("destination", "").rstrip("/") == "/dev" and mount.get("type") in ("tmpfs", "devtmpfs"):
            dev_is_tmpfs = True
    _setup_devices(rootfs, linux, dev_is_tmpfs)
    before_root_change()
    os.chdir(rootfs)
    if no_pivot:
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
    else:
        # pivot_root(".", ".") stacks the old root under the new one; detach it at once.
        old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
        new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
        try:
            sc.pivot_root(".", ".")
            os.fchdir(old_root)
            sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
            sc.umount(".", sc.MNT_DETACH)
            os.fchdir(new_root)
        finally:
            os.close(old_root)
            os.close(new_root)
    os.chdir("/")
    if propagation:
        sc.mount(None, "/", None, PROPAGATION[propagation])


def _mount_point_of(path: str) -> str:
    """The mount point of the mount that holds ``path`` (the longest mount point above it)."""
    real = os.path.realpath(path)
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best = point
    return best


def _finalize_rootfs(config: dict[str, Any]) -> None:
    """Masked and read-only paths, a read-only root: after sysctls are written, as runc orders it."""
    linux = config.get("linux") or {}
    for path in linux.get("maskedPaths") or []:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
    for path in linux.get("readonlyPaths") or []:
        if not os.path.lexists(path):
            continue
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
                 | sc.MS_NOEXEC)
    if (config.get("root") or {}).get("readonly"):
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)


def _setup_console(console_fd: int | None, size: dict[str, int] | None = None, *, bind_console: bool) -> None:
    """Make a pty in the container's devpts, send its master to the console socket
    (connected by the runtime before the root changed), and take the slave as stdio.
    In a mount namespace of its own the slave is also /dev/console, as runc makes it."""
    if console_fd is None:
        raise SetupError("process.terminal is true: a --console-socket is needed")
    import fcntl  # preloaded
    import termios
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt
    number = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"), "little")
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if bind_console:
        try:
            if not os.path.lexists("/dev/console"):
                os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            sc.mount(slave_path, "/dev/console", None, sc.MS_BIND)
        except OSError as exc:
            raise SetupError(f"binding the terminal onto /dev/console: {exc.strerror}") from exc
    if size:
        winsize = b"".join(n.to_bytes(2, sys.byteorder) for n in (size.get("height", 0), size.get("width", 0), 0, 0))
        fcntl.ioctl(master, termios.TIOCSWINSZ, winsize)
    # runc's console-socket protocol: the pty's path as data, its master as SCM_RIGHTS.
    sock = _socket.socket(fileno=console_fd)
    try:
        sock.sendmsg([slave_path.encode()],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder, signed=True))])
    finally:
        sock.close()
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)
