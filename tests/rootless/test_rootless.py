"""Rootless ketch: users made by the tests (with subordinate ids from useradd, and one without)
pull, build, run, exec, copy, commit, save and load as themselves; the results are compared with
rootless podman run by the same user on the same images. Each user's processes (their pause
process, containers, pasta) are ended by PID and the users removed when the module ends."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.registry import free_port

pytestmark = pytest.mark.peer

KETCH = str(Path(sys.executable).parent / "ketch")
RUNTIME = str(Path(sys.executable).parent / "ketch-runtime")
PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
default_capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
                        "SETPCAP", "SETUID", "SYS_CHROOT"]
"""


class User:
    """An ordinary user of the test's own, with a home, a private run directory and a store."""

    def __init__(self, subordinate: bool = True) -> None:
        self.name = f"krl{secrets.token_hex(3)}"
        extra = [] if subordinate else ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", *extra, self.name], check=True, capture_output=True)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
        self.run_dir = Path(f"/tmp/{self.name}-run")
        self.run_dir.mkdir(mode=0o700)
        os.chown(self.run_dir, self.uid, self.gid)
        (self.home / "containers.conf").write_text(PODMAN_CONF)
        self.env = {"HOME": str(self.home), "USER": self.name, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    "XDG_RUNTIME_DIR": str(self.run_dir), "LANG": "C.UTF-8"}

    def subordinate_start(self) -> int:
        for line in Path("/etc/subuid").read_text().splitlines():
            name, start, _ = line.split(":")
            if name == self.name:
                return int(start)
        raise AssertionError(f"{self.name} has no subordinate ids")

    def run(self, *args: str, check: bool = True, env: dict | None = None, timeout: float = 300,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), user=self.uid, group=self.gid, extra_groups=[], cwd=self.home,
                                env={**self.env, **(env or {})}, capture_output=True, timeout=timeout, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace')}")
        return result

    def ketch(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(KETCH, *args, **kwargs)

    def podman(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        env = {"CONTAINERS_CONF": str(self.home / "containers.conf")}
        # (runc: crun refuses this machine's hybrid cgroups, see MACHINE.md)
        return self.run("podman", "--runtime", "runc", *args, env=env, **kwargs)

    def processes(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == self.uid:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def remove(self) -> None:
        """End what ran as the user (by PID: all of it was started by these tests), then the user."""
        for _ in range(50):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)


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
        seen = tool("run", "--rm", "--pull", "never", "--network", "none", "--user", "0", "localhost/committed", "stat", "-c", "%u:%g",
                    "/made", "/hello", "/bin/busybox").stdout.decode().split()
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


def test_detached_container_with_a_published_port(user, busybox_layout):
    image = busybox(busybox_layout)
    port = free_port()
    user.ketch("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8000", image, "httpd", "-f", "-p", "8000",
               "-h", "/etc")
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5) as response:
                    body = response.read()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None, "the published port never answered"
        assert user.ketch("exec", "web", "id", "-u").stdout == b"0\n"
        assert b"web" in user.ketch("ps").stdout
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
    """A scratch directory the test users can reach (pytest's own are root's alone)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ketch-rootless-"))
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
    user.ketch("export", "-o", str(user.home / "rootfs.tar"),
               user.ketch("create", "--network", "none", busybox(busybox_layout)).stdout.decode().strip())
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
