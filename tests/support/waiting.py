"""Waiting for a server a test or benchmark started."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def wait_listening(path: Path, process: subprocess.Popen, timeout: float) -> bool:
    """Whether the unix socket ``path`` accepts a connection within ``timeout`` seconds (False as
    soon as ``process``, its server, has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(path))
                    return True
                except OSError:
                    pass
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
