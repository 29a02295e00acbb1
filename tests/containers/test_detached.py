"""Detached containers: the monitor owns output, log and exit status; any ketch process manages
any container; the truth survives a killed monitor or a killed ``ketch run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest


def _inspect(ketch_env, name):
    return json.loads(ketch_env.cli("inspect", name, check=True).stdout)[0]


def _wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert predicate()


@pytest.mark.parametrize("monitor", ["native", "python"])
def test_run_detached_logs_follow_stop_and_remove(ketch_env, tmp_path, monitor):
    if monitor == "python":
        ketch_env.env = {**os.environ, "KETCH_MONITOR": "python"}
    started = ketch_env.cli("run", "-d", "--name", "ticker", "--label", "app=tick", "busybox", "sh", "-c",
                            "trap 'echo bye; exit 3' TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    assert len(container_id) == 64
    info = _inspect(ketch_env, "ticker")
    assert info["State"]["Running"] and info["State"]["ConmonPid"] > 0
    assert info["Config"]["Labels"] == {"app": "tick", "org.opencontainers.image.title": "busybox"}
    with open(f"/proc/{info['State']['ConmonPid']}/comm") as f:
        assert (f.read().strip() == "ketch-monitor") == (monitor == "native")
    with open(f"/proc/{info['State']['Pid']}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    assert parent == info["State"]["ConmonPid"]  # the monitor is the container's parent
    follow_out = tmp_path / "follow"
    with open(follow_out, "wb") as sink:
        follower = subprocess.Popen(ketch_env.args("logs", "-f", "ticker"), stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: b"tick 3" in follow_out.read_bytes())
        assert ketch_env.cli("stop", "-t", "5", "ticker", check=True).stdout == "ticker\n"
        assert follower.wait(timeout=10) == 0  # -f ends when the container does
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follow_out.read_bytes().endswith(b"bye\n")
    info = _inspect(ketch_env, "ticker")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
    assert not os.path.exists(f"/proc/{info['State']['ConmonPid']}") or info["State"]["ConmonPid"] == 0
    assert ketch_env.cli("wait", "ticker", check=True).stdout == "3\n"
    logs = ketch_env.cli("logs", "--tail", "2", "ticker", check=True).stdout.splitlines()
    assert len(logs) == 2 and logs[-1] == "bye"
    assert ketch_env.mounts() == []  # the monitor cleaned up the root file system
    assert ketch_env.cli("rm", "ticker", check=True).stdout == "ticker\n"
    assert ketch_env.ps() == []


def test_ps_filters_quiet_and_podman_shape(ketch_env):
    ketch_env.cli("run", "-d", "--name", "alpha", "--label", "tier=web", "busybox", "sleep", "30", check=True)
    ketch_env.cli("run", "--name", "beta", "busybox", "sh", "-c", "exit 2")
    ketch_env.cli("create", "--name", "gamma", "busybox", "true", check=True)
    running = ketch_env.cli("ps", "--format", "json", check=True)
    entries = json.loads(running.stdout)
    assert [e["Names"] for e in entries] == [["alpha"]]
    keys = {"AutoRemove", "Command", "Created", "CreatedAt", "Exited", "ExitedAt", "ExitCode", "Id", "Image",
            "ImageID", "IsInfra", "Labels", "Mounts", "Names", "Namespaces", "Networks", "Pid", "Pod", "PodName",
            "Ports", "Size", "StartedAt", "State", "Status"}
    assert set(entries[0]) == keys and entries[0]["State"] == "running" and entries[0]["Status"].startswith("Up ")
    everything = {e["Names"][0]: e for e in ketch_env.ps()}
    assert everything["beta"]["State"] == "exited" and everything["beta"]["ExitCode"] == 2
    assert everything["beta"]["Status"].startswith("Exited (2)") and everything["gamma"]["State"] == "created"
    def names(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(e["Names"][0] for e in json.loads(ketch_env.cli("ps", "-a", "--format", "json", *args,
                                                                      check=True).stdout))
    assert names("status=exited") == ["beta"]
    assert names("label=tier=web") == ["alpha"]
    assert names("name=^g") == ["gamma"]
    assert names("exited=2") == ["beta"]
    assert names("ancestor=busybox") == ["alpha", "beta", "gamma"]
    assert names("status=created", "status=exited") == ["beta", "gamma"]
    quiet = ketch_env.cli("ps", "-a", "-q", check=True).stdout.split()
    assert sorted(quiet) == sorted(e["Id"][:12] for e in everything.values())
    assert ketch_env.cli("ps", "--filter", "color=red").returncode != 0
    template = ketch_env.cli("ps", "--format", "{{.Names}} {{.State}}", check=True).stdout
    assert template.startswith("alpha Up ")  # podman 4.3's .Names is one string, its .State a human one


def test_create_start_attach_restart_and_exec(ketch_env):
    ketch_env.cli("create", "--name", "later", "-e", "WHO=later", "busybox", "sh", "-c",
                  "echo hello $WHO; exit 6", check=True)
    assert ketch_env.status("later") == "created"
    attached = ketch_env.cli("start", "-a", "later")
    assert attached.returncode == 6 and attached.stdout == "hello later\n"
    assert ketch_env.status("later") == "exited"
    again = ketch_env.cli("start", "-a", "later")  # an exited container starts again
    assert again.returncode == 6
    ketch_env.cli("run", "-d", "--name", "svc", "busybox", "sleep", "60", check=True)
    first_pid = _inspect(ketch_env, "svc")["State"]["Pid"]
    exec_result = ketch_env.cli("exec", "-e", "X=1", "-w", "/etc", "-u", "nobody", "svc", "sh", "-c",
                                "echo $X $(pwd) $(id -u); exit 4")
    assert exec_result.returncode == 4 and exec_result.stdout == "1 /etc 65534\n"
    assert ketch_env.cli("exec", "svc", "no-such-thing").returncode == 127
    assert ketch_env.cli("exec", "-d", "svc", "sleep", "1").returncode == 0
    piped = ketch_env.cli("exec", "-i", "svc", "sh", "-c", "tr a-z A-Z", input=b"shout\n")
    assert piped.stdout == "SHOUT\n"
    ketch_env.cli("restart", "-t", "0", "svc", check=True)
    info = _inspect(ketch_env, "svc")
    assert info["State"]["Running"] and info["State"]["Pid"] != first_pid
    # not running: podman 4.3 says 255 for an exec that never started
    assert ketch_env.cli("exec", "later", "true").returncode == 255
    assert ketch_env.cli("rm", "svc").returncode != 0  # running: needs -f
    assert ketch_env.cli("rm", "-f", "-t", "0", "svc", check=True).stdout == "svc\n"


def test_kill_signal_and_run_rm_detached(ketch_env):
    ketch_env.cli("run", "-d", "--rm", "--name", "gone", "busybox", "sh", "-c",
                  "trap 'exit 0' USR1; while :; do sleep 0.1; done", check=True)
    ketch_env.cli("kill", "-s", "USR1", "gone", check=True)
    _wait_for(lambda: ketch_env.cli("inspect", "gone").returncode != 0)  # the monitor removed it
    assert ketch_env.mounts() == []


def test_killed_monitor_and_killed_run_leave_the_truth(ketch_env, tmp_path):
    ketch_env.cli("run", "-d", "--name", "orphan", "busybox", "sleep", "60", check=True)
    info = _inspect(ketch_env, "orphan")
    os.kill(info["State"]["ConmonPid"], signal.SIGKILL)
    time.sleep(0.2)
    assert ketch_env.status("orphan") == "running"  # the container outlives its monitor
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    _wait_for(lambda: ketch_env.status("orphan") == "exited")
    assert ketch_env.cli("rm", "orphan", check=True).returncode == 0
    assert ketch_env.mounts() == []

    proc = subprocess.Popen(ketch_env.args("run", "--name", "fg", "busybox", "sleep", "60"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: ketch_env.cli("inspect", "fg").returncode == 0 and ketch_env.status("fg") == "running")
    proc.kill()
    proc.wait()
    assert ketch_env.status("fg") == "running"  # kill -9 of ketch run: the container goes on
    assert [e["State"] for e in ketch_env.ps()] == ["running"]
    assert ketch_env.cli("rm", "-f", "-t", "0", "fg", check=True).returncode == 0
    assert ketch_env.ps() == [] and ketch_env.mounts() == []


def test_a_failed_detached_start_leaves_nothing(ketch_env):
    result = ketch_env.cli("run", "-d", "--rm", "--name", "broken", "busybox", "no-such-program")
    assert result.returncode == 127 and len(result.stderr.strip().splitlines()) == 1
    assert ketch_env.ps() == [] and ketch_env.mounts() == []
    monitors = subprocess.run(["pgrep", "-f", "ketch.containers.monitor.*broken"], capture_output=True)
    assert monitors.stdout == b""


def test_stop_signal_logs_since_and_exec_with_a_terminal(ketch_env):
    ketch_env.cli("run", "-d", "--name", "polite", "--stop-signal", "USR1", "busybox", "sh", "-c",
                  "trap 'echo stopping; exit 0' USR1; echo early; while :; do sleep 0.05; done", check=True)
    _wait_for(lambda: "early" in ketch_env.cli("logs", "polite").stdout)
    assert ketch_env.cli("logs", "--since", "1h", "polite", check=True).stdout == "early\n"
    future = str(time.time() + 3600)
    assert ketch_env.cli("logs", "--since", future, "polite", check=True).stdout == ""
    from tests.support.terminal import run_on_pty

    status, output = run_on_pty(ketch_env.args("exec", "-it", "polite", "sh", "-c", "tty; exit 3"))
    assert status == 3
    assert b"/dev/pts/" in output
    ketch_env.cli("stop", "polite", check=True)
    assert _inspect(ketch_env, "polite")["State"]["ExitCode"] == 0  # it took USR1 as the stop signal
    assert ketch_env.cli("logs", "polite", check=True).stdout == "early\nstopping\n"
