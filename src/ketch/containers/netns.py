"""Network namespaces that outlive no container: made by ketch before the runtime runs (a
bind-mounted nsfs file under the run directory, as ``ip netns add`` makes them), given to the
runtime by path, and removed after the container's last process is gone; and work done inside
one by a forked child (``setns`` changes the calling thread for good)."""

from __future__ import annotations

import os

from ketch.errors import NetworkError


def in_namespace(netns_fd: int, work) -> None:
    """Run ``work`` in a forked child that entered the network namespace: setns changes the
    calling thread for good, and this process must stay where it is."""
    from ketch import syscalls

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
            work()
            os.write(write_end, b"ok")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, one line
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode(errors="replace")
    os.waitpid(pid, 0)
    if answer != "ok":
        raise NetworkError(f"configuring the container's network: {answer or 'the helper died'}")


def make_namespace(path: str) -> None:
    """A new network namespace kept alive by a bind mount on ``path`` (as ``ip netns add``)."""
    from ketch import syscalls

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w"):
        pass
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            syscalls.unshare(syscalls.CLONE_NEWNET)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise NetworkError("making a network namespace failed")
        syscalls.mount(f"/proc/{pid}/ns/net", path, None, syscalls.MS_BIND)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    finally:
        os.close(ready_r)
        os.write(done_w, b"1")
        os.close(done_w)
        os.waitpid(pid, 0)


def remove_namespace(path: str) -> None:
    from ketch import syscalls

    try:
        syscalls.umount(path, syscalls.MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
