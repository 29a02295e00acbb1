"""Helpers shared by the file-system transports: blob files written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

from ketch.errors import DestinationError
from ketch.image.types import BlobInfo
from ketch.oci import Descriptor, Digest

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


def store_blob_file(directory: Path, final_for: Callable[[Digest], Path], stream: BinaryIO, info: BlobInfo,
                    on_progress=None) -> Descriptor:
    """Stream a blob into a file named by its digest, through a temporary name.

    The stream is read to its end. If ``info.digest`` is known, the stream is
    a verifying one that raises at EOF when the content is wrong (the copy
    engine hashes once, not once per layer of code); otherwise the digest is
    computed here. Only a stream that ended cleanly is renamed into place; on
    any error the temporary file is removed.
    """
    tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    hasher = None if info.digest is not None else hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as sink:
            while chunk := stream.read(CHUNK_SIZE):
                sink.write(chunk)
                size += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                if on_progress is not None:
                    on_progress(len(chunk))
        digest = info.digest if info.digest is not None else Digest("sha256", hasher.hexdigest())
        os.replace(tmp, final_for(digest))
    except OSError as exc:
        raise DestinationError(f"writing blob to {directory}: {exc.strerror}", errno=exc.errno) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Descriptor(info.media_type, digest, size)


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
