"""Rootless ketch: users made by the tests (with subordinate ids from useradd, and one without)
pull, build, run, exec, copy, commit, save and load as themselves; the results are compared with
rootless podman run by the same user on the same images. Each user's processes (their pause
process, containers, pasta) are ended by PID and the users removed when the module ends."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.registry import free_port
from tests.support.rootless import KETCH, User

pytestmark = pytest.mark.peer

RUNTIME = str(Path(sys.executable).parent / "ketch-runtime")


@pytest.fixture(scope="module")
def tun_usable():
    """pasta opens /dev/net/tun and fuse-overlayfs /dev/fuse, which a normal Debian machine has
    mode 0666 and these machines 0600 (MACHINE.md)."""
    for device in ("/dev/net/tun", "/dev/fuse"):
        if os.stat(device).st_mode & 0o006 != 0o006:
            os.chmod(device, 0o666)


@pytest.fixture(scope="module")
def user(busybox_layout, tun_usable):
    made = User()
    try:
        made.ketch("pull", "-q", f"oci:{busybox_layout}:latest")
        yield made
    finally:
        made.remove()


def busybox(busybox_layout: Path) -> str:
    return "localhost/" + str(busybox_layout).lstrip("/").lower()


def test_run_as_a_user(user, busybox_layout):
    image = busybox(busybox_layout)
    out = user.ketch("run", "--rm", "--network", "none", image, "sh", "-c", "id -u; cat /proc/self/uid_map").stdout
    lines = out.decode().split("\n")
    assert lines[0] == "0"
    maps = [line.split() for line in lines[1:] if line.strip()]
    assert maps == [["0", str(user.uid), "1"], ["1", str(user.subordinate_start()), "65536"]]
    # the store is the user's, under ~/.local/share/ketch, and what it unpacked belongs to the user on the host
    store = user.home / ".local/share/ketch"
    assert store.stat().st_uid == user.uid
    binaries = list((store / "overlay").glob("*/diff/bin/busybox"))
    assert binaries and all(b.stat().st_uid == user.uid for b in binaries)
    info = json.loads(user.ketch("info", "--format", "json").stdout)
    assert info["host"]["security"]["rootless"] is True
    assert user.ketch("unshare", "id", "-u").stdout.strip() == b"0"
    # mounts live in the user's mount namespace: made from `ketch unshare`, as podman's and buildah's
    outside = user.ketch("image", "mount", image, check=False)
    assert outside.returncode != 0 and b"`ketch unshare` session" in outside.stderr
    inside = user.ketch("unshare", "sh", "-c", f"ls -n $({KETCH} image mount {image})/bin/busybox; "
                        f"{KETCH} image umount {image}").stdout
    assert inside.split()[2:4] == [b"0", b"0"]
    # cgroup limits: no delegated cgroup here (cgroup v1): refused in one line, nothing left
    limited = user.ketch("run", "--rm", "--network", "none", "--memory", "64m", image, "true", check=False)
    assert limited.returncode != 0 and b"resource limits (memory" in limited.stderr
    assert limited.stderr.count(b"\n") == 1
    assert user.ketch("ps", "-a", "-q").stdout == b""


def test_files_owned_by_other_ids(user, busybox_layout):
    """A build gives a file to uid 1234: inside it is 1234, on the host the subordinate id for it;
    committed, saved and loaded by rootless podman as the same user, podman sees the same owners."""
    image = busybox(busybox_layout)
    context = user.home / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {image}\nRUN echo app:x:1234:1234::/:/bin/sh >> /etc/passwd && echo hi > /hello && "
        "chown 1234:1234 /hello\nUSER app\nCMD cat /hello\n")
    os.chown(context, user.uid, user.gid)
    os.chown(context / "Dockerfile", user.uid, user.gid)
    user.ketch("build", "-q", "-t", "localhost/owners", str(context))
    assert user.ketch("run", "--rm", "--network", "none", "localhost/owners").stdout == b"hi\n"
    assert user.ketch("run", "--rm", "--network", "none", "localhost/owners", "id", "-u").stdout == b"1234\n"
    listing = user.ketch("run", "--rm", "--network", "none", "--user", "0", "localhost/owners", "stat", "-c",
                         "%u:%g", "/hello", "/bin/busybox").stdout.decode().split()
    assert listing == ["1234:1234", "0:0"]
    on_host = [p for p in (user.home / ".local/share/ketch/overlay").glob("*/diff/hello")]
    assert on_host and on_host[0].stat().st_uid == user.subordinate_start() + 1233
    # the container's own changes, committed: the owner stays 1234 inside
    user.ketch("run", "--name", "changer", "--network", "none", "--user", "0", "localhost/owners", "sh", "-c",
               "echo x > /made && chown 2000:3000 /made")
    user.ketch("commit", "-q", "changer", "localhost/committed")
    user.ketch("rm", "changer")
    archive = user.home / "committed.tar"
    user.ketch("save", "-o", str(archive), "localhost/committed")
    # the peer, as the same user: the same owners inside
    user.podman("load", "-q", "-i", str(archive))
    for tool in (user.ketch, user.podman):
        seen = tool("run", "--rm", "--pull", "never", "--network", "none", "--user", "0", "localhost/committed",
                    "stat", "-c", "%u:%g", "/made", "/hello", "/bin/busybox").stdout.decode().split()
        assert seen == ["2000:3000", "1234:1234", "0:0"], tool
    theirs = user.podman("run", "--rm", "--pull", "never", "--network", "none", "localhost/committed", "sh", "-c",
                         "id; cat /proc/self/uid_map").stdout
    mine = user.ketch("run", "--rm", "--network", "none", "localhost/committed", "sh", "-c",
                      "id; cat /proc/self/uid_map").stdout
    assert mine == theirs
    # and back: podman saves, ketch loads
    user.podman("save", "-o", str(user.home / "back.tar"), "localhost/committed")
    user.ketch("rmi", "localhost/committed")
    user.ketch("load", "-q", "-i", str(user.home / "back.tar"))
    assert user.ketch("run", "--rm", "--network", "none", "--user", "0", "localhost/committed", "stat", "-c", "%u",
                      "/made").stdout == b"2000\n"
    # a copy out of a container belongs to the user on the host
    user.ketch("create", "--name", "source", "localhost/committed")
    user.ketch("cp", "source:/hello", str(user.home / "hello.txt"))
    user.ketch("rm", "source")
    assert (user.home / "hello.txt").stat().st_uid == user.uid


def _fetch_when_up(port: int, path: str = "/hostname") -> bytes | None:
    """GET PATH from 127.0.0.1:PORT once something answers there (None if nothing does)."""
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.read()
        except OSError:
            time.sleep(0.1)
    return None


def test_detached_container_with_a_published_port(user, busybox_layout):
    image = busybox(busybox_layout)
    port = free_port()
    user.ketch("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8000", image, "httpd", "-f", "-p", "8000",
               "-h", "/etc")
    try:
        body = _fetch_when_up(port)
        assert body is not None, "the published port never answered"
        assert user.ketch("exec", "web", "id", "-u").stdout == b"0\n"
        assert f"127.0.0.1:{port}->8000/tcp".encode() in user.ketch("ps").stdout
        pasta = [p for p in user.processes() if Path(f"/proc/{p}/comm").read_text().strip().startswith("pas")]
        assert pasta, "no pasta for the container"
    finally:
        user.ketch("rm", "-f", "-t", "0", "web")
    assert user.ketch("ps", "-a", "-q").stdout == b""
    for _ in range(50):
        if not any(Path(f"/proc/{p}").exists() for p in pasta):
            break
        time.sleep(0.1)
    assert not any(Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/comm").read_text().startswith("pas")
                   for p in pasta)


def test_two_users_do_not_see_each_other(user, busybox_layout, tun_usable):
    other = User()
    try:
        other.ketch("pull", "-q", f"oci:{busybox_layout}:latest")
        user.ketch("create", "--name", "mine", "--network", "none", busybox(busybox_layout))
        assert other.ketch("ps", "-a", "-q").stdout == b""
        refused = other.ketch("--root", str(user.home / ".local/share/ketch"), "ps", "-a", check=False)
        assert refused.returncode != 0 and refused.stderr.count(b"\n") == 1
        user.ketch("rm", "mine")
    finally:
        other.remove()


@pytest.fixture
def shared_dir():
    """A scratch directory the test users can reach (pytest's own are root's alone). Its name is
    hex only: images pulled from layouts under it are named after their path, and mkdtemp's
    names may end in "_", which no repository name may."""
    path = Path(f"/tmp/ketch-rootless-{secrets.token_hex(6)}")
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:  # (a root store made here keeps its mounts directory mounted)
        mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split()[4].startswith(f"{path}/")]
        for target in sorted(mounted, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def test_a_store_made_by_root_is_refused(user, shared_dir):
    root_store = shared_dir / "store"
    subprocess.run([KETCH, "--root", str(root_store), "--runroot", str(shared_dir / "run"), "images"], check=True,
                   capture_output=True)
    root_store.chmod(0o777)
    before = sorted(p.name for p in root_store.iterdir())
    refused = user.ketch("--root", str(root_store), "images", check=False)
    assert refused.returncode != 0 and b"was made by root" in refused.stderr and refused.stderr.count(b"\n") == 1
    assert sorted(p.name for p in root_store.iterdir()) == before


def test_bad_set_ups_say_so_in_one_line(busybox_layout, shared_dir, tun_usable):
    tmp_path = shared_dir
    plain = User(subordinate=False)
    try:
        # no subordinate ids: a warning, one id mapped, and busybox (all root's) still runs
        plain.ketch("pull", "-q", f"oci:{busybox_layout}:latest")
        result = plain.ketch("run", "--rm", "--network", "none", busybox(busybox_layout), "cat", "/proc/self/uid_map")
        assert result.stdout.split() == [b"0", str(plain.uid).encode(), b"1"]
        # (the warning came once, with the pause process: the pull's)
        # an image with a file of uid 1234 cannot be unpacked: the error names the id
        layout = tmp_path / "owned"
        subprocess.run([KETCH, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "pull", "-q",
                        f"oci:{busybox_layout}:latest"], check=True, capture_output=True)
        subprocess.run([KETCH, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "run",
                        "--name", "o", "--network", "none", busybox(busybox_layout), "sh", "-c",
                        "echo x > /owned && chown 1234 /owned"], check=True, capture_output=True)
        subprocess.run([KETCH, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "commit", "-q",
                        "o", "localhost/owned"], check=True, capture_output=True)
        subprocess.run([KETCH, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "push", "-q",
                        "localhost/owned", f"oci:{layout}:latest"], check=True, capture_output=True)
        subprocess.run([KETCH, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "rm", "o"],
                       check=True, capture_output=True)
        subprocess.run(["chmod", "-R", "a+rX", str(layout)], check=True)
        refused = plain.ketch("pull", "-q", f"oci:{layout}:latest", check=False)
        assert refused.returncode != 0 and b"owned by 1234:" in refused.stderr, refused.stderr
        assert b"localhost" not in plain.ketch("images", "--format", "{{.Repository}}").stdout.replace(
            busybox(busybox_layout).encode(), b"")
    finally:
        plain.remove()
    # helpers missing, or without their setuid bit; a run directory that is not writable
    tools = tmp_path / "tools"
    tools.mkdir()
    other = User()
    try:
        missing = other.ketch("images", env={"PATH": str(tools)}, check=False)
        assert missing.returncode != 0 and b"newuidmap is not installed" in missing.stderr
        for helper in ("newuidmap", "newgidmap"):
            shutil.copy(f"/usr/bin/{helper}", tools / helper)
            (tools / helper).chmod(0o755)  # (the copy without its setuid bit)
        tools.chmod(0o755)
        plain_copy = other.ketch("images", env={"PATH": str(tools)}, check=False)
        assert plain_copy.returncode != 0 and b"neither setuid root" in plain_copy.stderr
        locked = other.ketch("images", env={"XDG_RUNTIME_DIR": "/root"}, check=False)
        assert locked.returncode != 0 and b"XDG_RUNTIME_DIR=/root is not a directory you can write to" in \
            locked.stderr and locked.stderr.count(b"\n") == 1
        assert not (other.home / ".local/share/ketch").exists()  # (nothing made by the refused commands)
        assert other.processes() == []
    finally:
        other.remove()


def test_the_runtime_as_a_user(user, busybox_layout):
    """ketch-runtime as runc's rootless mode: a spec from `spec --rootless`, the same output as runc."""
    bundle = user.home / "bundle"
    user.run("mkdir", "-p", str(bundle / "rootfs"))
    container = user.ketch("create", "--network", "none", busybox(busybox_layout)).stdout.decode().strip()
    user.ketch("export", "-o", str(user.home / "rootfs.tar"), container)
    user.ketch("rm", container)
    user.run("tar", "-C", str(bundle / "rootfs"), "-xf", str(user.home / "rootfs.tar"))
    outputs = {}
    for tool in (RUNTIME, "runc"):
        user.run("rm", "-f", str(bundle / "config.json"))
        user.run(tool, "spec", "--rootless", "--bundle", str(bundle))
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map"]
        (bundle / "config.json").write_text(json.dumps(config))
        outputs[tool] = user.run(tool, "run", "--bundle", str(bundle), f"c-{secrets.token_hex(3)}").stdout
    assert outputs[RUNTIME] == outputs["runc"]
    assert outputs[RUNTIME].startswith(b"uid=0(root) gid=0(root)")


def test_keep_id_as_podman(user, busybox_layout, tmp_path):
    """--userns keep-id: the user's uid and gid inside too, a passwd entry, the image's files still
    root's, a bind-mounted directory of the user's owned by the user inside; podman's view the same."""
    image = busybox(busybox_layout)
    shared = user.home / "shared"
    user.run("mkdir", str(shared))
    user.run("touch", str(shared / "mine"))
    user.ketch("save", "-o", str(user.home / "busybox.tar"), image)
    user.podman("load", "-q", "-i", str(user.home / "busybox.tar"))
    probe = "id; stat -c %u:%g /bin/busybox /shared/mine; grep :1001: /etc/passwd || true; " \
            "cat /proc/self/uid_map /proc/self/gid_map; touch /shared/made"
    views = {}
    for name, tool in (("ketch", user.ketch), ("podman", user.podman)):
        views[name] = tool("run", "--rm", "--pull", "never", "--network", "none", "--userns", "keep-id", "-v",
                           f"{shared}:/shared",
                           image, "sh", "-c", probe.replace("1001", str(user.uid))).stdout.decode()
        assert (shared / "made").stat().st_uid == user.uid
        user.run("rm", str(shared / "made"))
    assert views["ketch"] == views["podman"]
    assert views["ketch"].startswith(f"uid={user.uid}({user.name}) gid={user.gid}({user.name})")
    assert f"0:0\n{user.uid}:{user.gid}\n" in views["ketch"]
    custom = user.ketch("run", "--rm", "--network", "none", "--userns", "keep-id:uid=200,gid=300", image, "id",
                        "-u").stdout
    assert custom == b"200\n"
    refused = subprocess.run([KETCH, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "create",
                              "--userns", "keep-id", image], capture_output=True)
    assert refused.returncode != 0 and b"keep-id is only supported in rootless mode" in refused.stderr


def test_fuse_overlayfs_and_vfs_stores(user, busybox_layout):
    """A store whose overlay goes through fuse-overlayfs (chosen when the kernel refuses the user
    namespace its overlay; asked here with --storage-opt overlay.mount_program, as
    containers/storage's option), and a vfs store (the last choice): whiteouts and opaque
    directories read as the kernel's overlay reads them, scans see the same, containers run and
    commit, and the choice stays with the store."""
    from tests.support import images

    whiteouts = images.ensure("whiteouts")
    trees = {}
    for name, extra in (("native", []), ("fuse", ["--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs"]),
                        ("vfs", ["--storage-driver", "vfs"])):
        root = str(user.home / f"store-{name}")
        user.ketch("--root", root, *extra, "pull", "-q", f"oci:{whiteouts}:latest")
        image = "localhost/" + str(whiteouts).lstrip("/").lower()
        listing = user.ketch("--root", root, "unshare", "sh", "-c",
                             f"m=$({KETCH} --root {root} image mount {image}) && (cd $m && find . | sort); "
                             f"{KETCH} --root {root} image umount {image} >/dev/null").stdout
        trees[name] = listing.decode().split()
    assert trees["fuse"] == trees["vfs"] == trees["native"] == [".", "./a", "./a/y", "./b", "./b/new", "./c", "./c/keep"]
    # ketch scan's read-only view of the image goes through the store's fuse-overlayfs as well
    scans = {name: json.loads(user.ketch("--root", str(user.home / f"store-{name}"), "scan", "--format", "json",
                                         "--no-cache", image).stdout)["reports"][0] for name in trees}
    for name in ("fuse", "vfs"):
        assert scans[name]["layers"] == scans["native"]["layers"] and len(scans[name]["layers"]) == 2
        assert scans[name]["findings"] == scans["native"]["findings"]
        store = ["--root", str(user.home / f"store-{name}")]
        user.ketch(*store, "pull", "-q", f"oci:{busybox_layout}:latest")
        user.ketch(*store, "run", "--name", "f", "--network", "none", busybox(busybox_layout), "sh", "-c",
                   "rm /bin/ls && mkdir /data && echo x > /data/file && chown 1:2 /data/file")
        user.ketch(*store, "commit", "-q", "f", "localhost/changed")
        seen = user.ketch(*store, "run", "--rm", "--network", "none", "localhost/changed", "sh", "-c",
                          "cat /data/file; stat -c %u:%g /data/file; test -e /bin/ls || echo gone").stdout
        assert seen == b"x\n1:2\ngone\n", name
    assert b"vfs" in user.ketch("--root", str(user.home / "store-vfs"), "info", "--format",
                                "{{.Store.GraphDriverName}}").stdout
    fuse = ["--root", str(user.home / "store-fuse")]
    mismatch = user.ketch(*fuse, "--storage-opt", "overlay.mount_program=/bin/false", "images", check=False)
    assert mismatch.returncode != 0 and b"was made with /usr/bin/fuse-overlayfs" in mismatch.stderr


@pytest.fixture
def auto_ranges():
    """The containers user's subordinate ids that --userns auto hands out (podman's convention),
    added for the test and removed after it (only the line added)."""
    line = "containers:2147483647:2147483648"
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path, "a") as f:
            f.write(line + "\n")
    try:
        yield
    finally:
        for path in ("/etc/subuid", "/etc/subgid"):
            text = Path(path).read_text().splitlines(keepends=True)
            Path(path).write_text("".join(entry for entry in text if entry.strip() != line))


def test_userns_auto_for_root(auto_ranges, busybox_layout, shared_dir, podman):
    """root's --userns auto: a range of the containers user's ids per container, none shared,
    sized from the image's passwd and group as podman sizes it; the image's files keep their
    owners inside; podman shows the same. (The store is under a directory others may pass
    through, as /var/lib/ketch is: the container's root, an id of its range, must reach it.)"""
    from tests.conftest import run_ketch

    tmp_path = shared_dir
    store = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    run_ketch(*store, "pull", "-q", f"oci:{busybox_layout}:latest")
    image = busybox(busybox_layout)
    run_ketch(*store, "save", "-o", str(tmp_path / "bb.tar"), image)
    podman.run("load", "-q", "-i", str(tmp_path / "bb.tar"))
    probe = ["sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g /bin/busybox; id"]
    mine = run_ketch(*store, "run", "--rm", "--network", "none", "--userns", "auto", image, *probe).stdout
    theirs = podman.run("run", "--rm", "--pull", "never", "--network", "none", "--userns", "auto", image,
                        *probe).stdout
    assert mine == theirs
    assert mine.split()[:3] == ["0", "2147483647", "1024"]
    run_ketch(*store, "run", "-d", "--name", "first", "--network", "none", "--userns", "auto", image, "sleep", "60")
    try:
        second = run_ketch(*store, "run", "--rm", "--network", "none", "--userns", "auto:size=2000", image, "cat",
                           "/proc/self/uid_map").stdout.split()
        assert second == ["0", str(2147483647 + 1024), "2000"]
    finally:
        run_ketch(*store, "rm", "-f", "-t", "0", "first")
    refused = run_ketch(*store, "create", "--userns", "auto:size=x", image, check=False)
    assert refused.returncode != 0 and "invalid --userns auto option" in refused.stderr
    # a file owned by ids above the passwd and group entries makes the range as large as they need
    context = tmp_path / "context"
    context.mkdir()
    (context / "f").write_text("owned\n")
    (context / "Dockerfile").write_text(f"FROM {image}\nCOPY --chown=5000:6000 f /f\n")
    run_ketch(*store, "build", "-q", "-t", "localhost/owned", str(context))
    run_ketch(*store, "save", "-o", str(tmp_path / "owned.tar"), "localhost/owned")
    podman.run("load", "-q", "-i", str(tmp_path / "owned.tar"))
    probe = ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /f; cat /f"]
    mine = run_ketch(*store, "run", "--rm", "--network", "none", "--userns", "auto", "localhost/owned", *probe).stdout
    theirs = podman.run("run", "--rm", "--pull", "never", "--network", "none", "--userns", "auto",
                        "localhost/owned", *probe).stdout
    assert mine == theirs
    assert mine.split()[:3] == ["0", "2147483647", "6001"] and "5000:6000\nowned\n" in mine


@pytest.fixture
def delegated_subtree(user):
    """A cgroup v2 subtree delegated to the user as systemd delegates user@.service (the
    directory and its files the user's), with a leaf for the user's commands; removed after the
    test, with anything of the test still in it moved back to the root first. The v2 tree of
    these hybrid hosts has no controller but hugetlb: what it gives is placement, freezing and
    CPU time."""
    unified = Path("/sys/fs/cgroup/unified")
    if not (unified / "cgroup.procs").exists():
        pytest.skip("no cgroup v2 tree here")
    top = unified / f"ketch-test-{secrets.token_hex(4)}"
    (top / "caller").mkdir(parents=True)
    for path in [top, *top.rglob("*")]:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    try:
        yield top
    finally:
        for directory in sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)) + [top]:
            _remove_cgroup(directory, unified)


def _remove_cgroup(directory: Path, root: Path) -> None:
    """rmdir, once what is left in it went back to ``root``; a process that has just ended (a
    container's monitor) keeps the cgroup busy a moment longer."""
    deadline = time.monotonic() + 30
    while True:
        for pid in (directory / "cgroup.procs").read_text().split():
            try:
                (root / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # (it ended meanwhile)
        try:
            directory.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_delegated_cgroup_v2_subtree(user, busybox_layout, delegated_subtree):
    """Where a cgroup v2 subtree is delegated to the user, each container gets a cgroup of its own
    in it (ROOT/ketch/ID), pause and unpause freeze it, stats reads it, and it goes with the
    container. Limits need controllers these hosts keep in cgroup v1: refused in one line."""
    image = busybox(busybox_layout)
    relative = "/" + str(delegated_subtree.relative_to("/sys/fs/cgroup/unified"))

    def ketch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        # (root puts the command in the user's leaf, then becomes the user: moving a process out
        # of root's cgroup takes root)
        env = [f"{key}={value}" for key, value in user.env.items()]
        return user_result(subprocess.run(
            ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(delegated_subtree / "caller" / "cgroup.procs"),
             "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "env", "-i", *env,
             KETCH, *args], cwd=user.home, capture_output=True, timeout=300), args, check)

    seen = ketch("run", "--rm", "--network", "none", image, "cat", "/proc/self/cgroup").stdout.decode()
    own = next(line[3:] for line in seen.splitlines() if line.startswith("0::"))
    assert own.startswith(f"{relative}/ketch/") and len(own.rsplit("/", 1)[1]) == 64
    container = ketch("run", "-d", "--name", "held", "--network", "none", image, "sleep", "300").stdout.decode().strip()
    cgroup = delegated_subtree / "ketch" / container
    try:
        assert (cgroup / "cgroup.procs").read_text().split()
        ketch("pause", "held")
        assert "frozen 1" in (cgroup / "cgroup.events").read_text().splitlines()
        assert ketch("inspect", "--format", "{{.State.Status}}", "held").stdout == b"paused\n"
        ketch("unpause", "held")
        assert "frozen 0" in (cgroup / "cgroup.events").read_text().splitlines()
        stats = json.loads(ketch("stats", "--no-stream", "--format", "json", "held").stdout)
        assert stats[0]["name"] == "held" and stats[0]["cpu_time"] != "0s"
        limited = ketch("run", "--rm", "--memory", "64m", "--network", "none", image, "true", check=False)
        assert limited.returncode == 125 and limited.stderr.count(b"\n") == 1
        assert b"resource limits (memory) need a cgroup this user may write" in limited.stderr
    finally:
        ketch("rm", "-f", "-t", "0", "held", check=False)
    assert not cgroup.exists()


def user_result(result: subprocess.CompletedProcess, args, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(f"ketch {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
    return result


def test_a_rootless_pod_publishes_and_cgroup_verbs_say_why_not(user, busybox_layout):
    image = busybox(busybox_layout)
    port = free_port()
    user.ketch("pod", "create", "--name", "pod1", "-p", f"127.0.0.1:{port}:8000")
    try:
        user.ketch("run", "-d", "--pod", "pod1", "--name", "inpod", image, "httpd", "-f", "-p", "8000", "-h", "/etc")
        body = _fetch_when_up(port)
        assert body is not None, "the pod's published port never answered"
        # no delegated cgroup here (cgroup v1): stats and pause refuse in one line, as rootless podman's do
        for verb in (["stats", "--no-stream", "inpod"], ["pause", "inpod"]):
            refused = user.ketch(*verb, check=False)
            assert refused.returncode != 0 and b"rootless" in refused.stderr and refused.stderr.count(b"\n") == 1
    finally:
        user.ketch("pod", "rm", "-f", "pod1")

    def pastas() -> list[int]:
        found = []
        for pid in user.processes():
            try:
                status = Path(f"/proc/{pid}/stat").read_text().split()
            except OSError:
                continue
            if status[1].startswith("(pas") and status[2] != "Z":
                found.append(pid)
        return found

    for _ in range(100):  # (pasta quits once its namespace is gone and its SIGTERM is handled)
        if not pastas():
            break
        time.sleep(0.05)
    assert pastas() == []


def test_the_same_commands_as_root_and_as_a_user(user, busybox_layout, shared_dir):
    """The same command lines run by root (on a store of the test's own) and by the user give the
    same output: images, inspect and history templates, run, create, exec, logs, cp, commit, build,
    save and load. Only what is per store (container ids, times) is left out of the comparison."""
    from tests.conftest import run_ketch

    image = busybox(busybox_layout)
    root_store = ["--root", str(shared_dir / "root"), "--runroot", str(shared_dir / "run")]
    run_ketch(*root_store, "pull", "-q", f"oci:{busybox_layout}:latest")
    context = shared_dir / "ctx"
    context.mkdir()
    (context / "data.txt").write_text("copied\n")
    (context / "Dockerfile").write_text(f"FROM {image}\nENV GREETING=hello\nCOPY data.txt /srv/data.txt\n"
                                        "RUN mkdir /work && echo built > /work/made && chown -R 99:99 /work\n"
                                        "WORKDIR /work\nUSER 99\nCMD [\"cat\", \"made\"]\n")
    subprocess.run(["chmod", "-R", "a+rX", str(shared_dir)], check=True)
    host_file = shared_dir / "in.txt"
    host_file.write_text("from the host\n")
    host_file.chmod(0o644)

    def as_root(*args: str) -> str:
        return run_ketch(*root_store, *args).stdout

    def as_user(*args: str) -> str:
        return user.ketch(*args).stdout.decode()

    scenarios = [
        ["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}", "localhost/same"],
        ["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}} {{.Digest}}", image],
        ["images", "-q", "--no-trunc", image],
        ["image", "inspect", "--format", "{{.Id}} {{.Config.Cmd}} {{.Os}}/{{.Architecture}}", image],
        ["history", "--format", "{{.CreatedBy}}", image],
        ["run", "--rm", "--network", "none", image, "sh", "-c", "id; echo $((6*7)); ls /; stat -c %u:%g /bin/sh"],
        ["run", "--rm", "--network", "none", "-e", "A=b", "-w", "/tmp", image, "sh", "-c", "echo $A; pwd"],
        ["run", "--rm", "--network", "none", "localhost/same"],
        # (`id -u; id -g`: rootless podman, and so ketch, also lists an asked-for user's primary
        # group among its groups, root's does not)
        ["run", "--rm", "--network", "none", "localhost/same", "sh", "-c",
         "id -u; id -g; echo $GREETING; cat /srv/data.txt; stat -c %u:%g:%a /work /work/made /srv/data.txt"],
        ["image", "inspect", "--format", "{{.Config.User}} {{.Config.WorkingDir}} {{.Config.Env}}", "localhost/same"],
    ]
    for run in (as_root, as_user):  # (the ids differ: a build's config records when it was made)
        run("build", "-q", "-t", "localhost/same", str(context))
    for args in scenarios:
        mine, theirs = as_user(*args), as_root(*args)
        assert mine == theirs, args
    for run in (as_root, as_user):
        run("run", "-d", "--name", "same", "--network", "none", image, "sh", "-c", "echo started; sleep 60")
    try:
        for args in (["exec", "same", "sh", "-c", "echo $((2+2)); id -u"], ["logs", "same"],
                     ["inspect", "--format", "{{.Config.Cmd}} {{.State.Status}} {{.ImageName}}", "same"],
                     ["cp", str(host_file), "same:/tmp/in.txt"], ["exec", "same", "cat", "/tmp/in.txt"],
                     ["exec", "same", "sh", "-c", "echo changed > /changed"]):
            assert as_user(*args) == as_root(*args), args
        for run in (as_root, as_user):
            run("commit", "-q", "same", "localhost/committed-same")
        assert as_user("run", "--rm", "--network", "none", "localhost/committed-same", "cat", "/changed",
                       "/tmp/in.txt") == as_root("run", "--rm", "--network", "none", "localhost/committed-same",
                                                  "cat", "/changed", "/tmp/in.txt")
    finally:
        for run in (as_root, as_user):
            run("rm", "-f", "-t", "0", "same")
    # an image saved by root loads for the user with the same id, and the other way round
    archive = shared_dir / "busybox.tar"
    as_root("save", "-o", str(archive), image)
    archive.chmod(0o644)
    as_user("rmi", image)
    loaded = as_user("load", "-q", "-i", str(archive))
    assert as_user("images", "-q", "--no-trunc", image) == as_root("images", "-q", "--no-trunc", image), loaded


def _default_gateway() -> str:
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    raise AssertionError("the host has no default route")


def test_a_network_of_the_users_own(user, busybox_layout):
    """`network create` and `--network NAME` as a user, as rootless podman has them: the bridge
    and the veths are in the user's rootless network namespace, none on the host; containers
    reach each other by name; a published port answers on the host's 127.0.0.1 through the
    relay, a pod's too; the containers reach the host's loopback through pasta (its gateway
    address is the host); when the last container goes, the namespace, its pasta and the relays
    go too."""
    import http.server
    import threading

    image = busybox(busybox_layout)
    user.ketch("network", "create", "usernet")
    bridge = user.ketch("network", "inspect", "--format", "{{.NetworkInterface}}", "usernet").stdout.decode().strip()
    rootless_netns = f"{user.run_dir}/ketch/netns/rootless-netns"
    port, pod_port = free_port(), free_port()

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"from the host\n")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        srv = user.ketch("run", "-d", "--name", "srv", "--network", "usernet", "-p", f"127.0.0.1:{port}:8000", image,
                         "httpd", "-f", "-p", "8000", "-h", "/etc").stdout.decode().strip()
        assert _fetch_when_up(port) == srv[:12].encode() + b"\n"
        assert f"127.0.0.1:{port}->8000/tcp".encode() in user.ketch("ps").stdout
        by_name = user.ketch("run", "--rm", "--network", "usernet", image, "sh", "-c",
                             "wget -qO- http://srv:8000/hostname; ip -o -4 addr show eth0").stdout.decode()
        assert by_name.startswith(srv[:12] + "\n") and " 10.123." in by_name
        outbound = user.ketch("run", "--rm", "--network", "usernet", image, "wget", "-qO-",
                              f"http://{_default_gateway()}:{server.server_address[1]}/").stdout
        assert outbound == b"from the host\n"
        # the kernel side is in the user's namespace: the bridge with the veth, nothing on the host
        inside = user.ketch("unshare", "nsenter", f"--net={rootless_netns}", "ip", "-o", "link").stdout.decode()
        assert f" {bridge}:" in inside and f"veth{srv[:8]}0@" in inside
        assert not Path(f"/sys/class/net/veth{srv[:8]}0").exists()
        # a pod on the network publishes through a relay too
        user.ketch("pod", "create", "--name", "netpod", "--network", "usernet", "-p", f"127.0.0.1:{pod_port}:8000")
        try:
            user.ketch("run", "-d", "--pod", "netpod", "--name", "inpod", image, "httpd", "-f", "-p", "8000", "-h",
                       "/etc")
            assert _fetch_when_up(pod_port) is not None, "the pod's published port never answered"
        finally:
            user.ketch("pod", "rm", "-f", "netpod")
        relays = [p for p in user.processes() if b"ketch.containers.portrelay" in _cmdline(p)]
        assert len(relays) == 1, "one relay for srv, the pod's gone with the pod"
    finally:
        server.shutdown()
        server.server_close()
        user.ketch("rm", "-f", "-t", "0", "srv")

    def leftovers() -> list[int]:
        return [p for p in user.processes() if b"ketch.containers.portrelay" in _cmdline(p)
                or _cmdline(p).startswith(b"/usr/bin/pasta")]

    for _ in range(100):
        if not leftovers():
            break
        time.sleep(0.05)
    assert leftovers() == []
    assert user.ketch("unshare", "test", "-e", rootless_netns, check=False).returncode != 0
    user.ketch("network", "rm", "usernet")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_peers_run_from_a_program_in_the_users_namespace(user):
    """A user's Python program that used ketch's library is in the user's namespace as its root;
    podman run from it must still know it is rootless (as from `podman unshare`), not take
    itself for the host's root (whose /run/libpod it may not write)."""
    program = ("from ketch.storage.store import Store; Store(); import os, subprocess; "
               "print(os.environ['_CONTAINERS_USERNS_CONFIGURED'], os.environ['_CONTAINERS_ROOTLESS_UID']); "
               "r = subprocess.run(['podman', '--runtime', 'runc', '--root', os.path.expanduser('~/peer-root'), "
               "'--runroot', os.environ['XDG_RUNTIME_DIR'] + '/pr', 'images', '-q'], capture_output=True, text=True); "
               "print(r.returncode, r.stderr.strip()[-200:])")
    out = user.run(sys.executable, "-c", program).stdout.decode().split("\n")
    assert out[0] == f"done {user.uid}"
    assert out[1] == "0 ", out


def test_the_docker_api_service_as_a_user(user, busybox_layout):
    """`ketch system service` of a user: the socket under $XDG_RUNTIME_DIR/ketch, the user's
    rootless store behind it; docker runs a container there and publishes its port."""
    user.ketch("tag", busybox(busybox_layout), "docker.io/library/busybox:latest")
    service = subprocess.Popen([KETCH, "system", "service", "--time", "0"], user=user.uid, group=user.gid,
                               extra_groups=[], cwd=user.home, env=user.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    sock = user.run_dir / "ketch" / "ketch.sock"
    try:
        for _ in range(300):
            if sock.exists():
                break
            time.sleep(0.05)
        docker = ["/usr/bin/docker", "-H", f"unix://{sock}"]  # (Debian's docker.io)
        out = user.run(*docker, "run", "--rm", "busybox", "sh", "-c", "id -u; echo rootless").stdout
        assert out == b"0\nrootless\n"
        port = free_port()
        user.run(*docker, "run", "-d", "--name", "dweb", "-p", f"127.0.0.1:{port}:8000", "busybox", "httpd", "-f",
                 "-p", "8000", "-h", "/etc")
        assert _fetch_when_up(port) is not None
        assert user.ketch("ps", "--format", "{{.Names}}").stdout == b"dweb\n"  # (the same store)
        user.run(*docker, "rm", "-f", "dweb")
        _compose_as_the_user(user, sock)
    finally:
        service.terminate()
        service.wait(timeout=30)
    assert not sock.exists()


def _compose_as_the_user(user, sock) -> None:
    """docker-compose 1.29 against the user's service: the two services on a network of the
    user's own (in the rootless network namespace), a named volume, a port on 127.0.0.1; down -v
    leaves none of it."""
    from tests.support.compose import COMPOSE

    port = free_port()
    project = user.home / "proj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    os.chown(project, user.uid, user.gid)
    compose = ["docker-compose", "-f", str(project / "docker-compose.yml"), "-p", "uproj"]
    env = {"DOCKER_HOST": f"unix://{sock}"}
    try:
        user.run(*compose, "up", "-d", env=env, timeout=180)
        assert _fetch_when_up(port, "/") == b"hello-compose\n"
        deadline = time.monotonic() + 60
        while b"hello-compose" not in user.run(*compose, "logs", "--no-color", "client", env=env).stdout:
            assert time.monotonic() < deadline, user.run(*compose, "logs", "--no-color", env=env).stdout
            time.sleep(0.2)
        assert user.run(*compose, "exec", "-T", "client", "cat", "/data/got", env=env).stdout == b"hello-compose\n"
        names = set(user.ketch("ps", "--format", "{{.Names}}").stdout.decode().split())
        assert names == {"uproj_web_1", "uproj_client_1"}
    finally:
        user.run(*compose, "down", "-v", "-t", "1", env=env, check=False, timeout=180)
    assert user.ketch("ps", "-a", "-q").stdout == b""
    assert b"uproj_data" not in user.ketch("volume", "ls", "-q").stdout
    assert b"uproj_back" not in user.ketch("network", "ls", "-q").stdout
