"""A store with the busybox image, the ``ketch`` command on it, and cleanup after every test:
no container, mount, monitor or cgroup of ours may be left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import AS_USER
from tests.support import cgroups, images
from tests.support.networks import remove_networks

KETCH = str(Path(sys.executable).parent / "ketch")
IMAGE = "docker.io/library/busybox:latest"
KTEST_IMAGE = "localhost/ktest:latest"  # busybox plus tests/support/ktest.c


class KetchEnv:
    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.runroot = base / "run"
        self.env = dict(os.environ)

    def args(self, *args: str) -> list[str]:
        return [KETCH, "--root", str(self.root), "--runroot", str(self.runroot), *args]

    def cli(self, *args: str, check: bool = False, timeout: float = 60, input: bytes | None = None,
            env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        """Run ``ketch``; output through files (a detached container's monitor must not hold a pipe
        the test reads to its end)."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(self.args(*args), stdout=out, stderr=err, timeout=timeout,
                                  input=input, env=env or self.env, **kwargs)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read().decode(errors="replace"),
                                                 err.read().decode(errors="replace"))
        if check and result.returncode != 0:
            raise AssertionError(f"ketch {' '.join(args)}: {result.returncode}: {result.stderr}")
        return result

    def engine(self):
        from ketch.containers import Engine

        return Engine(root=str(self.root), runroot=str(self.runroot))

    def ps(self) -> list[dict]:
        return json.loads(self.cli("ps", "-a", "--format", "json", check=True).stdout)

    def status(self, name: str) -> str:
        return json.loads(self.cli("inspect", name, check=True).stdout)[0]["State"]["Status"]

    def wait_status(self, name: str, wanted: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.status(name) != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.status(name) == wanted

    def mounts(self) -> list[str]:
        """The store's mounts: in this process's mount namespace, or for a rootless run in the
        user's (its pause process's)."""
        where = "/proc/self/mountinfo"
        if AS_USER:
            from ketch.userns import runtime_dir

            pid_file = runtime_dir() / "ketch" / "pause.pid"
            if not pid_file.exists():
                return []
            where = f"/proc/{int(pid_file.read_text())}/mountinfo"
        with open(where) as f:
            return [line.split()[4] for line in f if line.split()[4].startswith(str(self.root / "mounts") + "/")]


@pytest.fixture(scope="session")
def ketch_session(tmp_path_factory):
    from ketch import CopyOptions, SystemContext, copy_image
    from ketch.image.policy import Policy

    base = Path(tempfile.mkdtemp(prefix="ketch-ctr-"))
    base.chmod(0o755)
    env = KetchEnv(base)
    ctx = SystemContext(storage_root=str(env.root), storage_runroot=str(env.runroot))
    for fixture, name in (("busybox", IMAGE), ("busybox-ktest", KTEST_IMAGE)):
        if AS_USER:  # (a rootless run, tests/rootless/as_user.py: the store is filled in the user's namespace)
            env.cli("--insecure-policy", "image", "copy", "-q", f"oci:{images.ensure(fixture)}:latest",
                    f"ketch-storage:{name}", check=True)
            continue
        copy_image(f"oci:{images.ensure(fixture)}:latest", f"ketch-storage:{name}",
                   CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything()))
    yield env
    env.cli("rm", "-f", "-t", "0", "-a")
    remove_networks(str(env.root), str(env.runroot))
    subprocess.run(["umount", "-R", "-l", str(env.root / "mounts")], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    for root in cgroups.roots():
        try:
            os.rmdir(f"{root}/ketch")
        except OSError:
            pass


def containers_made_since(env: KetchEnv, start_ns: int) -> set[str]:
    """The ids of the containers this store made since ``start_ns``: its event log says."""
    from ketch.storage.events import EventLog

    return {e["ID"] for e in EventLog(env.root).read()
            if e["Type"] == "container" and e["Status"] == "create" and e["Time"] >= start_ns}


@pytest.fixture
def ketch_env(ketch_session):
    start_ns = time.time_ns()
    yield ketch_session
    # every test leaves nothing: containers, their mounts, monitors and runtime state
    ketch_session.cli("rm", "-f", "-t", "0", "-a")
    assert ketch_session.mounts() == [], "mounts left behind"
    runtime_states = [p for p in (ketch_session.runroot / "runtime").glob("*") if not p.name.startswith(".")] \
        if (ketch_session.runroot / "runtime").exists() else []
    assert runtime_states == [], f"runtime state left: {runtime_states}"
    # cgroups are host-wide: only those of the containers this test made count (another ketch
    # on the machine may have containers running)
    made = containers_made_since(ketch_session, start_ns)
    left = [f"{root}/ketch/{d}" for root in cgroups.roots() for d in made if os.path.isdir(f"{root}/ketch/{d}")]
    assert left == [], f"cgroups left: {left}"  # (every v1 hierarchy and the v2 tree)
    netns = ketch_session.runroot / "netns"
    assert not netns.exists() or os.listdir(netns) == [], "network namespaces left"
    from ketch.containers.hostnet import HostAllocations
    from ketch.storage.store import Store

    host = HostAllocations(Store(str(ketch_session.root), str(ketch_session.runroot)))
    held = host.db.query("SELECT * FROM addresses WHERE store = ?", (host.store_id,))
    assert held == [], "addresses left"  # (the host-wide records: this store's only)
    assert host.db.query("SELECT * FROM ports WHERE store = ?", (host.store_id,)) == [], "published ports left"
    ketch_session.env = dict(os.environ)
