"""Cgroups (this machine's v1 controllers, and the v2 tree beside them), pause/resume, update,
events, and the six kinds of hooks."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import RUNTIME

CGROUP = "/sys/fs/cgroup"


def state(bundle, name="c1"):
    return json.loads(bundle.runtime("state", name, check=True).stdout)


def wait_status(bundle, wanted, name="c1", timeout=10):
    deadline = time.monotonic() + timeout
    while state(bundle, name)["status"] != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state(bundle, name)["status"] == wanted


def read(controller, path, name):
    return Path(f"{CGROUP}/{controller}{path}/{name}").read_text().strip()


def test_resources_are_written_and_the_cgroup_removed(bundle, cgroup_path):
    bundle.config["linux"]["resources"] = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    bundle.args("sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
                            "cat /proc/self/cgroup | grep memory; sleep 30")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    pid = state(bundle)["pid"]
    assert read("memory", cgroup_path, "memory.limit_in_bytes") == str(64 << 20)
    assert read("memory", cgroup_path, "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read("memory", cgroup_path, "memory.swappiness") == "10"
    assert read("cpu", cgroup_path, "cpu.shares") == "512"
    assert read("cpu", cgroup_path, "cpu.cfs_quota_us") == "50000"
    assert read("cpuset", cgroup_path, "cpuset.cpus") == "0"
    assert read("pids", cgroup_path, "pids.max") == "20"
    devices = read("devices", cgroup_path, "devices.list").splitlines()
    assert "c 1:3 rwm" in devices and "a *:* rwm" not in devices  # deny-all, the defaults allowed
    for controller in ("memory", "pids", "cpu", "freezer", "unified"):
        assert str(pid) in read(controller, cgroup_path, "cgroup.procs").split()
    assert bundle.runtime("ps", "--format", "json", "c1", check=True).stdout.strip() == f"[{pid}]"
    bundle.runtime("delete", "--force", "c1", check=True)
    assert not [c for c in os.listdir(CGROUP) if os.path.isdir(f"{CGROUP}/{c}{cgroup_path}")]


def test_the_container_sees_its_own_cgroup_and_limits_hold(bundle, cgroup_path):
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.config["linux"]["resources"] = {"pids": {"limit": 8}}
    result = bundle.run("sh", "-c", "cat /sys/fs/cgroup/pids/pids.max; grep pids /proc/self/cgroup; "
                                    "grep '^0::' /proc/self/cgroup; "
                                    "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait; "
                                    "echo done")
    lines = result.stdout.splitlines()
    assert lines[0] == "8"
    assert lines[1].endswith(":pids:/")  # the cgroup namespace's root is the container's cgroup
    assert lines[2] == "0::/"  # in the v2 tree too (the init is born there; it makes the namespace)
    assert "fork" in result.stderr.lower()  # a process beyond the limit was refused


def test_pause_resume_kill_all_and_events(bundle, cgroup_path):
    bundle.args("sh", "-c", "sleep 60 & sleep 60 & wait")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    bundle.runtime("start", "c1", check=True)
    wait_status(bundle, "running")
    deadline = time.monotonic() + 5
    while len(json.loads(bundle.runtime("ps", "--format", "json", "c1").stdout)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    bundle.runtime("pause", "c1", check=True)
    assert state(bundle)["status"] == "paused"
    assert read("freezer", cgroup_path, "freezer.state") == "FROZEN"
    assert bundle.runtime("pause", "c1").returncode == 1  # already paused
    stats = json.loads(bundle.runtime("events", "--stats", "c1", check=True).stdout)
    assert stats["type"] == "stats" and stats["id"] == "c1"
    assert stats["data"]["pids"]["current"] == 3 and stats["data"]["memory"]["usage"]["usage"] > 0
    bundle.runtime("resume", "c1", check=True)
    assert state(bundle)["status"] == "running"
    bundle.runtime("update", "--memory", "48m", "--pids-limit", "50", "--cpu-share", "256", "c1", check=True)
    assert read("memory", cgroup_path, "memory.limit_in_bytes") == str(48 << 20)
    assert read("pids", cgroup_path, "pids.max") == "50" and read("cpu", cgroup_path, "cpu.shares") == "256"
    refused = bundle.runtime("update", "--cpuset-cpus", "999", "c1")
    assert refused.returncode == 1 and "cpuset.cpus" in refused.stderr
    bundle.runtime("pause", "c1", check=True)
    bundle.runtime("kill", "--all", "c1", "KILL", check=True)  # reaches frozen processes too
    wait_status(bundle, "stopped")
    assert read("pids", cgroup_path, "cgroup.procs") == ""
    bundle.runtime("delete", "c1", check=True)
    assert not os.path.exists(f"{CGROUP}/memory{cgroup_path}")


@pytest.mark.parametrize("resources, message", [
    ({"cpu": {"cpus": "999"}}, "cpuset.cpus"),
    ({"memory": {"swappiness": 500}}, "swappiness"),
    ({"network": {"classID": 1}}, "net_cls"),
    ({"unified": {"memory.max": "1"}}, "cgroup v2"),
    ({"memory": {"limit": "lots"}}, "must be a number"),
])
def test_refused_values_leave_nothing(bundle, cgroup_path, resources, message):
    bundle.config["linux"]["resources"] = resources
    bundle.args("true")
    result = bundle.runtime("create", "--bundle", str(bundle.path), "c1")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert bundle.runtime("list", "-q").stdout == ""
    assert not [c for c in os.listdir(CGROUP) if os.path.isdir(f"{CGROUP}/{c}{cgroup_path}")]


def hook(bundle, name, script="cat > /hooks/{name}", timeout=None):
    """A hook that runs the bundle's busybox sh (a path valid in the runtime's namespaces)."""
    entry = {"path": str(bundle.path / "rootfs/bin/sh"),
             "args": ["sh", "-c", script.format(name=name, out=bundle.path / "out")]}
    if timeout:
        entry["timeout"] = timeout
    return entry


def test_every_hook_kind_gets_the_state(bundle, cgroup_path):
    out = bundle.path / "out"
    out.mkdir()
    (bundle.path / "rootfs/hooks").mkdir()
    outside = "cat > {out}/{name}"
    bundle.config["annotations"] = {"org.example": "hooked"}
    bundle.config["hooks"] = {
        "prestart": [hook(bundle, "prestart", outside)],
        "createRuntime": [hook(bundle, "createRuntime", outside)],
        "createContainer": [hook(bundle, "createContainer", outside)],  # before pivot_root: host paths work
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /hooks/startContainer"]}],
        "poststart": [hook(bundle, "poststart", outside)],
        "poststop": [hook(bundle, "poststop", outside)],
    }
    bundle.args("true")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    pid = state(bundle)["pid"]
    for name, status in (("prestart", "created"), ("createRuntime", "creating"), ("createContainer", "creating")):
        seen = json.loads((out / name).read_text())
        assert (seen["id"], seen["status"], seen["pid"], seen["bundle"]) == ("c1", status, pid, str(bundle.path)), name
        assert seen["annotations"] == {"org.example": "hooked"}
    assert not (out / "poststart").exists()
    bundle.runtime("start", "c1", check=True)
    assert json.loads((out / "poststart").read_text())["status"] == "running"
    wait_status(bundle, "stopped")
    inside = json.loads((bundle.path / "rootfs/hooks/startContainer").read_text())
    assert inside["id"] == "c1" and inside["pid"] == pid
    bundle.runtime("delete", "c1", check=True)
    assert json.loads((out / "poststop").read_text())["status"] == "stopped"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_or_hanging_create_hook_fails_create(bundle, cgroup_path, kind):
    bundle.config["hooks"] = {kind: [hook(bundle, kind, "exit 3")]}
    bundle.args("true")
    result = bundle.runtime("create", "--bundle", str(bundle.path), "c1")
    assert result.returncode == 1 and f"{kind} hook" in result.stderr and "exit status 3" in result.stderr
    assert bundle.runtime("list", "-q").stdout == ""
    assert not os.path.exists(f"{CGROUP}/memory{cgroup_path}")
    bundle.config["hooks"] = {kind: [hook(bundle, kind, "sleep 30", timeout=1)]}
    bundle.write()
    started = time.monotonic()
    result = bundle.runtime("create", "--bundle", str(bundle.path), "c1")
    assert result.returncode == 1 and "did not finish within 1s" in result.stderr
    assert time.monotonic() - started < 15
    assert bundle.runtime("list", "-q").stdout == ""


def test_failing_poststart_and_poststop_only_warn(bundle, cgroup_path):
    """A failing poststart or poststop hook is reported, and the hooks after it still run (the
    runtime spec's rule)."""
    out = bundle.path / "out"
    out.mkdir()
    bundle.config["hooks"] = {"poststart": [hook(bundle, "poststart", "exit 1"),
                                            hook(bundle, "poststart-after", "cat > {out}/{name}")],
                              "poststop": [hook(bundle, "poststop", "exit 2"),
                                           hook(bundle, "poststop-after", "cat > {out}/{name}")]}
    bundle.args("sleep", "30")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    started = bundle.runtime("start", "c1")
    assert started.returncode == 0 and "warning: poststart hook" in started.stderr
    assert state(bundle)["status"] == "running"
    assert json.loads((out / "poststart-after").read_text())["status"] == "running"
    deleted = bundle.runtime("delete", "--force", "c1")
    assert deleted.returncode == 0 and "warning: poststop hook" in deleted.stderr
    assert json.loads((out / "poststop-after").read_text())["status"] == "stopped"
    assert bundle.runtime("state", "c1").returncode == 1


@pytest.mark.parametrize("hooks, message", [
    ({"prestart": [{"path": "relative"}]}, "absolute path"),
    ({"poststart": [{"path": "/bin/true", "timeout": 0}]}, "positive"),
    ({"poststop": [{"path": "/bin/true", "args": "no"}]}, "list of strings"),
])
def test_bad_hooks_are_refused(bundle, hooks, message):
    bundle.config["hooks"] = hooks
    bundle.args("true")
    result = bundle.runtime("create", "--bundle", str(bundle.path), "c1")
    assert result.returncode == 1 and message in result.stderr
    assert bundle.runtime("list", "-q").stdout == ""


def test_events_streams_stats_and_oom_kills(bundle, cgroup_path, tmp_path):
    bundle.config["linux"]["resources"] = {"memory": {"limit": 16 << 20, "swap": 16 << 20}}
    # sleeps until told, then asks for far more than the limit: the OOM killer ends dd
    bundle.args("sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; "
                            "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 60")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    bundle.runtime("start", "c1", check=True)
    out = tmp_path / "events.out"
    with open(out, "w") as sink:
        events = subprocess.Popen([*bundle.wrapper, RUNTIME, "--root", str(bundle.root), "events", "--interval",
                                   "200ms", "c1"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while out.read_text().count('"stats"') < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # a stats event every 200 ms; the OOM watch is registered before the first
        (bundle.path / "rootfs/go").touch()
        while '"oom"' not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        bundle.runtime("kill", "c1", "KILL", check=True)
        assert events.wait(timeout=10) == 0  # events ends when the container stops
    finally:
        if events.poll() is None:
            events.kill()
            events.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = [e["type"] for e in lines]
    assert kinds[:2] == ["stats", "stats"] and "oom" in kinds, kinds
    assert {"type": "oom", "id": "c1"} in lines
    assert read("memory", cgroup_path, "memory.oom_control").splitlines()[-1].split()[-1] == "1"  # oom_kill 1
