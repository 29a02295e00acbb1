"""Helpers shared by the file-system transports: blob files written atomically.

Every file is written under a temporary name (``.ketch-tmp-*``) whose writer holds an ``flock``
on it until it is renamed into place or removed; a writer killed at any moment (even ``kill -9``)
leaves a temporary file nobody holds, which :func:`remove_temporaries` (called when a destination
is opened) removes, and never one a live writer is still filling."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DestinationError
from ketch.image.types import BlobInfo
from ketch.oci import Descriptor, Digest

TEMP_PREFIX = ".ketch-tmp-"
CHUNK_SIZE = 1 << 20


def _held_temporary(directory: Path, suffix: str = ""):
    """A new temporary file in ``directory``, flock-ed by this writer: (path, open file). A
    cleaner may remove the name between its creation and the lock: then another name is tried."""
    while True:
        tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}"
        f = open(tmp, "xb")  # noqa: SIM115 - the caller closes it
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            if os.stat(tmp).st_ino == os.fstat(f.fileno()).st_ino:
                return tmp, f
        except FileNotFoundError:
            pass
        f.close()


def write_atomically(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one."""
    tmp = None
    try:
        tmp, f = _held_temporary(path.parent, f"-{path.name}")
        with f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # (under the lock: a cleaner never sees it unheld)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise DestinationError(f"writing {path}: {exc.strerror}", errno=exc.errno) from exc


def store_blob_file(directory: Path, final_for: Callable[[Digest], Path], stream: BinaryIO, info: BlobInfo,
                    on_progress=None) -> Descriptor:
    """Stream a blob into a file named by its digest, through a temporary name.

    The stream is read to its end. If ``info.digest`` is known, the stream is
    a verifying one that raises at EOF when the content is wrong (the copy
    engine hashes once, not once per layer of code); otherwise the digest is
    computed here. Only a stream that ended cleanly is renamed into place; on
    any error the temporary file is removed.
    """
    hasher = None if info.digest is not None else hashlib.sha256()
    size = 0
    tmp = None
    try:
        tmp, sink = _held_temporary(directory)
        with sink:
            while chunk := stream.read(CHUNK_SIZE):
                sink.write(chunk)
                size += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
            digest = info.digest if hasher is None else Digest("sha256", hasher.hexdigest())
            os.replace(tmp, final_for(digest))  # (under the lock: a cleaner never sees it unheld)
    except OSError as exc:
        raise DestinationError(f"writing blob to {directory}: {exc.strerror}", errno=exc.errno) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return Descriptor(info.media_type, digest, size)


def has_blob_file(path: Path, descriptor: Descriptor) -> bool:
    try:
        return path.stat().st_size == descriptor.size
    except OSError:
        return False


def remove_temporaries(directory: Path) -> list[str]:
    """Remove the temporary files killed writers left in ``directory`` (those whose flock is
    free); a live writer's stay. The names removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if not entry.name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass  # held: its writer is alive
            finally:
                os.close(fd)
    return removed
