"""Benchmark: system containers in a booted systemd (a Debian root under ``systemd-nspawn -b``,
with podman from Debian installed in it).

1. From ``systemctl start`` to READY (a ``Type=notify`` unit's start returns when READY=1 is
   in) of a ketch system container, against a unit that runs ``podman run -d
   --sdnotify=container`` of the same image (podman's image already in its store). Both
   containers notify READY at once; the units are started and stopped in turns.
2. Disk: a second deployment of an image that differs from the first in one small layer
   (busybox plus 1 MiB; Debian minbase plus 1 MiB): what it adds to the disk (``du`` counts a
   hard-linked file once), against the size of that layer.

Run:  .venv/bin/python -m benchmarks.bench_system [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import systemd_root
from tests.support.helpers import unmount_under
from tests.support.registry import free_port, run_registry, skopeo_copy
from tests.system import sysimages

KETCH = str(Path(sys.executable).parent / "ketch")
PACKAGES = [*systemd_root.PACKAGES, "podman", "crun", "runc", "conmon", "catatonit", "containernetworking-plugins"]
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
default_capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP",
                        "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]
# systemd-nspawn's seccomp filter refuses keyctl: no session keyring per container (crun fails otherwise)
keyring = false
# the v2 tree of a hybrid host has no pids controller
pids_limit = 0
[engine]
# crun raises RLIMIT_MEMLOCK to load its cgroup v2 device filter, which needs CAP_SYS_RESOURCE (not here)
runtime = "runc"
"""
PODMAN_UNIT = """[Unit]
Description=the same image under podman
[Service]
Type=notify
NotifyAccess=all
Environment=CONTAINERS_CONF=/etc/containers/bench.conf
ExecStart=/usr/bin/podman run --rm --replace --name pbench --network host --sdnotify=container -d {image}
ExecStop=/usr/bin/podman rm -f -t 0 pbench
KillMode=mixed
Delegate=yes
"""
DRIVER = """set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export CONTAINERS_CONF=/etc/containers/bench.conf
# podman asks for a memlock limit above systemd-nspawn's hard one: ask for that one
hard=$(ulimit -Hl); [ "$hard" = unlimited ] && hard=-1 || hard=$((hard * 1024))
sed -i "s/^default_ulimits = \\[/default_ulimits = [\\"memlock=$hard:$hard\\", /" $CONTAINERS_CONF
K="{ketch}"
$K system install -q {image} --name kbench >/dev/null || echo "install failed"
podman pull -q {image} >/dev/null || echo "podman pull failed"
systemctl daemon-reload
ms() {{ echo $(( $(date +%s%N) / 1000000 )); }}
for i in $(seq {rounds}); do
  for unit in kbench pbench; do
    t0=$(ms); systemctl start $unit.service; rc=$?; t1=$(ms)
    echo "start $unit $rc $((t1 - t0))"
    systemctl stop $unit.service
    systemctl reset-failed $unit.service 2>/dev/null  # (systemd's start rate limit: 5 in 10 s)
  done
done
echo done
"""


def disk_cost(base: str, tmp: Path) -> tuple[int, int, int]:
    """(bytes the second deployment adds, bytes of its extra layer's file, directories in it)."""
    from ketch.containers.images import pull
    from ketch.image.context import SystemContext
    from ketch.image.policy import Policy
    from ketch.storage.store import Store
    from ketch.system import SystemContainers

    extra = os.urandom(1 << 20)
    layout = sysimages.write(tmp / f"layout-{base}", {"one": ({}, {"Cmd": ["sh"]}),
                                                      "two": ({"srv/extra": extra}, {"Cmd": ["sh"]})}, base=base)
    store = Store(str(tmp / f"store-{base}"), str(tmp / f"run-{base}"))
    system = SystemContainers(store, host_root=tmp / f"host-{base}")
    (tmp / f"host-{base}").mkdir()

    def puller(name):
        return pull(store, name, SystemContext(), Policy.insecure_accept_anything())

    try:
        first = system.install(f"oci:{layout}:one", name="first", pull=puller)
        second = system.install(f"oci:{layout}:two", name="second", pull=puller)
        out = subprocess.run(["du", "-s", "-B1", str(first.path / "rootfs"), str(second.path / "rootfs")],
                             capture_output=True, text=True, check=True).stdout.split()
        dirs = sum(1 for _ in (second.path / "rootfs").rglob("*") if _.is_dir() and not _.is_symlink())
        return int(out[2]), len(extra), dirs
    finally:
        for image, _ in store.mounted_images():
            store.unmount_image(image.id, force=True)
        unmount_under(tmp / f"store-{base}")


def _xfs(tmp: Path) -> Path | None:
    """An XFS file system on a loop device (XFS keeps small directories in their inode: a
    deployment's directories cost no blocks there, unlike ext4's 4 KiB each)."""
    if shutil.which("mkfs.xfs") is None:
        return None
    image, mount = tmp / "xfs.img", tmp / "xfs"
    with open(image, "wb") as f:
        f.truncate(2 << 30)
    subprocess.run(["mkfs.xfs", "-q", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    return mount


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ketch-bench-system-"))
    try:
        print("disk: a second deployment differing in one 1 MiB layer")
        for fs, where in (("ext4", tmp / "ext4"), ("xfs", _xfs(tmp))):
            if where is None:
                print(f"  ({fs}: mkfs.{fs} is not installed)")
                continue
            where.mkdir(exist_ok=True)
            try:
                for base in ("busybox-ktest", "debian"):
                    cost, layer, dirs = disk_cost(base, where)
                    print(f"  {fs:5} {base:14} adds {cost / 1024:8.0f} KiB for a {layer // 1024} KiB layer: "
                          f"{100 * (cost - layer) / layer:+.1f}% ({dirs} directories of its own)")
            finally:
                if fs == "xfs":
                    subprocess.run(["umount", "-l", str(where)], capture_output=True)
        source = systemd_root.pristine("systemd-root-podman", PACKAGES)
        root = systemd_root.BootedRoot(tmp / "root", source)
        try:
            port = free_port()
            with run_registry(workdir=tmp) as reg:
                layout = sysimages.write(tmp / "layout-bench", {"latest": (
                    {}, {"Cmd": ["sh", "-c", "trap 'exit 0' TERM; ktest notify READY=1; sleep 1000 & wait"],
                         "Labels": {"io.ketch.system.notify": "true"}})})
                skopeo_copy(f"oci:{layout}:latest", reg.url("bench/ready"))
                image = f"{reg.host}/bench/ready:latest"
                (root.path / "etc/containers").mkdir(exist_ok=True)
                (root.path / "etc/containers/bench.conf").write_text(CONTAINERS_CONF)
                (root.path / "etc/containers/registries.conf").write_text(
                    f'[[registry]]\nlocation = "{reg.host}"\ninsecure = true\n')
                (root.path / "etc/systemd/system/pbench.service").write_text(PODMAN_UNIT.format(image=image))
                # (the cgroup v2 tree alone: podman's runtimes cannot start under nspawn's read-only v1 controllers)
                output = root.boot(DRIVER.format(ketch=KETCH, image=image, rounds=args.rounds), timeout=900,
                                   unified=True, syscalls="bpf")
            del port
        finally:
            root.remove()
        times: dict[str, list[int]] = {"kbench": [], "pbench": []}
        for line in output.splitlines():
            parts = line.split()
            if parts[:1] == ["start"]:
                if parts[2] != "0":
                    print(f"  {parts[1]} failed to start: {line}")
                times[parts[1]].append(int(parts[3]))
        if "failed" in output or not all(len(t) == args.rounds for t in times.values()):
            print(output)
            return 1
        k, p = statistics.median(times["kbench"]), statistics.median(times["pbench"])
        print(f"systemctl start to READY, median of {args.rounds} (a booted systemd, the units started in turns)")
        print(f"  ketch system container (ketch-runtime run): {k:7.1f} ms")
        print(f"  podman run -d --sdnotify=container:         {p:7.1f} ms")
        print(f"  ratio ketch/podman: {k / p:.2f}")
        print(json.dumps({"start_ms": {"ketch": k, "podman": p}, "ratio": round(k / p, 3)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
