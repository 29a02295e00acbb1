"""A content-addressed object store for read-only deployments, as OSTree keeps one.

Every regular file of an image is stored once, under the SHA-256 of its content *and* its
metadata (mode, owner, modification time, extended attributes): hard links share an inode, so
two files may share an object only if everything ``stat`` shows of them is the same. A
deployment's rootfs is then a tree of directories, symbolic links and device nodes made
afresh, and hard links into the store for every file: a second deployment of an image that
differs in one layer costs that layer's changed files, not the image.

Nothing ever opens an object for writing once it is in place: a file is copied to a temporary
name, given its metadata and renamed into the store. ``prune`` removes the objects no deployment
links any more (a link count of one: the store's own name).

Written by hand: OSTree's library (libostree) has no maintained Python binding on PyPI, and the
part needed here (hash, copy once, link) is small.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from ketch.errors import KetchError, StoreError

_CHUNK = 1 << 20


@dataclass
class CheckoutStats:
    """What a checkout did: files linked to objects already present, objects added, bytes of
    the objects added (the disk the checkout cost, but for directories and links)."""
    linked: int = 0
    added: int = 0
    added_bytes: int = 0
    copied: int = 0  # files copied, not linked (an unshared checkout, or a full link count)


def _xattrs(path: str) -> list[tuple[str, bytes]]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    found = []
    for name in sorted(names):
        if name.startswith("trusted.overlay."):
            continue  # the overlay driver's own bookkeeping, never the image's
        try:
            found.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return found


def _set_metadata(path: str, st: os.stat_result, xattrs: list[tuple[str, bytes]], *, symlink: bool = False) -> None:
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    for name, value in xattrs:
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    if not symlink:
        os.chmod(path, stat.S_IMODE(st.st_mode))  # (after chown, which clears set-id bits)
    os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


class ObjectStore:
    """Objects under ``directory/objects/XX/REST``; temporaries under ``directory/tmp``."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.objects = self.directory / "objects"
        self.tmp = self.directory / "tmp"

    def _key(self, path: str, st: os.stat_result, xattrs: list[tuple[str, bytes]]) -> str:
        digest = hashlib.sha256()
        digest.update(f"{stat.S_IMODE(st.st_mode):o}:{st.st_uid}:{st.st_gid}:{st.st_mtime_ns}\0".encode())
        for name, value in xattrs:
            digest.update(name.encode() + b"\0" + value + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _object(self, key: str) -> Path:
        return self.objects / key[:2] / key[2:]

    def _copy(self, source: str, target: str, st: os.stat_result, xattrs) -> None:
        with open(source, "rb") as src, open(target, "xb") as dst:
            # copy_file_range: a reflink where the file system shares extents (btrfs, xfs)
            shutil.copyfileobj(src, dst, _CHUNK) if st.st_size == 0 else _copy_range(src, dst, st.st_size)
        _set_metadata(target, st, xattrs)

    def _add(self, source: str, st: os.stat_result, xattrs, stats: CheckoutStats) -> Path:
        key = self._key(source, st, xattrs)
        obj = self._object(key)
        if not obj.exists():
            obj.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir(parents=True, exist_ok=True)
            temp = self.tmp / f"{key}.{os.getpid()}"
            temp.unlink(missing_ok=True)
            self._copy(source, str(temp), st, xattrs)
            os.rename(temp, obj)  # (a concurrent writer of the same key wrote the same bytes)
            stats.added += 1
            stats.added_bytes += st.st_size
        return obj

    def checkout(self, source: str | os.PathLike, target: str | os.PathLike, *, share: bool = True) -> CheckoutStats:
        """Make ``target`` (which must not exist) a copy of the tree ``source``: files hard-linked
        to objects (``share``) or copied. Sockets are left out (they cannot be stored)."""
        stats = CheckoutStats()
        source, target = str(source), str(target)
        os.mkdir(target, 0o700)
        directories: list[tuple[str, os.stat_result, list]] = [(target, os.lstat(source), _xattrs(source))]
        try:
            self._checkout_dir(source, target, share, stats, directories)
            # directories last, deepest first: their mtimes survive the entries made in them
            for path, st, xattrs in reversed(directories):
                _set_metadata(path, st, xattrs)
        except OSError as exc:
            raise StoreError(f"checking out {source} into {target}: {exc.strerror or exc}") from exc
        return stats

    def _checkout_dir(self, source: str, target: str, share: bool, stats: CheckoutStats, directories) -> None:
        with os.scandir(source) as entries:
            names = sorted(e.name for e in entries)
        for name in names:
            src, dst = os.path.join(source, name), os.path.join(target, name)
            st = os.lstat(src)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(dst, 0o700)
                directories.append((dst, st, _xattrs(src)))
                self._checkout_dir(src, dst, share, stats, directories)
            elif stat.S_ISREG(mode):
                xattrs = _xattrs(src)
                if not share:
                    self._copy(src, dst, st, xattrs)
                    stats.copied += 1
                    continue
                obj = self._add(src, st, xattrs, stats)
                try:
                    os.link(obj, dst)
                    stats.linked += 1
                except OSError as exc:
                    if exc.errno != errno.EMLINK:
                        raise
                    self._copy(src, dst, st, xattrs)  # the object's link count is full
                    stats.copied += 1
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(src), dst)
                _set_metadata(dst, st, _xattrs(src), symlink=True)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                os.mknod(dst, mode, st.st_rdev)
                _set_metadata(dst, st, _xattrs(src))

    def prune(self) -> tuple[int, int]:
        """Remove objects no deployment links; (count, bytes) removed."""
        count = size = 0
        shutil.rmtree(self.tmp, ignore_errors=True)
        if not self.objects.is_dir():
            return 0, 0
        for prefix in self.objects.iterdir():
            for obj in prefix.iterdir():
                st = obj.lstat()
                if st.st_nlink == 1:
                    obj.unlink()
                    count, size = count + 1, size + st.st_size
        return count, size


def _copy_range(src, dst, size: int) -> None:
    offset = 0
    try:
        while offset < size:
            done = os.copy_file_range(src.fileno(), dst.fileno(), size - offset)
            if done == 0:
                break
            offset += done
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    if offset < size:  # (no copy_file_range here: copy the rest by hand)
        src.seek(offset)
        dst.seek(offset)
        shutil.copyfileobj(src, dst, _CHUNK)


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a deployment's tree, whatever its modes (read-only directories included)."""
    def retry(function, name, _info):
        parent = os.path.dirname(name)
        os.chmod(parent, 0o700)
        function(name)

    if os.path.lexists(path):
        try:
            shutil.rmtree(path, onerror=retry)
        except OSError as exc:
            raise KetchError(f"removing {path}: {exc.strerror or exc}") from exc
