"""Applying a layer: an untrusted tar stream unpacked into a directory.

The most security-sensitive code in ketch. Every entry is placed by walking
its parent directories one component at a time with ``O_NOFOLLOW`` directory
file descriptors; a symlink met on the way is resolved *inside* the root (an
absolute target restarts at the root) and a walk that would leave the root is
refused, as are ``..`` components that climb out, absolute member names,
hardlinks whose target is outside or missing, and whiteouts naming a path
outside. A refused layer raises :class:`HostileLayerError`; the caller
removes the half-written directory.

Whiteouts follow the OCI image-spec: ``.wh.NAME`` hides NAME of the layers
below and ``.wh..wh..opq`` hides every entry of its directory in the layers
below; entries of the same layer are never hidden by its own whiteouts. In
``overlay`` form they are stored as overlayfs wants them (a 0:0 character
device, the ``trusted.overlay.opaque=y`` xattr); in ``vfs`` form the layer is
applied onto a copy of its parent and hidden entries are removed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import tarfile
from typing import BinaryIO

from ketch.errors import ImageFormatError

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_log = logging.getLogger(__name__)
OPAQUE_XATTR = "trusted.overlay.opaque"
# In a user namespace trusted.* cannot be written: overlay mounted with ``userxattr`` reads the
# user.* name instead (kernel 5.11+), as containers/storage does for rootless stores.
USER_OPAQUE_XATTR = "user.overlay.opaque"
OPAQUE_XATTRS = (OPAQUE_XATTR, USER_OPAQUE_XATTR)


def opaque_xattr() -> str:
    """The opaque-directory attribute this process's stores use (rootless: the user.* one)."""
    from ketch.userns import is_rootless

    return USER_OPAQUE_XATTR if is_rootless() else OPAQUE_XATTR


def is_opaque(path: str) -> bool:
    """Whether a directory of an overlay layer is opaque (under either attribute name)."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False
_XATTR_PAX = "SCHILY.xattr."
_MAX_SYMLINKS = 40
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HostileLayerError(ImageFormatError):
    """A layer tries to write outside its root, or is otherwise unsafe."""


class _HashingReader:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size if size and size > 0 else _CHUNK)
        if data:
            self.hasher.update(data)
            self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _clean_name(name: str) -> list[str]:
    """The components of a member name; refuses absolute names and escapes."""
    if name.startswith("/"):
        raise HostileLayerError(f"layer entry {name!r} has an absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise HostileLayerError(f"layer entry {name!r} climbs out of the layer with '..'")
            parts.pop()
            continue
        parts.append(part)
    return parts


class _Tree:
    """Walks and creates paths under a root with directory fds, never leaving it."""

    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self._cache: dict[tuple[str, ...], int] = {(): self.root_fd}

    def close(self) -> None:
        for fd in set(self._cache.values()):
            os.close(fd)
        self._cache = {}

    def forget(self, prefix: tuple[str, ...]) -> None:
        """Drop cached fds at and below ``prefix`` (after it was removed or replaced)."""
        n = len(prefix)
        for key in [k for k in self._cache if k and k[:n] == prefix]:
            os.close(self._cache.pop(key))

    def _resolve_symlink(self, done: list[str], name: str, rest: list[str], fd: int, what: str) -> list[str]:
        target = os.readlink(name, dir_fd=fd)
        base = [] if target.startswith("/") else list(done)
        parts = base
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise HostileLayerError(f"{what}: goes through a symlink that points outside the layer")
                parts.pop()
            else:
                parts.append(part)
        return parts + rest

    def directory(self, parts: list[str], what: str, *, create: bool = True) -> tuple[int, tuple[str, ...]]:
        """An fd for the directory ``parts`` (resolved inside the root), created if missing."""
        key = tuple(parts)
        if key in self._cache:
            return self._cache[key], key
        pending = list(parts)
        done: list[str] = []
        fd = self.root_fd
        hops = 0
        while pending:
            name = pending.pop(0)
            cached = self._cache.get(tuple(done + [name]))
            if cached is not None:
                fd = cached
                done.append(name)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise HostileLayerError(f"{what}: too many levels of symbolic links")
                pending = self._resolve_symlink(done, name, pending, fd, what)
                done, fd = [], self.root_fd
                continue
            if not stat.S_ISDIR(st.st_mode):
                if not create:
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/".join(done + [name]))
                # A non-directory stands where this layer needs a directory: the layer wins.
                os.unlink(name, dir_fd=fd)
                os.mkdir(name, 0o755, dir_fd=fd)
            new_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            done.append(name)
            self._cache[tuple(done)] = new_fd
            fd = new_fd
        return fd, tuple(done)


def _remove(fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        try:
            for entry in os.listdir(sub):
                _remove(sub, entry)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=fd)
    else:
        os.unlink(name, dir_fd=fd)


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out = {}
    for key, value in (member.pax_headers or {}).items():
        if key.startswith(_XATTR_PAX):
            name = key[len(_XATTR_PAX):]
            if name.startswith(("trusted.overlay.", "user.overlay.")):
                continue  # never let an image steer overlayfs
            out[name] = value.encode("utf-8", "surrogateescape")
    return out


def apply_layer(stream: BinaryIO, root: str, *, whiteouts: str = "overlay",
                default_root_mode: int | None = None) -> tuple[str, int]:
    """Unpack a layer tar from ``stream`` into ``root``; returns (diff_id, size).

    ``stream`` is the *uncompressed* tar. ``whiteouts`` is ``"overlay"``
    (``root`` starts empty and keeps whiteouts as overlayfs markers) or
    ``"vfs"`` (``root`` holds the parent's tree and hidden entries are
    removed). The tar's own entry for the root (``./``) sets the root's owner
    and mode; without one, ``default_root_mode`` (when given) does, owned by
    root, as containers/storage leaves a layer that does not say (0555).
    """
    if whiteouts not in ("overlay", "vfs"):
        raise ValueError(whiteouts)
    reader = _HashingReader(stream)
    tree = _Tree(root)
    created: set[tuple[str, ...]] = set()
    directories: list[tuple[tuple[str, ...], tarfile.TarInfo]] = []
    root_entry: list[tarfile.TarInfo] = []
    try:
        try:
            tar = tarfile.open(fileobj=reader, mode="r|", errorlevel=2)  # type: ignore[call-overload]
        except tarfile.ReadError as exc:
            raise ImageFormatError(f"layer is not a tar archive ({exc})") from exc
        try:
            for member in tar:
                if not _clean_name(member.name):
                    if member.isdir():
                        root_entry[:] = [member]
                    continue
                _apply_member(tar, member, tree, whiteouts, created, directories)
        except tarfile.TarError as exc:
            raise ImageFormatError(f"corrupt layer tar ({exc})") from exc
        except EOFError as exc:
            raise ImageFormatError("layer tar ends in the middle of an entry") from exc
        # Directory metadata last: adding entries changes a directory's mtime.
        for parts, member in reversed(directories):
            fd, key = tree.directory(list(parts[:-1]), member.name, create=False)
            _metadata(fd, parts[-1], member, is_link=False)
        if root_entry:
            parent_fd = os.open(os.path.dirname(os.path.abspath(root)) or "/", os.O_RDONLY | os.O_DIRECTORY)
            try:
                _metadata(parent_fd, os.path.basename(os.path.abspath(root)), root_entry[0], is_link=False)
            finally:
                os.close(parent_fd)
        elif default_root_mode is not None:
            os.chown(root, 0, 0)
            os.chmod(root, default_root_mode)
        reader.drain()
    finally:
        tree.close()
    return f"sha256:{reader.hasher.hexdigest()}", reader.size


def _apply_member(tar: tarfile.TarFile, member: tarfile.TarInfo, tree: _Tree, whiteouts: str,
                  created: set, directories: list) -> None:
    parts = _clean_name(member.name)
    if not parts:
        return  # the root itself: its metadata belongs to the lower layers
    what = f"layer entry {member.name!r}"
    *parent, name = parts
    fd, parent_key = tree.directory(parent, what)
    if name == OPAQUE:
        if whiteouts == "overlay":
            os.setxattr(f"/proc/self/fd/{fd}", opaque_xattr(), b"y", follow_symlinks=True)
        else:
            for entry in os.listdir(fd):
                if parent_key + (entry,) not in created:
                    tree.forget(parent_key + (entry,))
                    _remove(fd, entry)
        return
    if name.startswith(WHITEOUT_PREFIX):
        hidden = name[len(WHITEOUT_PREFIX):]
        if not hidden or hidden in (".", ".."):
            raise HostileLayerError(f"{what}: a whiteout names no valid entry")
        if parent_key + (hidden,) in created:
            return  # a layer's whiteouts never hide its own entries
        tree.forget(parent_key + (hidden,))
        _remove(fd, hidden)
        if whiteouts == "overlay":
            os.mknod(hidden, 0o600 | stat.S_IFCHR, os.makedev(0, 0), dir_fd=fd)
        return
    key = parent_key + (name,)
    created.add(key)
    if member.isdir():
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                _remove(fd, name)
                os.mkdir(name, 0o700, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=fd)
        directories.append((key, member))
        return
    tree.forget(key)
    _remove(fd, name)
    if member.isreg():
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            source = tar.extractfile(member)
            left = member.size
            while left > 0:
                chunk = source.read(min(left, _CHUNK))  # type: ignore[union-attr]
                if not chunk:
                    raise ImageFormatError(f"{what}: the tar ends inside the file")
                _write_all(out, chunk)
                left -= len(chunk)
        finally:
            os.close(out)
    elif member.issym():
        os.symlink(member.linkname, name, dir_fd=fd)
    elif member.islnk():
        target_parts = _clean_name(member.linkname)
        if not target_parts:
            raise HostileLayerError(f"{what}: hardlink to the layer root")
        try:
            target_fd, _ = tree.directory(target_parts[:-1], f"hardlink target {member.linkname!r}", create=False)
            st = os.stat(target_parts[-1], dir_fd=target_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise HostileLayerError(f"{what}: hardlink target {member.linkname!r} is not in the layer") from exc
        if stat.S_ISDIR(st.st_mode):
            raise HostileLayerError(f"{what}: hardlink to a directory")
        os.link(target_parts[-1], name, src_dir_fd=target_fd, dst_dir_fd=fd, follow_symlinks=False)
        return  # a hardlink shares its target's metadata
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(name, 0o600 | kind, os.makedev(member.devmajor, member.devminor), dir_fd=fd)
        except PermissionError:
            from ketch.userns import in_user_namespace

            if not in_user_namespace():
                raise
            # a user namespace cannot make devices: skipped, as containers/storage skips them for rootless
            # users (a container gets its devices from the runtime, bound from the host)
            _log.debug("%s: a device cannot be made in a user namespace; skipped", what)
            return
    elif member.isfifo():
        os.mkfifo(name, 0o600, dir_fd=fd)
    else:
        raise ImageFormatError(f"{what}: unsupported tar entry type {member.type!r}")
    _metadata(fd, name, member, is_link=member.issym())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _metadata(fd: int, name: str, member: tarfile.TarInfo, *, is_link: bool) -> None:
    try:
        os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # (only a user namespace has ids it cannot map)
        raise ImageFormatError(f"layer entry {member.name!r} is owned by {member.uid}:{member.gid}, an id outside "
                               "your user namespace's mapping (add subordinate ids in /etc/subuid and /etc/subgid, "
                               "enough for that id)") from exc
    for key, value in _xattrs(member).items():
        try:
            os.setxattr(f"/proc/self/fd/{fd}/{name}", key, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    if not is_link:
        # chmod after chown: chown clears setuid/setgid bits.
        os.chmod(name, stat.S_IMODE(member.mode), dir_fd=fd)
    mtime = int(member.mtime * 1_000_000_000) if member.mtime else 0
    os.utime(name, ns=(mtime, mtime), dir_fd=fd, follow_symlinks=False)


def copy_tree(source: str, destination: str) -> None:
    """A full copy of a root file system (vfs layers), with owners, modes, devices,
    hardlinks and xattrs. GNU cp does all of that (and reflinks where it can);
    Python's shutil keeps neither devices nor hardlinks."""
    import subprocess

    result = subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", destination],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(errno.EIO, f"copying {source}: {result.stderr.strip()}")
