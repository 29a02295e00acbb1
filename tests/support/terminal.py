"""Running a command on a pseudo-terminal of the test's own, and reading all it printed."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios


def run_on_pty(args: list[str], *, rows: int = 24, columns: int = 80, timeout: float = 15) -> tuple[int, bytes]:
    """The exit status and the output of ``args`` run with a pty as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            output += chunk
        return proc.wait(timeout=timeout), output
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
