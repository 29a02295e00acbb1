"""System containers under a real systemd: a Debian root booted with systemd-nspawn, ketch
inside it, three stand-in system containers from a registry on 127.0.0.1 (a key-value store, a
network fabric that needs it, an engine that needs the fabric), each a busybox server that
notifies READY. They are installed on one boot; on the next, systemd alone must start them in
order, and update, rollback and uninstall must do what they say."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import systemd_root
from tests.support.registry import free_port, run_registry, skopeo_copy
from tests.system import sysimages

pytestmark = [pytest.mark.peer,  # (skopeo puts the images in the registry)
              pytest.mark.skipif(not Path("/usr/bin/systemd-nspawn").exists(),
                                 reason="systemd-nspawn (systemd-container) is not installed")]

KETCH = str(Path(sys.executable).parent / "ketch")


def server(name: str, reply: str, port: int, needs: tuple[str, int] | None = None) -> list[str]:
    """A busybox server answering ``reply`` on ``port``, READY once it answers; with ``needs``,
    it first checks that server answers (and fails if not: the order would be wrong)."""
    check = ""
    if needs:
        check = f"nc 127.0.0.1 {needs[1]} </dev/null | grep -q {needs[0]} || {{ echo {name}: {needs[0]} is not up; " \
                f"exit 1; }}; "
    return ["sh", "-c", f"trap 'exit 0' TERM; {check}nc -ll -p {port} -e echo {reply} & "
                        f"until nc 127.0.0.1 {port} </dev/null | grep -q {reply}; do sleep 0.05; done; "
                        f"ktest notify READY=1; wait"]


ENGINE_SERVICE = """[Unit]
Description=the engine ($NAME), from a template
Requires=fabric.service
After=fabric.service

[Service]
Type=notify
NotifyAccess=all
ExecStartPre=-$EXEC_STARTPRE
ExecStart=$EXEC_START
ExecStopPost=-$EXEC_STOPPOST
WorkingDirectory=$DESTDIR
KillMode=mixed
Delegate=yes

[Install]
WantedBy=multi-user.target
"""


def engine_config(args: list[str]) -> bytes:
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": args,
                    "env": ["PATH=/bin:/usr/bin", "MODE=$MODE"],
                    "capabilities": {"bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]}},
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}]},
    }
    return json.dumps(config, indent=1).encode()


DRIVER_INSTALL = """set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
K="{ketch}"
for name in kv fabric engine; do
  $K system install --tls-verify=false -q {registry}/sys/$name:latest || echo "install $name failed"
done
$K system list --format json > /ketch-test/list.json
for unit in kv fabric engine; do
  systemd-analyze verify /etc/systemd/system/$unit.service > /ketch-test/verify-$unit.txt 2>&1
  echo "verify $unit $?"
done
systemctl is-enabled kv fabric engine
"""

DRIVER_CHECK = """set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
K="{ketch}"
serves() {{ timeout 5 bash -c "cat </dev/tcp/127.0.0.1/$1" 2>/dev/null; }}
wait_reply() {{
  i=0; while [ "$(serves $1)" != "$2" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  echo "serves $1 $(serves $1)"
}}
for unit in kv fabric engine; do
  i=0; while [ "$(systemctl is-active $unit)" != active ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  echo "boot $unit $(systemctl is-active $unit)"
  systemctl is-active -q $unit || journalctl -b -u $unit --no-pager | tail -15
  began=$(systemctl show $unit -p InactiveExitTimestampMonotonic --value)
  echo "times $unit $began $(systemctl show $unit -p ActiveEnterTimestampMonotonic --value)"
done
echo "t $(cut -d' ' -f1 /proc/uptime) booted"
wait_reply {kv} kv1
wait_reply {fabric} fabric
wait_reply {engine} engine
echo "engine-conf $(cat /etc/engine.conf)"
echo "cgroup $(cat /sys/fs/cgroup/systemd/system.slice/kv.service/ketch-kv/cgroup.procs 2>/dev/null | wc -l)"
echo "t $(cut -d' ' -f1 /proc/uptime) update"
$K system update --tls-verify=false -q kv && echo "update ok"
echo "t $(cut -d' ' -f1 /proc/uptime) updated"
wait_reply {kv} kv2
echo "after-update $(readlink /etc/systemd/system/kv.service)"
$K system rollback kv && echo "rollback ok"
echo "t $(cut -d' ' -f1 /proc/uptime) rolled back"
wait_reply {kv} kv1
echo "after-rollback $(readlink /etc/systemd/system/kv.service)"
$K system status kv --format json > /ketch-test/status.json
$K system uninstall engine && echo "uninstall ok"
echo "t $(cut -d' ' -f1 /proc/uptime) uninstalled"
echo "engine-unit $(systemctl is-active engine) $(test -e /etc/systemd/system/engine.service && echo present || echo gone)"
echo "engine-conf-left $(test -e /etc/engine.conf && echo present || echo gone)"
echo "engine-deployments $(ls /var/lib/ketch/system/deployments/ | tr '\\n' ' ')"
echo "engine-serves $(serves {engine})"
wait_reply {kv} kv1
echo "done"
"""


def parse(output: str, key: str) -> list[str]:
    return [line.split(" ", 1)[1] if " " in line else "" for line in output.splitlines()
            if line.split(" ", 1)[0] == key]


@pytest.fixture
def booted():
    source = systemd_root.pristine()
    base = Path(tempfile.mkdtemp(prefix="ketch-boot-"))
    root = systemd_root.BootedRoot(base / "root", source)
    try:
        yield root
    finally:
        root.remove()
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_system_containers_start_in_order_at_boot_and_update_rollback_uninstall(booted, tmp_path):
    ports = {name: free_port() for name in ("kv", "fabric", "engine")}
    notify = {"io.ketch.system.notify": "true"}
    layouts = {
        "kv": {"latest": ({"srv/version": b"1"}, {"Cmd": server("kv", "kv1", ports["kv"]), "Labels": notify}),
               "v2": ({"srv/version": b"2"}, {"Cmd": server("kv", "kv2", ports["kv"]), "Labels": notify})},
        "fabric": {"latest": ({"srv/fabric": b"f"}, {
            "Cmd": server("fabric", "fabric", ports["fabric"], ("kv", ports["kv"])),
            "Labels": {**notify, "io.ketch.system.requires": "kv", "io.ketch.system.after": "kv"}})},
        "engine": {"latest": ({"exports/service.template": ENGINE_SERVICE.encode(),
                               "exports/config.json.template": engine_config(
                                   server("engine", "engine", ports["engine"], ("fabric", ports["fabric"]))),
                               "exports/manifest.json": b'{"defaultValues": {"MODE": "fast"}}',
                               "exports/hostfs/etc/engine.conf": b"engine-config"}, {"Cmd": ["sh"]})},
    }
    with run_registry(workdir=tmp_path) as reg:
        for name, tags in layouts.items():
            layout = sysimages.write(tmp_path / f"layout-{name}", tags)
            skopeo_copy(f"oci:{layout}:latest", reg.url(f"sys/{name}"))
        values = dict(ketch=KETCH, registry=reg.host, **ports)
        first = booted.boot(DRIVER_INSTALL.format(**values))
        assert "failed" not in first, first
        assert parse(first, "verify") == ["kv 0", "fabric 0", "engine 0"], first
        listed = json.loads((booted.path / "ketch-test/list.json").read_text())
        assert sorted(row["Name"] for row in listed) == ["engine", "fabric", "kv"]
        # the next image of kv, for the update on the next boot
        skopeo_copy(f"oci:{tmp_path / 'layout-kv'}:v2", reg.url("sys/kv"))

        second = booted.boot(DRIVER_CHECK.format(**values))
    assert parse(second, "boot") == ["kv active", "fabric active", "engine active"], second
    times = {line.split()[0]: [int(t) for t in line.split()[1:]] for line in parse(second, "times")}
    # each started only once the one it needs was READY (ActiveEnter of a notify unit)
    assert times["kv"][1] <= times["fabric"][0] and times["fabric"][1] <= times["engine"][0], times
    assert parse(second, "serves") == [f"{ports['kv']} kv1", f"{ports['fabric']} fabric", f"{ports['engine']} engine",
                                       f"{ports['kv']} kv2", f"{ports['kv']} kv1", f"{ports['kv']} kv1"], second
    assert parse(second, "engine-conf") == ["engine-config"]
    assert int(parse(second, "cgroup")[0]) >= 1, second  # the container's processes, in the unit's cgroup
    assert "update ok" in second and "rollback ok" in second and "uninstall ok" in second, second
    assert parse(second, "after-update")[0].endswith("/deployments/kv/1/kv.service")
    assert parse(second, "after-rollback")[0].endswith("/deployments/kv/0/kv.service")
    status = json.loads((booted.path / "ketch-test/status.json").read_text())
    assert [(d["Deployment"], d["Active"]) for d in status["Deployments"]] == [(0, True), (1, False)]
    assert status["UnitState"] == "active"
    assert status["Deployments"][0]["Digest"] != status["Deployments"][1]["Digest"]
    assert parse(second, "engine-unit") == ["inactive gone"]
    assert parse(second, "engine-conf-left") == ["gone"]
    assert parse(second, "engine-deployments") == ["fabric kv "]
    assert parse(second, "engine-serves") == [""]
    assert second.rstrip().endswith("done"), second


REGISTRIES_CONF = """unqualified-search-registries = []
[[registry]]
location = "{registry}"
insecure = true
"""

DRIVER_UPDATES = """set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
K="{ketch}"
R={registry}
serves() {{ timeout 5 bash -c "cat </dev/tcp/127.0.0.1/$1" 2>/dev/null; }}
wait_reply() {{
  i=0; while [ "$(serves $1)" != "$2" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
  echo "serves $3 $(serves $1)"
}}
retag() {{ $K image copy -q docker://$R/sys/$1 docker://$R/sys/$2 || echo "copy $1 failed"; }}
retag web:v1 web:latest
retag sysweb:v1 sysweb:latest
systemctl daemon-reload
ls /run/systemd/generator/ > /ketch-test/generated.txt
systemctl start web.service; echo "quadlet-start $? $(systemctl is-active web.service)"
systemctl is-active web.service >/dev/null || journalctl -b -u web.service --no-pager | tail -20
wait_reply {web} web1 quadlet
echo "volume $(systemctl is-active data-volume.service) $($K volume ls --format '{{{{.Name}}}}' | tr '\\n' ' ')"
$K system install -q $R/sys/sysweb:latest && systemctl start sysweb.service
wait_reply {sysweb} sysweb1 system
$K auto-update --dry-run --format '{{{{.Unit}}}} {{{{.Updated}}}}' | sed 's/^/dry1 /'
retag web:v2 web:latest
retag sysweb:v2 sysweb:latest
$K auto-update --dry-run --format '{{{{.Unit}}}} {{{{.Updated}}}}' | sed 's/^/dry2 /'
$K auto-update --format '{{{{.Unit}}}} {{{{.Updated}}}}' | sed 's/^/update /'
wait_reply {web} web2 quadlet
wait_reply {sysweb} sysweb2 system
retag web:bad web:latest
retag sysweb:bad sysweb:latest
$K auto-update --format '{{{{.Unit}}}} {{{{.Updated}}}}' | sed 's/^/rollback /'
echo "after-rollback $(systemctl is-active web.service) $(systemctl is-active sysweb.service)"
wait_reply {web} web2 quadlet
wait_reply {sysweb} sysweb2 system
$K system status sysweb --format json > /ketch-test/sysweb.json
# generate systemd --new: a unit from a container's command, that makes its own container
$K create --name gen --network host $R/sys/web:v1 >/dev/null
$K generate systemd --new --name --files gen >/dev/null && mv container-gen.service /etc/systemd/system/
$K rm gen >/dev/null
systemctl stop web.service
systemctl daemon-reload; systemctl start container-gen.service; echo "generated $(systemctl is-active container-gen.service)"
wait_reply {web} web1 generated
systemctl stop container-gen.service
echo "generated-stopped $(systemctl is-active container-gen.service) $($K ps -a --format '{{{{.Names}}}}' | grep -c gen)"
systemctl stop sysweb.service
echo "done"
"""

WEB_CONTAINER = """[Unit]
Description=a web server from Quadlet

[Container]
Image={registry}/sys/web:latest
AutoUpdate=registry
Network=host
Notify=true
Volume=data.volume:/data
"""


def test_quadlet_units_and_auto_update_with_rollback(booted, tmp_path):
    ports = {"web": free_port(), "sysweb": free_port()}
    auto = {"io.containers.autoupdate": "registry"}

    def image(name, reply, port, good=True):
        cmd = server(name, reply, port) if good else ["sh", "-c", "echo broken; exit 3"]
        return ({"srv/reply": reply.encode()}, {"Cmd": cmd, "Labels": {**auto, "io.ketch.system.notify": "true"}})

    with run_registry(workdir=tmp_path) as reg:
        for name in ("web", "sysweb"):
            tags = {"v1": image(name, f"{name}1", ports[name]), "v2": image(name, f"{name}2", ports[name]),
                    "bad": image(name, "bad", ports[name], good=False)}
            layout = sysimages.write(tmp_path / f"layout-{name}", tags)
            for tag in tags:
                skopeo_copy(f"oci:{layout}:{tag}", reg.url(f"sys/{name}", tag))
        values = dict(ketch=KETCH, registry=reg.host, **ports)
        (booted.path / "etc/containers/registries.conf").write_text(REGISTRIES_CONF.format(**values))
        units = booted.path / "etc/containers/systemd"
        units.mkdir(parents=True)
        (units / "web.container").write_text(WEB_CONTAINER.format(**values))
        (units / "data.volume").write_text("[Volume]\nLabel=app=web\n")
        generators = booted.path / "etc/systemd/system-generators"
        generators.mkdir(parents=True)
        (generators / "ketch-system-generator").symlink_to(Path(KETCH).parent / "ketch-quadlet")
        output = booted.boot(DRIVER_UPDATES.format(**values))
    assert "failed" not in output, output
    generated = (booted.path / "ketch-test/generated.txt").read_text().split()
    assert "web.service" in generated and "data-volume.service" in generated, generated
    assert parse(output, "quadlet-start") == ["0 active"], output
    assert parse(output, "volume") == ["active systemd-data "], output
    assert parse(output, "dry1") == ["web.service false", "sysweb.service false"], output
    assert parse(output, "dry2") == ["web.service pending", "sysweb.service pending"], output
    assert parse(output, "update") == ["web.service true", "sysweb.service true"], output
    assert parse(output, "rollback") == ["web.service rolled back", "sysweb.service rolled back"], output
    assert parse(output, "after-rollback") == ["active active"], output
    assert parse(output, "serves") == ["quadlet web1", "system sysweb1", "quadlet web2", "system sysweb2",
                                       "quadlet web2", "system sysweb2", "generated web1"], output
    status = json.loads((booted.path / "ketch-test/sysweb.json").read_text())
    # v2 (deployment 1) active again; the failed one (2) kept; v1 (0) gone
    assert [(d["Deployment"], d["Active"]) for d in status["Deployments"]] == [(1, True), (2, False)], status
    assert parse(output, "generated") == ["active"], output
    assert parse(output, "generated-stopped") == ["inactive 0"], output
    assert output.rstrip().endswith("done"), output
