"""Making a layer: the changes in a container's upper directory as an OCI tar.

overlayfs records a deletion as a 0:0 character device and a directory that
replaced a lower one as ``trusted.overlay.opaque=y``; in the tar they become
``.wh.NAME`` and ``DIR/.wh..wh..opq``, as the image-spec says. The tar is
written to a file while its digest (the diff_id) is computed; the caller
compresses it (commit, push) as it needs.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

from ketch.storage.apply import OPAQUE, WHITEOUT_PREFIX, is_opaque

_XATTR_PAX = "SCHILY.xattr."


class _HashingWriter:
    def __init__(self, f) -> None:
        self._f = f
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self.size


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith(("trusted.overlay.", "user.overlay.", "security.selinux")):
            continue
        try:
            out[_XATTR_PAX + name] = os.getxattr(path, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
        except OSError:
            continue
    return out


def write_diff(upper: Path, output: Path) -> tuple[str, int]:
    """Write the OCI tar of ``upper``'s changes (an overlay upper directory) to ``output``;
    returns (diff_id, size)."""
    hardlinks: dict[tuple[int, int], str] = {}
    with open(output, "wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for dirpath, dirnames, filenames in os.walk(upper):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, upper)
                if rel_dir != ".":
                    if is_opaque(dirpath):
                        tar.addfile(tarfile.TarInfo(f"{rel_dir}/{OPAQUE}"))
                for name in sorted(dirnames) + sorted(filenames):
                    path = os.path.join(dirpath, name)
                    arcname = os.path.normpath(os.path.join(rel_dir, name))
                    if _is_whiteout(os.lstat(path)):
                        _add_whiteout(tar, arcname)
                    else:
                        _add_entry(tar, path, arcname, hardlinks)
    return f"sha256:{sink.hasher.hexdigest()}", sink.size


def write_tree_diff(lower: Path | None, upper: Path, output: Path) -> tuple[str, int]:
    """Write the OCI tar of what changed from ``lower`` to ``upper``, two whole trees (a vfs
    container against its image: :func:`tree_changes`), to ``output``; returns (diff_id, size)."""
    hardlinks: dict[tuple[int, int], str] = {}
    with open(output, "wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for kind, rel in tree_changes(lower, upper):
                if kind == "D":
                    _add_whiteout(tar, rel.lstrip("/"))
                else:
                    _add_entry(tar, os.path.join(upper, rel.lstrip("/")), rel.lstrip("/"), hardlinks)
    return f"sha256:{sink.hasher.hexdigest()}", sink.size


def _same(old: os.stat_result, new: os.stat_result) -> bool:
    """Whether an entry of a full copy is unchanged, by containers/storage's test for vfs (its
    "naive diff"): type and mode, owner, device and modification time, and a non-directory's
    size (a directory's size says nothing)."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev, old.st_mtime_ns) != \
            (new.st_mode, new.st_uid, new.st_gid, new.st_rdev, new.st_mtime_ns):
        return False
    return stat.S_ISDIR(new.st_mode) or old.st_size == new.st_size


def tree_changes(lower: Path | None, upper: Path) -> list[tuple[str, str]]:
    """What changed from ``lower`` to ``upper`` (whole trees; ``lower`` None: nothing), in path
    order: ("A", path) added, ("C", path) changed or replaced by another type, ("D", path) deleted
    (a deleted directory's contents go with it and are not listed). A directory in both is
    looked into whether or not it changed itself (a file may change in place)."""
    out: list[tuple[str, str]] = []
    pending: list[tuple[str, bool]] = [("", lower is not None)]  # (path under both roots, in lower too)
    while pending:
        rel, in_lower = pending.pop()
        up_names = set(os.listdir(os.path.join(upper, rel.lstrip("/"))))
        low_names: set[str] = set()
        if in_lower and lower is not None:
            low_names = set(os.listdir(os.path.join(lower, rel.lstrip("/"))))
        found: list[tuple[str, str]] = []
        below: list[tuple[str, bool]] = []
        for name in sorted(up_names | low_names):
            path = f"{rel}/{name}"
            if name not in up_names:
                found.append(("D", path))
                continue
            new = os.lstat(os.path.join(upper, path.lstrip("/")))
            old = os.lstat(os.path.join(lower, path.lstrip("/"))) if name in low_names and lower is not None else None
            if old is None:
                found.append(("A", path))
            elif stat.S_IFMT(old.st_mode) != stat.S_IFMT(new.st_mode) or not _same(old, new):
                found.append(("C", path))
            if stat.S_ISDIR(new.st_mode):
                below.append((path, old is not None and stat.S_ISDIR(old.st_mode)))
        out.extend(found)
        pending.extend(reversed(below))
    return sorted(out, key=lambda change: change[1].split("/"))


def _add_whiteout(tar: tarfile.TarFile, arcname: str) -> None:
    parent, _, name = arcname.rpartition("/")
    tar.addfile(tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name))


def _add_entry(tar: tarfile.TarFile, path: str, arcname: str, hardlinks: dict[tuple[int, int], str]) -> None:
    st = os.lstat(path)
    info = tar.gettarinfo(path, arcname)
    info.uname = info.gname = ""
    info.pax_headers = _xattrs(path)
    if info.isreg() and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in hardlinks:
            info.type, info.linkname, info.size = tarfile.LNKTYPE, hardlinks[key], 0
            tar.addfile(info)
            return
        hardlinks[key] = arcname
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)
