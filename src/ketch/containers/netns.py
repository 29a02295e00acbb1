"""Namespaces that outlive no container: made by ketch before the runtime runs (bind-mounted
nsfs files under the run directory, as ``ip netns add`` makes them), given to the runtime by
path, and removed after the last process is gone (a container's network namespace; a pod's
network, IPC and UTS namespaces); and work done inside one by a forked child (``setns``
changes the calling thread for good)."""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from ketch.errors import NetworkError


def in_namespace(netns_fd: int, work):
    """Run ``work`` in a forked child that entered the network namespace (setns changes the
    calling thread for good, and this process must stay where it is); what it returns, if that
    is a bool, int or str (it comes back through a pipe)."""
    import json

    from ketch import syscalls

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
            result = work()
            os.write(write_end, b"ok" + json.dumps(result).encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, one line
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode(errors="replace")
    os.waitpid(pid, 0)
    if not answer.startswith("ok"):
        raise NetworkError(f"configuring the container's network: {answer or 'the helper died'}")
    return json.loads(answer[2:])


def write_sysctls(path: str, sysctls: dict[str, str]) -> None:
    """Set net.* ``sysctls`` in the network namespace pinned at ``path``."""
    if not sysctls:
        return

    def work() -> None:
        for key, value in sysctls.items():
            try:
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)
            except OSError as exc:
                raise NetworkError(f"sysctl {key}={value}: {exc.strerror}") from exc

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        in_namespace(fd, work)
    finally:
        os.close(fd)


def make_namespace(path: str) -> None:
    """A new network namespace kept alive by a bind mount on ``path`` (as ``ip netns add``)."""
    pin_namespaces({"net": path}, loopback=False)  # (the bridge set-up brings lo up itself)


_CLONE_FLAGS = {"net": "CLONE_NEWNET", "ipc": "CLONE_NEWIPC", "uts": "CLONE_NEWUTS"}


def pin_namespaces(paths: dict[str, str], *, hostname: str = "", sysctls: dict[str, str] | None = None,
                   loopback: bool = True) -> None:
    """New namespaces of each kind in ``paths`` (net, ipc, uts: the names under /proc/PID/ns),
    made by a forked child (unshare changes the caller for good) and kept alive by bind mounts
    of its namespace files onto those paths (as ``ip netns add`` and CRI-O's pinns do). Before
    they are pinned, the child brings ``lo`` up (``loopback``), sets ``hostname`` and the
    ``sysctls`` of those namespaces (net.*, the IPC ones). A failure leaves nothing mounted."""
    from ketch import syscalls

    if not paths:
        return
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w"):
            pass
    flags = 0
    for kind in paths:
        flags |= getattr(syscalls, _CLONE_FLAGS[kind])
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            syscalls.unshare(flags)
            if loopback and "net" in paths:
                _loopback_up()
            if hostname and "uts" in paths:
                syscalls.sethostname(hostname)
            for key, value in (sysctls or {}).items():
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)
            os.write(ready_w, b"ok")
            os.read(done_r, 1)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, one line
            os.write(ready_w, f"{type(exc).__name__}: {exc}".encode()[:1000])
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    pinned: list[str] = []
    try:
        answer = os.read(ready_r, 1100).decode(errors="replace")
        if answer != "ok":
            raise NetworkError(f"making namespaces: {answer or 'the helper died'}")
        for kind, path in paths.items():
            syscalls.mount(f"/proc/{pid}/ns/{kind}", path, None, syscalls.MS_BIND)
            pinned.append(path)
    except BaseException:
        for path in paths.values():
            if path in pinned:
                remove_namespace(path)
            else:
                _unlink(path)
        raise
    finally:
        os.close(ready_r)
        try:
            os.write(done_w, b"1")
        except BrokenPipeError:
            pass  # (it failed, said why, and is gone)
        os.close(done_w)
        os.waitpid(pid, 0)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _loopback_up() -> None:
    """``lo`` up in this process's (new) network namespace: two ioctls, where a netlink library
    would cost its import in this child (and a forked child of a threaded process must not
    import: the modules it needs are imported at the top of this one)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


def remove_namespace(path: str) -> None:
    from ketch import syscalls

    try:
        syscalls.umount(path, syscalls.MNT_DETACH)
    except OSError:
        pass
    _unlink(path)
