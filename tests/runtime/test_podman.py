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
