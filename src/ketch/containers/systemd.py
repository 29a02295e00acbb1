"""What systemd gives a process and what it asks back: the sockets of socket activation
(``LISTEN_FDS`` for ``LISTEN_PID``) and sd_notify's datagram (``NOTIFY_SOCKET``). Written here
rather than taken from a library: it is two environment variables and one datagram."""

from __future__ import annotations

import os


def listen_fds() -> int:
    """How many sockets systemd passed this process (from fd 3 on); 0 when none, or when they
    were meant for another process (``LISTEN_PID``)."""
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
        pid = int(os.environ.get("LISTEN_PID", "0"))
    except ValueError:
        return 0
    return count if count > 0 and pid == os.getpid() else 0


def notify(text: str, socket_path: str | None = None) -> bool:
    """Send ``text`` (``READY=1``, ``MAINPID=N``, ...) to ``socket_path`` or ``$NOTIFY_SOCKET``
    (an ``@`` name is abstract); whether it was sent."""
    import socket

    path = socket_path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(text.encode(), address)
        except OSError:
            return False
    return True


class NotifyProxy:
    """The notify socket a detached ``--sdnotify=container`` container gets (podman's notify
    proxy): its ``READY=1`` is passed on to systemd by ``ketch run`` -- the unit's main process,
    still alive -- with ``MAINPID`` the container's monitor. A message straight from the
    container is lost when its sender exits before systemd looks it up (a script's notifier)."""

    def __init__(self, directory: str) -> None:
        import socket

        if len(directory) > 90:  # (a socket's path must fit in 108 bytes)
            import tempfile

            directory = tempfile.mkdtemp(prefix="ketch-notify-")
        os.makedirs(directory, mode=0o755, exist_ok=True)
        os.chmod(directory, 0o755)
        self.directory = directory
        self.path = os.path.join(directory, "notify.sock")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # (the container's user may not be root)

    def wait_ready(self, target: str, main_pid: int, running, name: str) -> None:
        """Wait for READY=1 (what else the container said before it goes along); raise if the
        container stops first."""
        from ketch.errors import ContainerError

        self.sock.settimeout(0.25)
        said: dict[str, str] = {}
        while True:
            try:
                message = self.sock.recv(65536).decode(errors="replace")
            except TimeoutError:
                if not running():
                    raise ContainerError(f"container {name} stopped before it notified READY=1") from None
                continue
            for line in message.splitlines():
                key, sep, value = line.partition("=")
                if sep and key != "MAINPID":
                    said[key] = value
            if said.get("READY") == "1":
                break
        lines = [f"MAINPID={main_pid}"] + [f"{k}={v}" for k, v in said.items() if k != "READY"] + ["READY=1"]
        if not notify("\n".join(lines) + "\n", target):
            raise ContainerError(f"could not notify systemd at {target}")

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.directory)
        except OSError:
            pass
