"""auto-update's decisions without systemd (the units' restarts are recorded by a stand-in; the
booted test in test_boot.py restarts real units): the ``local`` policy, what is skipped, the
rollback of the name, and ``--dry-run``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ketch.containers import Engine
from ketch.image.context import SystemContext
from ketch.image.policy import Policy
from ketch.system.autoupdate import auto_update
from ketch.system.deployments import Systemd
from tests.support.helpers import unmount_under
from tests.system import sysimages

KETCH = str(Path(sys.executable).parent / "ketch")


class Recorded(Systemd):
    def __init__(self, results: list[bool]) -> None:
        self.results = results
        self.restarted: list[str] = []

    def restart_checked(self, unit: str) -> bool:
        self.restarted.append(unit)
        return self.results.pop(0)


@pytest.fixture
def store():
    base = Path(f"/tmp/ketch-autoupdate-{os.getpid()}-{time.monotonic_ns()}")
    base.mkdir()
    args = [KETCH, "--root", str(base / "root"), "--runroot", str(base / "run")]
    layout = sysimages.write(base / "layout", {"v1": ({"srv/v": b"1"}, {"Cmd": ["sleep", "100"]}),
                                               "v2": ({"srv/v": b"2"}, {"Cmd": ["sleep", "100"]})})
    try:
        yield args, base, layout
    finally:
        subprocess.run([*args, "rm", "-a", "-f", "-t", "0"], capture_output=True)
        unmount_under(base)
        subprocess.run(["rm", "-rf", str(base)])


def ketch(args, *more):
    result = subprocess.run([*args, *more], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_local_policy_restarts_the_unit_and_rolls_the_name_back(store):
    args, base, layout = store
    old = ketch(args, "pull", "-q", f"oci:{layout}:v1")
    new = ketch(args, "pull", "-q", f"oci:{layout}:v2")
    ketch(args, "tag", old, "localhost/app:latest")
    for name, labels in (("app", ["--label", "io.containers.autoupdate=local"]), ("plain", []),
                         ("nounit", ["--label", "io.containers.autoupdate=local"])):
        env = {**os.environ, "PODMAN_SYSTEMD_UNIT": f"{name}.service"} if name != "nounit" else None
        subprocess.run([*args, "run", "-d", "--name", name, *labels, "localhost/app:latest"], check=True,
                       capture_output=True, env=env)
    engine = Engine(root=str(base / "root"), runroot=str(base / "run"))
    assert engine.record("app").options.labels["PODMAN_SYSTEMD_UNIT"] == "app.service"  # recorded from the unit
    ctx, policy = SystemContext(), Policy.insecure_accept_anything()
    # nothing newer: nothing to do (the unlabelled and the unit-less containers are never looked at)
    systemctl = Recorded([])
    assert [r.row() for r in auto_update(engine, None, ctx, policy, systemctl=systemctl)] == [
        {"Unit": "app.service", "Container": engine.record("app").id[:12], "Image": "localhost/app:latest",
         "Policy": "local", "Updated": "false"}]
    ketch(args, "tag", new, "localhost/app:latest")
    assert [r.updated for r in auto_update(engine, None, ctx, policy, dry_run=True, systemctl=systemctl)] == \
        ["pending"]
    assert systemctl.restarted == []
    systemctl = Recorded([True])
    assert [r.updated for r in auto_update(engine, None, ctx, policy, systemctl=systemctl)] == ["true"]
    assert systemctl.restarted == ["app.service"]
    # the restarted unit fails: the old image gets the name back, and the unit is restarted again
    systemctl = Recorded([False, True])
    assert [r.updated for r in auto_update(engine, None, ctx, policy, systemctl=systemctl)] == ["rolled back"]
    assert systemctl.restarted == ["app.service", "app.service"]
    assert engine.store.lookup("localhost/app:latest").id == old
    ketch(args, "tag", new, "localhost/app:latest")
    systemctl = Recorded([False])
    assert [r.updated for r in auto_update(engine, None, ctx, policy, rollback=False, systemctl=systemctl)] == \
        ["failed"]
    assert engine.store.lookup("localhost/app:latest").id == new
