"""exec: a second process in a running container's namespaces and cgroup."""

from __future__ import annotations

import json
import os
import time

import pytest


@pytest.fixture
def running(bundle):
    bundle.config["root"]["readonly"] = False
    bundle.config["linux"]["cgroupsPath"] = f"/ketch-test/exec-{os.getpid()}-{time.monotonic_ns()}"
    bundle.config["process"]["env"].append("FROM_CONFIG=yes")
    bundle.args("sleep", "60")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    bundle.runtime("start", "c1", check=True)
    yield json.loads(bundle.runtime("state", "c1", check=True).stdout)["pid"]
    bundle.runtime("delete", "--force", "c1")


def test_foreground_exec_output_status_and_settings(bundle, running):
    result = bundle.runtime("exec", "--cwd", "/tmp", "--env", "EXTRA=1", "--user", "1000:1000", "c1",
                            "sh", "-c", "pwd; id -u; id -g; echo $FROM_CONFIG $EXTRA; hostname; exit 3")
    assert result.returncode == 3
    assert result.stdout.split() == ["/tmp", "1000", "1000", "yes", "1", "ketch"]


def test_exec_joins_the_namespaces_and_the_cgroup(bundle, running, tmp_path):
    pid_file = tmp_path / "exec.pid"
    bundle.runtime("exec", "--detach", "--pid-file", str(pid_file), "c1", "sleep", "30", check=True)
    pid = int(pid_file.read_text())
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{running}/ns/{ns}")
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for hierarchy in (":memory:", "0::"):  # a v1 hierarchy and the v2 tree
        mine = [line for line in lines if hierarchy in line]
        assert mine and mine[0].strip().endswith(bundle.config["linux"]["cgroupsPath"]), lines
    listed = json.loads(bundle.runtime("ps", "--format", "json", "c1", check=True).stdout)
    assert pid in listed and running in listed
    bundle.runtime("delete", "--force", "c1", check=True)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_exec_with_a_process_file(bundle, running, tmp_path):
    process = {"args": ["sh", "-c", "echo $ONLY; cat /proc/self/status | grep CapEff"], "cwd": "/",
               "env": ["ONLY=file"], "user": {"uid": 0, "gid": 0}, "terminal": False,
               "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = bundle.runtime("exec", "--process", str(path), "c1", check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "file" and lines[1].split()[1] == f"{1 << 5:016x}"  # CAP_KILL only


def test_exec_errors(bundle, running, tmp_path):
    missing = bundle.runtime("exec", "c1", "no-such-program")
    assert missing.returncode == 1 and "no-such-program" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"args": [], "cwd": "/"}')
    refused = bundle.runtime("exec", "--process", str(bad), "c1")
    assert refused.returncode == 1 and "process.args" in refused.stderr
    bundle.runtime("kill", "c1", "KILL", check=True)
    deadline = time.monotonic() + 5
    while json.loads(bundle.runtime("state", "c1").stdout)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped = bundle.runtime("exec", "c1", "true")
    assert stopped.returncode == 1 and "stopped" in stopped.stderr
    assert bundle.runtime("exec", "nope", "true").returncode == 1
