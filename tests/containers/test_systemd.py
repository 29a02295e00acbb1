"""What systemd gives a service, given to the container: socket activation (LISTEN_FDS),
sd_notify in both of podman's modes, and inherited fds (--preserve-fds). No systemd runs here:
systemd-socket-activate stands in for the socket unit, and the tests own the notify socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from tests.containers.conftest import KTEST_IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_socket_activation_passes_the_listening_socket_as_fd_3(ketch_env, tmp_path):
    port = _free_port()
    log = tmp_path / "stderr"
    # (systemd-socket-activate clears the environment: what a unit would have is passed on; a
    # user's unit has XDG_RUNTIME_DIR, without which ketch falls back to a run directory in /tmp)
    passed = [arg for name in ("PATH", "XDG_RUNTIME_DIR") if name in os.environ for arg in ("-E", name)]
    with open(log, "wb") as err:
        activator = subprocess.Popen(
            ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *passed,
             *ketch_env.args("run", "--rm", KTEST_IMAGE, "sh", "-c",
                             "echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID >&2; exec ktest accept")],
            stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with conn:
            greeting = conn.makefile("rb").readline()
        assert greeting == b"hello from fd 3\n"
        assert activator.wait(timeout=20) == 0
    finally:
        if activator.poll() is None:
            activator.kill()
            activator.wait()
    assert "LISTEN_FDS=1 LISTEN_PID=1" in log.read_text()
    assert ketch_env.ps() == []


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify" / "sd.sock")
    os.makedirs(os.path.dirname(path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    yield path, sock
    sock.close()


def test_sdnotify_conmon_sends_ready_for_us(ketch_env, notify_socket):
    path, sock = notify_socket
    ketch_env.env = {**os.environ, "NOTIFY_SOCKET": path}
    started = ketch_env.cli("run", "-d", "--name", "notified", "--sdnotify", "conmon", "busybox", "sleep", "30")
    assert started.returncode == 0, started.stderr
    message = sock.recv(4096).decode()
    import json

    monitor = json.loads(ketch_env.cli("inspect", "notified", check=True).stdout)[0]["State"]["ConmonPid"]
    assert f"MAINPID={monitor}" in message and "READY=1" in message
    env = ketch_env.cli("exec", "notified", "env", check=True).stdout
    assert "NOTIFY_SOCKET" not in env  # conmon mode: the container is not told


def test_sdnotify_container_lets_the_container_say_ready(ketch_env, notify_socket):
    path, sock = notify_socket
    ketch_env.env = {**os.environ, "NOTIFY_SOCKET": path}
    result = ketch_env.cli("run", "--rm", KTEST_IMAGE, "sh", "-c",
                           "echo $NOTIFY_SOCKET; ktest notify 'READY=1\nSTATUS=from the container'")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "/run/notify/sd.sock\n"
    assert sock.recv(4096) == b"READY=1\nSTATUS=from the container"


def test_sdnotify_container_detached_passes_ready_on_with_the_monitor_as_main_pid(ketch_env, notify_socket):
    """podman's notify proxy: ``run -d`` returns once the container said READY=1, and systemd
    hears it from ketch (alive), with MAINPID the monitor that stays."""
    path, sock = notify_socket
    ketch_env.env = {**os.environ, "NOTIFY_SOCKET": path}
    result = ketch_env.cli("run", "-d", "--name", "proxied", "--sdnotify=container", KTEST_IMAGE, "sh", "-c",
                           "echo $NOTIFY_SOCKET > /tmp/said; ktest notify 'STATUS=warming up'; sleep 0.3; "
                           "ktest notify READY=1; exec sleep 30")
    assert result.returncode == 0, result.stderr
    message = sock.recv(4096).decode()
    monitor = json.loads(ketch_env.cli("inspect", "proxied", check=True).stdout)[0]["State"]["ConmonPid"]
    assert message == f"MAINPID={monitor}\nSTATUS=warming up\nREADY=1\n"
    assert ketch_env.cli("exec", "proxied", "cat", "/tmp/said", check=True).stdout == "/run/notify/notify.sock\n"
    ketch_env.cli("rm", "-f", "-t", "0", "proxied", check=True)
    # a container that ends before it is ready: run -d fails, naming it, and systemd hears nothing
    failed = ketch_env.cli("run", "-d", "--name", "unready", "--sdnotify=container", KTEST_IMAGE, "true")
    assert failed.returncode != 0 and "container unready stopped before it notified READY=1" in failed.stderr
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    ketch_env.cli("rm", "-f", "unready")


def test_preserve_fds_passes_our_fds_on(ketch_env, tmp_path):
    data = tmp_path / "data"
    data.write_text("from fd 3\n")
    # a shell opens fd 3 and becomes ketch run: the fd is inherited, as from systemd
    result = subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', str(data),
                             *ketch_env.args("run", "--rm", "--preserve-fds", "1", "busybox", "cat", "/proc/self/fd/3")],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"from fd 3\n"
