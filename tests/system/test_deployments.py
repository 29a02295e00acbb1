"""System containers without systemd: deployments, their sharing, templates, host files, the
switch, and the runtime running a deployment as a unit would. (tests/system/test_boot.py runs
them under a booted systemd.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ketch.containers.images import pull
from ketch.errors import InvalidInputError, NotFoundError
from ketch.image.context import SystemContext
from ketch.image.policy import Policy
from ketch.storage.store import Store
from ketch.system import SystemContainerError, SystemContainers
from tests.support.helpers import unmount_under
from tests.system import sysimages

BIN = Path(sys.executable).parent
RUNTIME = str(BIN / "ketch-runtime")

CONFIG_TEMPLATE = json.dumps({
    "ociVersion": "1.0.2",
    "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                "args": ["sh", "-c", "echo $GREETING-$NAME > /var/lib/$NAME/said; exec sleep 1000"],
                "env": ["PATH=/bin:/usr/bin"],
                "capabilities": {"bounding": ["$ALL_PROCESS_CAPABILITIES"]}},
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/var/lib/$NAME", "type": "bind", "source": "$STATE_DIRECTORY/$NAME",
                "options": ["rbind", "rw"]}],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
}, indent=1).replace('"$ALL_PROCESS_CAPABILITIES"', "$ALL_PROCESS_CAPABILITIES")

SERVICE_TEMPLATE = """[Unit]
Description=$NAME from $IMAGE_NAME ($IMAGE_ID) $UUID
After=store.service

[Service]
ExecStartPre=-$EXEC_STARTPRE
ExecStart=$EXEC_START
ExecStop=$EXEC_STOP
ExecStopPost=-$EXEC_STOPPOST
PIDFile=$PIDFILE
WorkingDirectory=$DESTDIR
Environment=GREETING=$GREETING RUN=$RUN_DIRECTORY

[Install]
WantedBy=multi-user.target
"""


class Env:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.store = Store(str(base / "store"), str(base / "run"))
        self.host = base / "host"
        self.host.mkdir()
        self.system = SystemContainers(self.store, host_root=self.host)
        self.layouts = base / "layouts"

    def pull(self, reference: str) -> str:
        return pull(self.store, reference, SystemContext(), Policy.insecure_accept_anything())

    def layout(self, name: str, tags) -> str:
        path = sysimages.write(self.layouts / name, tags)
        return f"oci:{path}"

    def unit(self, name: str) -> Path:
        return self.host / "etc/systemd/system" / f"{name}.service"


@pytest.fixture
def env():
    # (a name oci: references accept as a repository path: mkdtemp's may not be one)
    base = Path(tempfile.gettempdir()) / f"ketch-system-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir()
    e = Env(base)
    try:
        yield e
    finally:
        for row in e.store.mounted_images():
            e.store.unmount_image(row[0].id, force=True)
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def templated_files(greeting="hello", extra=b"v1") -> dict:
    return {
        "exports/config.json.template": CONFIG_TEMPLATE.encode(),
        "exports/service.template": SERVICE_TEMPLATE.encode(),
        "exports/tmpfiles.template": b"d $RUN_DIRECTORY/$NAME 0755 - - -\n",
        "exports/manifest.json": json.dumps({"version": "1.0", "defaultValues": {"GREETING": greeting}}).encode(),
        "exports/hostfs/usr/local/lib/kstest/plugin.conf": b"plugin=$NAME\n" + extra,
        "exports/hostfs/etc/kstest.conf": b"conf " + extra,
        "srv/data": extra,
    }


def test_default_deployment_is_read_only_shared_and_enabled(env):
    image = env.layout("plain", {"v1": ({"srv/data": b"one" * 1000}, {"Cmd": ["sh"], "Labels": {
        "io.ketch.system.notify": "true", "io.ketch.system.requires": "store", "io.ketch.system.after": "store,x.socket"}})})
    deployment = env.system.install(f"{image}:v1", name="plain", pull=env.pull)
    assert deployment.number == 0 and deployment.path == env.system.directory / "deployments/plain/0"
    unit = env.unit("plain")
    assert os.readlink(unit) == str(deployment.path / "plain.service")
    wants = env.host / "etc/systemd/system/multi-user.target.wants/plain.service"
    assert os.readlink(wants) == "../plain.service" and wants.resolve() == (deployment.path / "plain.service")
    text = unit.read_text()
    assert "Type=notify\nNotifyAccess=all" in text
    assert "Requires=store.service" in text and "After=store.service x.socket" in text
    assert f"ExecStart={RUNTIME} run --bundle {deployment.path} --pid-file /run/container-plain.pid plain" in text
    assert "Delegate=yes" in text and "KillMode=mixed" in text
    config = json.loads((deployment.path / "config.json").read_text())
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["process"]["args"] == ["sh"] and "container=ketch" in config["process"]["env"]
    assert config["linux"]["cgroupsPath"] == "ketch-plain"
    assert not any(n["type"] == "network" for n in config["linux"]["namespaces"])  # the host's network
    by_dest = {m["destination"]: m for m in config["mounts"]}
    assert by_dest["/run"]["type"] == by_dest["/tmp"]["type"] == "tmpfs"
    assert by_dest["/var/lib/plain"]["source"] == "/var/lib/plain"
    assert (env.host / "var/lib/plain").is_dir()
    assert os.readlink(env.host / "etc/tmpfiles.d/plain.conf") == str(deployment.path / "tmpfiles.conf")
    # every regular file is a hard link to an object of the store, with the image's metadata
    busybox = deployment.path / "rootfs/bin/busybox"
    st = busybox.stat()
    assert st.st_nlink >= 2 and st.st_mode & 0o777 == 0o755
    objects = {p.stat().st_ino for p in (env.system.directory / "objects").rglob("*") if p.is_file()}
    assert st.st_ino in objects
    assert (deployment.path / "rootfs/srv/data").read_bytes() == b"one" * 1000
    rows = env.system.list()
    assert [(r["Name"], r["Deployment"], r["ImageID"]) for r in rows] == [("plain", 0, deployment.image_id)]
    with pytest.raises(SystemContainerError, match="already installed"):
        env.system.install(f"{image}:v1", name="plain", pull=env.pull)


def test_second_deployment_costs_only_its_changed_layer(env):
    big = os.urandom(3 << 20)
    image = env.layout("dedup", {"v1": ({"srv/a": b"a"}, {"Cmd": ["sh"]}),
                                 "v2": ({"srv/a": b"a", "srv/big": big}, {"Cmd": ["sh"]})})
    first = env.system.install(f"{image}:v1", name="one", pull=env.pull)
    second = env.system.install(f"{image}:v2", name="two", pull=env.pull)
    assert first.stats["added"] >= 3 and first.stats["added_bytes"] > 1 << 20  # busybox, ktest, srv/a
    # the second adds only the big file (and its own srv/a, the same bytes: shared)
    assert second.stats["added"] == 1 and second.stats["added_bytes"] == len(big)
    assert (first.path / "rootfs/bin/busybox").stat().st_ino == (second.path / "rootfs/bin/busybox").stat().st_ino
    du = subprocess.run(["du", "-s", "-B1", str(first.path), str(second.path)], capture_output=True, text=True,
                        check=True).stdout.split()
    cost = int(du[2])
    assert cost <= len(big) * 1.05, (cost, len(big))


def test_templates_variables_hostfs_update_rollback_uninstall(env):
    image = env.layout("tpl", {"v1": (templated_files(), {"Cmd": ["sh"]}),
                               "v2": (templated_files(extra=b"v2"), {"Cmd": ["sh"]})})
    (env.host / "etc").mkdir()
    (env.host / "etc/other.conf").write_text("not ours")
    first = env.system.install(f"{image}:v1", name="tpl", values={"GREETING": "hi"}, pull=env.pull)
    unit = env.unit("tpl").read_text()
    assert f"Description=tpl from {image}:v1 ({first.image_id})" in unit
    assert "Environment=GREETING=hi RUN=/run" in unit  # --set beats the manifest's default
    assert "PIDFile=/run/container-tpl.pid" in unit and f"ExecStop={RUNTIME} kill tpl TERM" in unit
    assert f"WorkingDirectory={first.path}\n" in unit
    uuid = first.values["UUID"]
    assert len(uuid) == 36 and uuid in unit
    config = json.loads((first.path / "config.json").read_text())
    assert "CAP_SYS_ADMIN" in config["process"]["capabilities"]["bounding"]
    assert config["mounts"][1]["source"] == "/var/lib/tpl"
    assert config["linux"]["cgroupsPath"] == "ketch-tpl"  # added: the container stays in the unit's cgroup
    assert (first.path / "tmpfiles.conf").read_text() == "d /run/tpl 0755 - - -\n"
    assert (env.host / "etc/kstest.conf").read_bytes() == b"conf v1"
    assert (env.host / "usr/local/lib/kstest/plugin.conf").exists()
    assert sorted(first.hostfs) == ["/etc/kstest.conf", "/usr/local/lib/kstest/plugin.conf"]

    assert env.system.update("tpl", pull=env.pull) is None  # nothing changed
    second = env.system.update("tpl", image=f"{image}:v2", pull=env.pull)
    assert second.number == 1 and second.values["UUID"] == uuid and second.values["GREETING"] == "hi"
    assert os.readlink(env.unit("tpl")) == str(second.path / "tpl.service")
    assert (env.host / "etc/kstest.conf").read_bytes() == b"conf v2"
    status = env.system.status("tpl")
    assert [(d["Deployment"], d["Active"]) for d in status["Deployments"]] == [(0, False), (1, True)]
    assert status["Deployments"][1]["Digest"].startswith("sha256:")

    back = env.system.rollback("tpl")
    assert back.number == 0 and os.readlink(env.unit("tpl")) == str(first.path / "tpl.service")
    assert (env.host / "etc/kstest.conf").read_bytes() == b"conf v1"
    # a third deployment: the oldest not active goes (two are kept)
    third = env.system.update("tpl", image=f"{image}:v2", force=True, pull=env.pull)
    assert third.number == 2 and [d.number for d in env.system.deployments("tpl")] == [0, 2]

    env.system.uninstall("tpl")
    assert not os.path.lexists(env.unit("tpl"))
    assert not os.path.lexists(env.host / "etc/systemd/system/multi-user.target.wants/tpl.service")
    assert not os.path.lexists(env.host / "etc/tmpfiles.d/tpl.conf")
    assert not (env.host / "etc/kstest.conf").exists() and not (env.host / "usr/local/lib/kstest").exists()
    assert (env.host / "etc/other.conf").read_text() == "not ours"  # exactly the image's files went
    assert not (env.system.directory / "deployments/tpl").exists()
    assert not any(p.is_file() for p in (env.system.directory / "objects").rglob("*"))  # nothing links them
    with pytest.raises(NotFoundError):
        env.system.status("tpl")


def test_failures_leave_the_previous_state(env):
    good = templated_files()
    bad = dict(good)
    bad["exports/service.template"] = b"[Service]\nExecStart=$EXEC_START $MISSING\n"
    image = env.layout("fail", {"good": (good, {"Cmd": ["sh"]}), "bad": (bad, {"Cmd": ["sh"]}),
                                "badjson": ({**good, "exports/config.json.template": b"{nope"}, {"Cmd": ["sh"]})})
    with pytest.raises(InvalidInputError, match=r"\$MISSING, which has no value: give one with --set MISSING="):
        env.system.install(f"{image}:bad", name="f", pull=env.pull)
    assert not os.path.lexists(env.unit("f")) and env.system.list() == []
    assert not (env.host / "etc/kstest.conf").exists()
    first = env.system.install(f"{image}:good", name="f", pull=env.pull)
    before = sorted(str(p) for p in env.system.directory.rglob("*"))
    for tag, message in (("bad", "MISSING"), ("badjson", "does not render to JSON")):
        with pytest.raises(InvalidInputError, match=message):
            env.system.update("f", image=f"{image}:{tag}", pull=env.pull)
        assert os.readlink(env.unit("f")) == str(first.path / "f.service")
        assert sorted(str(p) for p in env.system.directory.rglob("*")) == before
    # a host file that is not the install's is never replaced
    (env.host / "etc/kstest.conf").unlink()
    (env.host / "etc/kstest.conf").write_text("the admin's")
    other = env.layout("other", {"v1": (good, {"Cmd": ["sh"]})})
    with pytest.raises(SystemContainerError, match="exists on the host and is not this install's"):
        env.system.install(f"{other}:v1", name="g", pull=env.pull)
    assert (env.host / "etc/kstest.conf").read_text() == "the admin's" and not os.path.lexists(env.unit("g"))
    with pytest.raises(InvalidInputError, match="ketch sets"):
        from ketch.system.templates import parse_sets
        parse_sets(["NAME=x"])
    linked = env.layout("linked", {"v1": ({}, {"Cmd": ["sh"]})})
    layout_dir = Path(linked[4:])
    # an image whose /exports is a link to the host's /etc: refused, nothing read through it
    sysimages.write(layout_dir, {"v1": ({"exports": ("/etc", "symlink")}, {"Cmd": ["sh"]})})
    with pytest.raises(InvalidInputError, match="/exports is a symbolic link"):
        env.system.install(f"{linked}:v1", name="linked", pull=env.pull)
    assert not os.path.lexists(env.unit("linked"))
    with pytest.raises(InvalidInputError, match="invalid system container name"):
        env.system.install(f"{image}:good", name="../x", pull=env.pull)


def test_an_install_killed_half_way_is_cleaned_up(env):
    image = env.layout("kill", {"v1": ({"srv/big": os.urandom(64 << 20)}, {"Cmd": ["sh"]})})
    env.pull(f"{image}:v1")  # (so the kill lands in the checkout, not the pull)
    args = [str(BIN / "ketch"), "--root", str(env.base / "store"), "--runroot", str(env.base / "run"), "system",
            "install", "--host-root", str(env.host), "--name", "k", f"{image}:v1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = env.system.directory / "deployments/k"
    deadline = time.monotonic() + 60
    while not (base.is_dir() and any(e.name.startswith(".new-") and (e / "rootfs").exists() for e in base.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "the install ended before it could be killed"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.lexists(env.unit("k")) and env.system.list() == []
    image_id = env.pull(f"{image}:v1")
    assert env.store.mount_record(f"image:{image_id}")["count"] == 1  # the killed install's
    deployment = env.system.install(f"{image}:v1", name="k", pull=env.pull)
    record = env.store.mount_record(f"image:{image_id}")
    assert record is None or record["count"] == 0  # the recovery dropped it
    assert [e.name for e in base.iterdir()] == ["0"] and deployment.number == 0
    assert (deployment.path / "rootfs/srv/big").stat().st_size == 64 << 20


def test_the_runtime_runs_a_deployment_as_its_unit_would(env):
    """What systemd's ExecStart does: the runtime in the foreground on the deployment, with
    NOTIFY_SOCKET passed through, the container in a cgroup under the runtime's own."""
    image = env.layout("notify", {"v1": ({}, {"Cmd": ["sh", "-c", "ktest notify READY=1; touch /x 2>/dev/null && "
                                                                    "echo writable; echo ok > /var/lib/ntest/state; "
                                                                    "grep -E 'name=systemd|^0::' /proc/self/cgroup"]})})
    deployment = env.system.install(f"{image}:v1", name="ntest", pull=env.pull,
                                    values={"STATE_DIRECTORY": str(env.base / "state")})
    (env.base / "state/ntest").mkdir(parents=True, exist_ok=True)
    unit = env.unit("ntest").read_text()
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    exec_start = exec_start.replace("--pid-file /run/container-ntest.pid", f"--pid-file {env.base}/pid")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(env.base / "notify.sock"))
    notify.settimeout(30)
    try:
        result = subprocess.run(exec_start.split(), capture_output=True, text=True, timeout=60,
                                env={**os.environ, "NOTIFY_SOCKET": str(env.base / "notify.sock")})
        assert result.returncode == 0, result.stderr
        assert notify.recv(4096) == b"READY=1"
    finally:
        notify.close()
        subprocess.run([RUNTIME, "delete", "--force", "ntest"], capture_output=True)
    assert "writable" not in result.stdout  # the root is read-only
    assert (env.base / "state/ntest/state").read_text() == "ok\n"
    own = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()}
    for line in result.stdout.split():
        key, path = line.split(":", 2)[1:]
        assert path == own[key].rstrip("/") + "/ketch-ntest", (line, own)
    assert deployment.path.is_dir()


def test_the_runtime_relaying_notifications_still_forwards_stop_signals(env):
    """systemd stops a unit with SIGTERM to the runtime: with the notify relay's thread running,
    the signal must still reach the container at once (it once waited for the stop timeout)."""
    image = env.layout("term", {"v1": ({}, {"Cmd": ["sh", "-c", "trap 'echo stopped; exit 0' TERM; "
                                                                 "ktest notify READY=1; sleep 1000 & wait"]})})
    deployment = env.system.install(f"{image}:v1", name="term", pull=env.pull,
                                    values={"STATE_DIRECTORY": str(env.base / "state")})
    (env.base / "state/term").mkdir(parents=True, exist_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(env.base / "notify.sock"))
    notify.settimeout(30)
    for _attempt in range(3):  # (which thread the kernel picks is not fixed: try a few times)
        proc = subprocess.Popen([RUNTIME, "run", "--bundle", str(deployment.path), "term"], stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "NOTIFY_SOCKET": str(env.base / "notify.sock")})
        try:
            assert notify.recv(4096) == b"READY=1"
            proc.send_signal(signal.SIGTERM)  # what systemd sends a unit's main process to stop it
            proc.send_signal(signal.SIGCONT)
            out, _ = proc.communicate(timeout=10)
            assert proc.returncode == 0 and out == "stopped\n"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            subprocess.run([RUNTIME, "delete", "--force", "term"], capture_output=True)
    notify.close()
