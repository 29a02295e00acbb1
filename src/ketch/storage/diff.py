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
    """Write the OCI tar of ``upper``'s changes to ``output``; returns (diff_id, size)."""
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
                    st = os.lstat(path)
                    if _is_whiteout(st):
                        marker = WHITEOUT_PREFIX + name
                        tar.addfile(tarfile.TarInfo(marker if rel_dir == "." else f"{rel_dir}/{marker}"))
                        continue
                    info = tar.gettarinfo(path, arcname)
                    info.uname = info.gname = ""
                    info.pax_headers = _xattrs(path)
                    if info.isreg() and st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in hardlinks:
                            info.type, info.linkname, info.size = tarfile.LNKTYPE, hardlinks[key], 0
                            tar.addfile(info)
                            continue
                        hardlinks[key] = arcname
                    if info.isreg():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    return f"sha256:{sink.hasher.hexdigest()}", sink.size
