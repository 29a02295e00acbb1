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
