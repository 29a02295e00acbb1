"""A vfs store (whole copies, no overlay): diff, commit and build of containers, compared with
podman on its own vfs store (containers/storage compares the container's tree with its image's,
a "naive diff")."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_ketch
from tests.support.helpers import unmount_under

# what the command changes: a file added, one changed, one deleted, a directory deleted, a mode,
# an owner, a link, a new empty directory, a nested new tree, a file deleted from a directory
CHANGES = ("echo made > /made.txt; mkdir -p /data/sub && echo deep > /data/sub/f; rm /etc/group; "
           "chmod 750 /root; rm -rf /home; ln -s /etc/passwd /link; rm /bin/ls; mkdir /var/x; "
           "echo f > /tmp/f; chown 5:6 /tmp/f; echo changed >> /etc/passwd")

# files the runtimes make as mount points, or (podman) as a link: not the command's changes
RUNTIME_MADE = {"etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv", "etc/mtab"}


@pytest.fixture
def vfs_store(tmp_path):
    store = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "--storage-driver", "vfs"]
    try:
        yield store
    finally:
        run_ketch(*store, "rm", "-f", "-a", "-t", "0", check=False)
        unmount_under(tmp_path)


def _last_layer(archive: Path) -> list[tuple]:
    """The entries of an OCI archive's top layer: name, type, permission bits, owner, size, link."""
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(outer.extractfile(  # type: ignore[arg-type]
            "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        blob = outer.extractfile("blobs/sha256/" + manifest["layers"][-1]["digest"].split(":")[1])
        with tarfile.open(fileobj=io.BytesIO(blob.read())) as layer:  # type: ignore[union-attr]
            members = layer.getmembers()
    entries = []
    for member in members:
        name = member.name.removeprefix("./").rstrip("/")
        if name in RUNTIME_MADE:
            continue
        # (a whiteout's own mode means nothing: podman writes 0, ketch 0644)
        mode = 0 if name.rpartition("/")[2].startswith(".wh.") else member.mode & 0o7777
        entries.append((name, member.type, mode, member.uid, member.gid, member.size, member.linkname))
    return sorted(entries)


@pytest.mark.peer
@pytest.mark.root_only("compared with root's podman on a vfs store")
def test_diff_and_commit_on_vfs_as_podmans(vfs_store, podman, busybox_layout, tmp_path):
    image = "localhost/" + str(busybox_layout).lstrip("/").lower()
    run_ketch(*vfs_store, "pull", "-q", f"oci:{busybox_layout}:latest")
    podman.run("pull", "-q", f"oci:{busybox_layout}:latest")
    run_ketch(*vfs_store, "run", "--name", "w", "--network", "none", image, "sh", "-c", CHANGES)
    podman.run("run", "--name", "w", "--network", "none", image, "sh", "-c", CHANGES)
    mine = sorted(run_ketch(*vfs_store, "diff", "w").stdout.splitlines())
    theirs = sorted(podman.run("diff", "w").stdout.splitlines())
    assert mine == theirs
    assert {"A /var/x", "D /home", "D /etc/group", "C /etc/passwd", "C /root", "A /tmp/f", "A /link"} <= set(mine)
    run_ketch(*vfs_store, "commit", "-q", "w", "localhost/committed")
    podman.run("commit", "-q", "w", "localhost/committed")
    run_ketch(*vfs_store, "save", "--format", "oci-archive", "-o", str(tmp_path / "mine.tar"), "localhost/committed")
    podman.run("save", "--format", "oci-archive", "-o", str(tmp_path / "theirs.tar"), "localhost/committed")
    layer = _last_layer(tmp_path / "mine.tar")
    assert layer == _last_layer(tmp_path / "theirs.tar")
    assert ("tmp/f", tarfile.REGTYPE, 0o644, 5, 6, 2, "") in layer and ("bin/.wh.ls", tarfile.REGTYPE, 0, 0, 0, 0, "") in layer
    seen = run_ketch(*vfs_store, "run", "--rm", "--network", "none", "localhost/committed", "sh", "-c",
                     "cat /made.txt /data/sub/f; test -e /home || echo no-home; stat -c %a /root").stdout
    assert seen == "made\ndeep\nno-home\n750\n"
    # a container never started has no copy of its image yet, and no change
    run_ketch(*vfs_store, "create", "--name", "fresh", image, "true")
    assert run_ketch(*vfs_store, "diff", "fresh").stdout == ""


def test_build_on_a_vfs_store(vfs_store, busybox_layout, tmp_path):
    image = "localhost/" + str(busybox_layout).lstrip("/").lower()
    run_ketch(*vfs_store, "pull", "-q", f"oci:{busybox_layout}:latest")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "f").write_text("copied\n")
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {image}\nCOPY f /f\nRUN rm /bin/ls && echo ran > /ran\n")
    run_ketch(*vfs_store, "build", "-q", "-t", "localhost/built", str(tmp_path / "ctx"))
    seen = run_ketch(*vfs_store, "run", "--rm", "--network", "none", "localhost/built", "sh", "-c",
                     "cat /f /ran; test -e /bin/ls || echo gone").stdout
    assert seen == "copied\nran\ngone\n"
    history = json.loads(run_ketch(*vfs_store, "image", "inspect", "localhost/built").stdout)[0]["RootFS"]["Layers"]
    assert len(history) == 3
