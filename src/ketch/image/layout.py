"""Helpers shared by the file-system transports: blob files written atomically."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DestinationError
from ketch.oci import Descriptor

TEMP_PREFIX = ".ketch-tmp-"
CHUNK_SIZE = 1 << 20


def write_atomically(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one."""
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DestinationError(f"writing {path}: {exc.strerror}", errno=exc.errno) from None


def store_blob_file(final: Path, stream: BinaryIO, descriptor: Descriptor, on_progress=None) -> None:
    """Stream a blob into ``final`` through a temporary name.

    The stream is read to its end; per the destination contract it is a
    verifying stream that raises at EOF when the content is wrong (the copy
    engine hashes once, not once per layer of code). Only a stream that ended
    cleanly is renamed into place; on any error the temporary file is removed.
    """
    tmp = final.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    try:
        with open(tmp, "wb") as sink:
            while chunk := stream.read(CHUNK_SIZE):
                sink.write(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
        os.replace(tmp, final)
    except OSError as exc:
        raise DestinationError(f"writing blob {descriptor.digest} to {final.parent}: {exc.strerror}",
                               errno=exc.errno) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def has_blob_file(path: Path, descriptor: Descriptor) -> bool:
    try:
        return path.stat().st_size == descriptor.size
    except OSError:
        return False


def remove_temporaries(directory: Path) -> None:
    """Remove temporary files an interrupted writer left in ``directory``."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
