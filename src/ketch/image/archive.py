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
import os
import posixpath
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DestinationError, ImageFormatError, NotFoundError, from_oserror

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
        except FileNotFoundError:
            raise NotFoundError(f"archive {path} does not exist") from None
        except (tarfile.TarError, EOFError) as exc:
            raise ImageFormatError(f"{path} is not a valid tar archive ({exc})") from None
        except OSError as exc:
            raise from_oserror(exc, f"reading archive {path}") from None
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


def temp_dir_beside(path: Path) -> Path:
    """A private working directory on the archive's file system."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}-{path.name}.d"
        work.mkdir()
    except OSError as exc:
        raise DestinationError(f"cannot write archive {path}: {exc.strerror}", errno=exc.errno) from None
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
            tar.copybufsize = 1 << 20
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
        raise DestinationError(f"writing archive {path}: {exc.strerror}", errno=exc.errno) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
