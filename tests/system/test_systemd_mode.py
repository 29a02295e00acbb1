"""``ketch run --systemd``: podman's systemd mode, booting a Debian image whose command is
/sbin/init (systemd) as a container, and stopping it with its own signal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.helpers import unmount_under

KETCH = str(Path(sys.executable).parent / "ketch")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("systemd-mode")
    args = [KETCH, "--root", str(base / "root"), "--runroot", str(base / "run")]
    subprocess.run([*args, "pull", "-q", f"oci:{images.ensure('systemd')}:latest"], check=True, capture_output=True)
    image = subprocess.run([*args, "images", "-q"], check=True, capture_output=True, text=True).stdout.split()[0]
    try:
        yield args, image
    finally:
        subprocess.run([*args, "rm", "-a", "-f", "-t", "0"], capture_output=True)
        unmount_under(base)


def ketch(args, *more, check=True, timeout=120):
    result = subprocess.run([*args, *more], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_systemd_boots_in_a_container_and_stops_on_its_signal(store):
    args, image = store
    ketch(args, "run", "-d", "--name", "booted", image)  # /sbin/init: systemd mode by default
    try:
        state = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = ketch(args, "exec", "booted", "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        assert state in ("running", "degraded"), state
        assert ketch(args, "exec", "booted", "cat", "/proc/1/comm").stdout == "systemd\n"
        environ = ketch(args, "exec", "booted", "cat", "/proc/1/environ").stdout.split("\0")
        assert "container=ketch" in environ
        for path in ("/run", "/run/lock", "/tmp", "/var/log/journal"):
            assert ketch(args, "exec", "booted", "stat", "-f", "-c", "%T", path).stdout == "tmpfs\n", path
        # systemd's own cgroup hierarchy is writable (it made its units' cgroups), in its namespace
        assert ketch(args, "exec", "booted", "cat", "/proc/1/cgroup").stdout.count(":/init.scope") >= 1
        inspected = json.loads(ketch(args, "inspect", "booted").stdout)[0]
        assert inspected["Config"]["StopSignal"] == 37  # SIGRTMIN+3
        began = time.monotonic()
        ketch(args, "stop", "-t", "60", "booted")
        assert time.monotonic() - began < 30  # systemd powered off: no SIGKILL after the timeout
        inspected = json.loads(ketch(args, "inspect", "booted").stdout)[0]
        assert inspected["State"]["ExitCode"] != 137, inspected["State"]
    finally:
        ketch(args, "rm", "-f", "-t", "0", "booted", check=False)


def test_systemd_mode_is_off_with_false_and_for_other_commands(store):
    args, image = store
    for flags, command, signal in ((["--systemd=false"], [], 15), ([], ["sleep", "100"], 15),
                                   (["--systemd=always"], ["sleep", "100"], 37)):
        ketch(args, "create", "--name", "plain", *flags, image, *command)
        try:
            inspected = json.loads(ketch(args, "inspect", "plain").stdout)[0]
            assert inspected["Config"]["StopSignal"] == signal, (flags, command)
        finally:
            ketch(args, "rm", "-f", "plain")
