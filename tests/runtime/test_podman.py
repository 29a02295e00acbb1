"""podman (Debian's 4.3 with conmon) drives ketch-runtime as it drives runc."""

import subprocess
import time

import pytest

from tests.runtime.conftest import RUNTIME
from tests.support import images
from tests.support.podman import Podman

pytestmark = pytest.mark.peer


@pytest.fixture
def podman(tmp_path_factory):
    instance = Podman(tmp_path_factory.mktemp("podman-rt"), runtime=RUNTIME)
    instance.run("pull", f"oci:{images.ensure('busybox')}:latest")
    image_id = instance.images()[0]["Id"]
    instance.run("tag", image_id, "localhost/busybox:latest")
    try:
        yield instance
    finally:
        instance.run("rm", "-a", "-f", check=False)
        instance.reset()


def test_run_echo_and_exit_code(podman):
    assert podman.run("run", "--rm", "--network", "none", "busybox", "echo", "hi").stdout == "hi\n"
    failed = podman.run("run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3


def test_terminal(podman):
    result = subprocess.run(["script", "-qec", " ".join(podman.base + ["run", "--rm", "-t", "--network", "none",
                                                                        "busybox", "sh", "-c", "'tty; echo t-ok'"]),
                             "/dev/null"], capture_output=True, text=True, timeout=120,
                            env={"CONTAINERS_CONF": str(podman.conf), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    assert "/dev/pts/0" in result.stdout and "t-ok" in result.stdout, result.stderr


def test_read_only(podman):
    out = podman.run("run", "--rm", "--read-only", "--network", "none", "busybox", "sh", "-c",
                     "(touch /x) 2>&1 | grep -c Read-only; touch /tmp/y && echo tmp-ok").stdout
    assert out.split() == ["1", "tmp-ok"]


def test_detached_then_stop_and_rm(podman):
    container = podman.run("run", "-d", "--network", "none", "busybox", "sh", "-c",
                           "trap 'exit 0' TERM; while true; do sleep 0.1; done").stdout.strip()
    status = podman.run("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
    assert status == "running"
    start = time.monotonic()
    podman.run("stop", "-t", "10", container)
    assert time.monotonic() - start < 10  # SIGTERM reached the trap
    assert podman.run("inspect", "--format", "{{.State.Status}}", container).stdout.strip() == "exited"
    podman.run("rm", container)
    assert podman.run("ps", "-a", "-q").stdout == ""


@pytest.fixture
def sleeper(podman):
    container = podman.run("run", "-d", "--network", "none", "busybox", "sleep", "300").stdout.strip()
    yield container
    podman.run("rm", "-f", container, check=False)


def test_exec_with_and_without_a_terminal(podman, sleeper):
    result = podman.run("exec", sleeper, "sh", "-c", "echo exec-ok; exit 4", check=False)
    assert result.returncode == 4 and result.stdout == "exec-ok\n"
    assert podman.run("exec", "-e", "X=1", "-w", "/tmp", sleeper, "sh", "-c", "echo $X; pwd").stdout.split() \
        == ["1", "/tmp"]
    tty = subprocess.run(["script", "-qec", " ".join(podman.base + ["exec", "-t", sleeper, "tty"]), "/dev/null"],
                         capture_output=True, text=True, timeout=120,
                         env={"CONTAINERS_CONF": str(podman.conf), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    assert "/dev/pts/" in tty.stdout, tty.stderr


def test_pause_unpause_top_and_stop_with_kill_all(podman, sleeper):
    podman.run("pause", sleeper)
    assert podman.run("inspect", "--format", "{{.State.Status}}", sleeper).stdout.strip() == "paused"
    podman.run("unpause", sleeper)
    assert podman.run("inspect", "--format", "{{.State.Status}}", sleeper).stdout.strip() == "running"
    top = podman.run("top", sleeper).stdout
    assert "sleep 300" in top
    start = time.monotonic()
    podman.run("stop", "-t", "1", sleeper)  # sleep ignores SIGTERM as pid 1: the KILL follows
    assert time.monotonic() - start < 30
    assert podman.run("inspect", "--format", "{{.State.Status}}", sleeper).stdout.strip() == "exited"


def test_resource_limits_reach_the_cgroup(podman):
    out = podman.run("run", "--rm", "--network", "none", "--memory", "64m", "--pids-limit", "33", "--cpus", "0.5",
                     "busybox", "sh", "-c",
                     "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                     "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").stdout.split()
    assert out == [str(64 << 20), "33", "50000"]
