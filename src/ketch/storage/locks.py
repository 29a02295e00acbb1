"""File locks for long work (extracting a layer, writing an archive).

``flock`` on a file under the run directory: released by the kernel when the
process dies, so a ``kill -9`` never leaves a lock held. Lock files are never
opened by SQLite's database file, so closing them drops nothing of SQLite's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
