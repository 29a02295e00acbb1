"""A cgroup v2 host. On a hybrid host (this machine) the runtime is run in a mount namespace whose
/sys/fs/cgroup is the machine's v2 tree alone (the v1 controllers unmounted); on a v2-only host it
runs as it is. Either way ketch-runtime takes its v2 path for real: the
init forked into its cgroup, the cgroup namespace, device rules as an eBPF program, the freezer
through cgroup.freeze, kill --all and removal. The v2 tree here has no controllers (they are all
bound to v1), so memory, cpu and pids limits on v2 cannot be tested on this machine."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.runtime.test_cgroups_hooks import state, wait_status
from tests.support import cgroups

V2_ONLY = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           'umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "sh"]
UNIFIED = cgroups.v2_root() or "/sys/fs/cgroup/unified"  # the v2 tree as the host (not the container) sees it


@pytest.fixture
def v2_controllers_restored():
    """The runtime enables the v2 tree's controllers down to the container's cgroup, as runc
    does: a host-wide change, undone once the test's cgroups are gone (this fixture is set up
    before cgroup_path, so it is torn down after it). A controller left enabled on the root could
    no longer be mounted as v1, which crun needs on this machine."""
    before = _enabled(UNIFIED) if os.path.exists(f"{UNIFIED}/cgroup.subtree_control") else set()
    yield
    if os.path.exists(f"{UNIFIED}/cgroup.subtree_control"):
        for controller in _enabled(UNIFIED) - before:
            try:
                with open(f"{UNIFIED}/cgroup.subtree_control", "w") as f:
                    f.write(f"-{controller}")
            except OSError:
                pass  # used below by cgroups that are not ours


def _enabled(directory: str) -> set[str]:
    with open(f"{directory}/cgroup.subtree_control") as f:
        return set(f.read().split())


@pytest.fixture
def v2(v2_controllers_restored, bundle, cgroup_path):
    if cgroups.v2_root() is None:
        pytest.skip("no cgroup v2 tree on this host")
    if not cgroups.v2_only():
        bundle.wrapper = V2_ONLY  # (a v2-only host needs no namespace of its own)
    yield cgroup_path


def test_devices_are_filtered_by_an_ebpf_program(bundle, v2):
    bundle.config["linux"]["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "rm"},  # loop0: make and read only
    ]}
    for kind in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][kind].append("CAP_MKNOD")  # the filter, not caps, decides
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    result = bundle.run("sh", "-c", "mknod /tmp/loop b 7 0 && echo loop-made; "
                                    "(exec 3</tmp/loop) && echo loop-read; "
                                    "(exec 3>/tmp/loop) || echo loop-write-refused; "
                                    "mknod /tmp/loop1 b 7 1 || echo loop1-refused; "
                                    "head -c1 /dev/null; echo null-ok; "  # always allowed
                                    "grep '^0::' /proc/self/cgroup; ls /sys/fs/cgroup/cgroup.procs")
    out = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    for line in ("loop-made", "loop-read", "loop-write-refused", "loop1-refused", "null-ok"):
        assert line in out, (line, out, result.stderr)
    assert "0::/" in out  # a cgroup namespace rooted at the container's v2 cgroup
    assert "/sys/fs/cgroup/cgroup.procs" in out  # cgroup2 mounted in the container
    assert not os.path.exists(f"{UNIFIED}{v2}")  # removed with the container


def test_pause_resume_and_kill_all_through_cgroup_freeze(bundle, v2):
    bundle.args("sh", "-c", "sleep 60 & sleep 60 & wait")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    bundle.runtime("start", "c1", check=True)
    wait_status(bundle, "running")
    pid = state(bundle)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"0::{v2}\n" in f.read()  # born in its v2 cgroup (clone3 into the cgroup)
    deadline = time.monotonic() + 5
    while len(json.loads(bundle.runtime("ps", "--format", "json", "c1").stdout)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    bundle.runtime("pause", "c1", check=True)
    assert state(bundle)["status"] == "paused"
    with open(f"{UNIFIED}{v2}/cgroup.freeze") as f:
        assert f.read().strip() == "1"
    bundle.runtime("resume", "c1", check=True)
    assert state(bundle)["status"] == "running"
    bundle.runtime("kill", "--all", "c1", "KILL", check=True)
    wait_status(bundle, "stopped")
    bundle.runtime("delete", "c1", check=True)
    assert not os.path.exists(f"{UNIFIED}{v2}")


def test_a_device_rule_the_kernel_cannot_take_leaves_nothing(bundle, v2):
    bundle.config["linux"]["resources"] = {"devices": [{"allow": True, "type": "x", "access": "rwm"}]}
    result = bundle.run("true")
    assert result.returncode == 1 and "device rule type 'x'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not os.path.exists(f"{UNIFIED}{v2}")
    assert json.loads(bundle.runtime("list", "--format", "json", check=True).stdout) == []
