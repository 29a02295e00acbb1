"""Reading and writing tar archives of images (for ``oci-archive:`` and
``docker-archive:``).

Reading indexes the archive once and opens members by offset with a file
handle of their own, so blobs are streamed straight out of the archive and
several threads can read at once. Writing collects the image in a temporary
directory next to the archive and, at commit, writes the tar under a
temporary name and renames it into place: a destination archive is either the
old one or the complete new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DestinationError, ImageFormatError, NotFoundError, from_oserror
from ketch.filelocks import if_abandoned

TEMP_PREFIX = ".ketch-tmp-"


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class _BoundedReader:
    """Reads ``size`` bytes from ``offset`` of a file, with its own handle."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._file = open(path, "rb")
        self._file.seek(offset)
        self._left = size

    def read(self, amount: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        if amount is None or amount < 0 or amount > self._left:
            amount = self._left
        data = self._file.read(amount)
        if not data:
            raise ImageFormatError("archive member is truncated")
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class TarReader:
    """Random access to the regular files of an uncompressed tar archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, _Member] = {}
        links: dict[str, str] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for info in tar:
                    name = posixpath.normpath(info.name.lstrip("/"))
                    if info.isreg():
                        self._members[name] = _Member(info.offset_data, info.size)
                    elif info.issym():
                        links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
                    elif info.islnk():
                        links[name] = posixpath.normpath(info.linkname.lstrip("/"))
        except FileNotFoundError as exc:
            raise NotFoundError(f"archive {path} does not exist") from exc
        except (tarfile.TarError, EOFError) as exc:
            raise ImageFormatError(f"{path} is not a valid tar archive ({exc})") from exc
        except OSError as exc:
            raise from_oserror(exc, f"reading archive {path}") from exc
        for name, target in links.items():
            for _ in range(16):  # follow link chains, never loops
                if target in self._members:
                    self._members[name] = self._members[target]
                    break
                if target not in links:
                    break
                target = links[target]

    def __contains__(self, name: str) -> bool:
        return posixpath.normpath(name) in self._members

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        member = self._member(name)
        if member.size > limit:
            raise ImageFormatError(f"{name} in {self.path} is {member.size} bytes, too large")
        stream = _BoundedReader(self.path, member.offset, member.size)
        try:
            return stream.read()
        finally:
            stream.close()

    def open(self, name: str) -> tuple[BinaryIO, int]:
        member = self._member(name)
        return _BoundedReader(self.path, member.offset, member.size), member.size  # type: ignore[return-value]

    def size(self, name: str) -> int:
        return self._member(name).size

    def _member(self, name: str) -> _Member:
        member = self._members.get(posixpath.normpath(name.lstrip("/")))
        if member is None:
            raise NotFoundError(f"{name} is missing from archive {self.path}")
        return member


_held_locks: dict[str, int] = {}  # working path -> the fd whose flock marks it as in use
# A working directory ``X.d`` belongs to whoever holds the flock of its sibling ``X.lock``. The
# lock file is made and locked before the directory exists and removed after it is gone, so a
# writer killed at any moment leaves either an unlocked lock file, or a directory whose lock file
# is unlocked or missing: both are abandoned.
LOCK_SUFFIX = ".lock"
DIR_SUFFIX = ".d"


def _take_lock(path: str) -> int | None:
    """flock a new lock file at ``path``; None if a cleaner removed it meanwhile (try again)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


def remove_stale_temporaries(directory: Path) -> None:
    """Remove what killed writers left beside archives: working directories and files whose
    owner's flock is free."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(TEMP_PREFIX)]
    except OSError:
        return
    for entry in entries:
        if entry.path in _held_locks or entry.path[:-len(DIR_SUFFIX)] + LOCK_SUFFIX in _held_locks:
            continue
        if entry.name.endswith(DIR_SUFFIX) and entry.is_dir(follow_symlinks=False):
            lock = entry.path[:-len(DIR_SUFFIX)] + LOCK_SUFFIX
            with if_abandoned(lock) as abandoned:
                if abandoned or not os.path.exists(lock):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        os.unlink(lock)
            continue
        with if_abandoned(entry.path) as abandoned:
            if not abandoned:
                continue  # its writer is alive (a lock file, or a tar being written)
            work = entry.path[:-len(LOCK_SUFFIX)] + DIR_SUFFIX if entry.name.endswith(LOCK_SUFFIX) else None
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def temp_dir_beside(path: Path) -> Path:
    """A private working directory on the archive's file system, owned (flock) while in use."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(parent)
        while True:
            base = parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}-{path.name}"
            fd = _take_lock(str(base) + LOCK_SUFFIX)
            if fd is not None:
                break
        work = Path(str(base) + DIR_SUFFIX)
        _held_locks[str(work)] = fd
        work.mkdir()
    except OSError as exc:
        raise DestinationError(f"cannot write archive {path}: {exc.strerror}", errno=exc.errno) from exc
    return work


def write_tar(directory: Path, path: Path, members: list[str] | None = None) -> None:
    """Tar the files of ``directory`` (all of them, in name order, or ``members``)
    into ``path``, atomically. Metadata is normalised so equal inputs give equal archives."""
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}-{path.name}")
    if members is None:
        members = []
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            rel_root = os.path.relpath(root, directory)
            for name in sorted(dirs) + sorted(files):
                members.append(os.path.normpath(os.path.join(rel_root, name)))
    try:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            fcntl.flock(raw.fileno(), fcntl.LOCK_EX)  # in use: not a stale temporary
            tar.copybufsize = 1 << 20  # type: ignore[attr-defined]  # (TarFile's buffer for copying members)
            for name in members:
                source = directory / name
                info = tar.gettarinfo(str(source), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isdir():
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    info.mode = 0o644
                    with open(source, "rb") as f:
                        tar.addfile(info, f)
        os.replace(tmp, path)
    except OSError as exc:
        raise DestinationError(f"writing archive {path}: {exc.strerror}", errno=exc.errno) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_tree(path: Path) -> None:
    """Remove a working directory of ``temp_dir_beside``, then its lock file."""
    shutil.rmtree(path, ignore_errors=True)
    fd = _held_locks.pop(str(path), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(str(path)[:-len(DIR_SUFFIX)] + LOCK_SUFFIX)
        os.close(fd)
