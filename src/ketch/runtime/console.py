"""The container's terminal: the console socket a caller gives (``--console-socket``, the pty
master sent over it with SCM_RIGHTS, as runc does) and, when ketch-runtime itself holds the
terminal (``run`` and ``exec`` in the foreground), the proxy between ours and the container's
pty (output, input, window size)."""

from __future__ import annotations

import os
import sys

from ketch.errors import InvalidInputError, OCIRuntimeError
from ketch.runtime.paths import unlink_if_present as _unlink
from ketch.runtime.private import signal_module as _signal  # (see private.py: start-up cost)
from ketch.runtime.private import socket_module as _socket


def connect_console(console_socket: str | None) -> int:
    if not console_socket:
        raise InvalidInputError("process.terminal is true: --console-socket is required")
    console = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        console.connect(console_socket)
    except OSError as exc:
        console.close()
        raise InvalidInputError(f"connecting to the console socket {console_socket}: {exc.strerror}") from exc
    return console.detach()


def close_listener(listener, console_socket) -> None:
    if listener is not None:
        listener.close()
        _unlink(console_socket)


class TerminalProxy:
    """Copies between our stdin/stdout and a container's pty master; our terminal goes raw
    meanwhile, and its size follows ours (SIGWINCH)."""

    def __init__(self, master: int, on_output=None, forward_stdin: bool = True) -> None:
        import select  # here: only a terminal needs it, and a plain start does without the import
        import termios
        import tty

        self.select = select.select
        self.master = master
        self.on_output = on_output
        self.saved = None
        if os.isatty(0):
            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
            self._resize()
            _signal.signal(_signal.SIGWINCH, lambda *_: self._resize())
        self.stdin_open = forward_stdin

    def _resize(self) -> None:
        import fcntl
        import termios

        try:
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def pump(self, timeout: float) -> None:
        sources = [self.master] + ([0] if self.stdin_open else [])
        try:
            ready, _, _ = self.select(sources, [], [], timeout)
        except InterruptedError:
            return
        if self.master in ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if data:
                os.write(1, data)
                if self.on_output is not None:
                    self.on_output(data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                os.write(self.master, data)
            else:
                self.stdin_open = False

    def drain(self) -> None:
        while True:
            ready, _, _ = self.select([self.master], [], [], 0)
            if not ready:
                return
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            os.write(1, data)
            if self.on_output is not None:
                self.on_output(data)

    def close(self) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
        os.close(self.master)


def receive_fd(listener: _socket.socket) -> int:
    """Accept one connection on a console socket and take the pty master it sends (SCM_RIGHTS)."""
    fd, _ = listener._accept()  # type: ignore[attr-defined]  # (the fd, not a socket object)
    conn = _socket.socket(fileno=fd)
    try:
        _, ancillary, _, _ = conn.recvmsg(1024, _socket.CMSG_SPACE(4))
    finally:
        conn.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder, signed=True)
    raise OCIRuntimeError("the container's init sent no terminal")
