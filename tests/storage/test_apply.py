"""Applying layers: every entry type, whiteouts, and hostile tars refused."""

import hashlib
import io
import os
import stat
import tarfile

import pytest

from ketch.storage.apply import OPAQUE_XATTR, HostileLayerError, apply_layer


def make_tar(*entries) -> bytes:
    """entries: (name, kind, extra) with kind in file/dir/sym/link/chr/fifo."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            name, kind = entry[0], entry[1]
            extra = entry[2] if len(entry) > 2 else {}
            info = tarfile.TarInfo(name)
            info.mtime = extra.get("mtime", 1600000000)
            info.uid, info.gid = extra.get("uid", 0), extra.get("gid", 0)
            info.mode = extra.get("mode", 0o755 if kind == "dir" else 0o644)
            if "xattrs" in extra:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in extra["xattrs"].items()}
            data = None
            if kind == "file":
                data = extra.get("data", b"content of " + name.encode())
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, extra["target"]
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, extra["target"]
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def apply(data, root, mode="overlay"):
    return apply_layer(io.BytesIO(data), str(root), whiteouts=mode)


def test_every_entry_type(tmp_path):
    data = make_tar(("etc", "dir", {"mode": 0o755}),
                    ("etc/passwd", "file", {"mode": 0o644, "uid": 12, "gid": 34}),
                    ("bin/su", "file", {"mode": 0o4755}),
                    ("bin/sh", "sym", {"target": "/bin/busybox"}),
                    ("etc/hard", "link", {"target": "etc/passwd"}),
                    ("dev/null", "chr"), ("run/fifo", "fifo"),
                    ("data", "file", {"xattrs": {"user.note": "hello"}, "mtime": 1234567890}))
    diff_id, size = apply(data, tmp_path)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    st = os.stat(tmp_path / "etc/passwd")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12, 34, 0o644)
    assert stat.S_IMODE(os.stat(tmp_path / "bin/su").st_mode) == 0o4755
    assert os.readlink(tmp_path / "bin/sh") == "/bin/busybox"
    assert os.stat(tmp_path / "etc/hard").st_ino == st.st_ino
    assert stat.S_ISCHR(os.lstat(tmp_path / "dev/null").st_mode)
    assert os.major(os.lstat(tmp_path / "dev/null").st_rdev) == 1
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run/fifo").st_mode)
    assert os.getxattr(tmp_path / "data", "user.note") == b"hello"
    assert os.stat(tmp_path / "data").st_mtime == 1234567890
    assert os.stat(tmp_path / "etc").st_mtime == 1600000000  # directory times set last


def test_overlay_whiteouts(tmp_path):
    data = make_tar(("gone.wh", "dir"), ("dir/.wh.old", "file"), ("opaque/.wh..wh..opq", "file"),
                    ("opaque/new", "file"), ("same/kept", "file"), ("same/.wh.kept", "file"))
    apply(data, tmp_path)
    st = os.lstat(tmp_path / "dir/old")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tmp_path / "opaque", OPAQUE_XATTR) == b"y"
    assert (tmp_path / "opaque/new").exists()
    assert (tmp_path / "same/kept").read_bytes() == b"content of same/kept"  # own entries are never hidden
    assert not (tmp_path / "dir/.wh.old").exists()


def test_vfs_whiteouts_remove_lower_entries(tmp_path):
    apply(make_tar(("a/lower1", "file"), ("a/lower2", "file"), ("b/keep", "file"), ("b/drop", "file")), tmp_path,
          "vfs")
    apply(make_tar(("a/.wh..wh..opq", "file"), ("a/mine", "file"), ("b/.wh.drop", "file")), tmp_path, "vfs")
    assert sorted(os.listdir(tmp_path / "a")) == ["mine"]
    assert sorted(os.listdir(tmp_path / "b")) == ["keep"]


def test_replacing_types(tmp_path):
    apply(make_tar(("x", "dir"), ("x/inner", "file"), ("y", "file")), tmp_path, "vfs")
    apply(make_tar(("x", "file"), ("y", "dir"), ("y/z", "file")), tmp_path, "vfs")
    assert (tmp_path / "x").is_file() and (tmp_path / "y/z").is_file()


def test_symlinked_directory_is_followed_inside_the_root(tmp_path):
    apply(make_tar(("usr/lib", "dir"), ("lib", "sym", {"target": "/usr/lib"}), ("lib/libc.so", "file")), tmp_path)
    assert (tmp_path / "usr/lib/libc.so").is_file()
    assert os.path.islink(tmp_path / "lib")


HOSTILE = {
    "dotdot": [("../escape", "file")],
    "dotdot-deep": [("a/../../escape", "file")],
    "absolute": [("/tmp/escape", "file")],
    "symlink-out-then-through": [("evil", "sym", {"target": "../../.."}), ("evil/escape", "file")],
    "symlink-relative-out": [("d", "dir"), ("d/up", "sym", {"target": "../../"}), ("d/up/escape", "file")],
    "hardlink-outside": [("h", "link", {"target": "../outside-target"})],
    "hardlink-absolute": [("h", "link", {"target": "/etc/passwd"})],
    "hardlink-missing": [("h", "link", {"target": "nothing/here"})],
    "whiteout-outside": [("../.wh.outside-target", "file")],
    "whiteout-through-symlink": [("s", "sym", {"target": "../.."}), ("s/.wh.outside-target", "file")],
    "opaque-through-symlink": [("s", "sym", {"target": "../.."}), ("s/.wh..wh..opq", "file")],
}


@pytest.mark.parametrize("trick", sorted(HOSTILE))
def test_hostile_layers_are_refused(tmp_path, trick):
    outside = tmp_path / "outside-target"
    outside.write_text("precious")
    root = tmp_path / "root" / "layer"
    root.mkdir(parents=True)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(HostileLayerError):
        apply(make_tar(*HOSTILE[trick]), root)
    assert outside.read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == before
    assert not (tmp_path / "escape").exists() and not (tmp_path / "root" / "escape").exists()
    assert not os.path.exists("/tmp/escape")


def test_overlay_xattrs_from_the_image_are_dropped(tmp_path):
    apply(make_tar(("d", "dir", {"xattrs": {"trusted.overlay.redirect": "/etc"}})), tmp_path)
    assert "trusted.overlay.redirect" not in os.listxattr(tmp_path / "d")


def test_not_a_tar(tmp_path):
    from ketch.errors import ImageFormatError

    with pytest.raises(ImageFormatError):
        apply(b"\x00garbage" * 1000 + b"x", tmp_path)
    data = make_tar(("big", "file", {"data": b"x" * 100000}))
    with pytest.raises(ImageFormatError):
        apply(data[:30000], tmp_path)
