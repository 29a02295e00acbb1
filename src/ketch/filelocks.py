"""File locks for long work (extracting a layer, writing an archive), shared by
the store and the archive transports.

``flock`` is released by the kernel when its process dies, so a ``kill -9``
never leaves a lock held -- and a lock that can be taken at once tells that
whoever wrote a temporary is gone. Lock files are never the database file, so
closing them drops nothing of SQLite's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on ``path`` (created if missing) for the ``with`` block, waiting for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def if_abandoned(lock_path: str | os.PathLike, *, create: bool = False) -> Iterator[bool]:
    """Yield True, holding the lock, when nobody holds ``lock_path`` (its owner died);
    False when a live process holds it or it cannot be opened."""
    flags = os.O_RDONLY | os.O_CLOEXEC | ((os.O_RDWR | os.O_CREAT) if create else 0)
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
