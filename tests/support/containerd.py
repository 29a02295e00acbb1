"""Debian's containerd (1.6, with its CRI plugin and runc) started by a test on a root, state
directory and socket of its own, with a CNI network of its own: the CRI peer of ketch's server.

Its images come from a ketch store (``ketch save -m`` then ``ctr images import``): busybox, and a
pause image made from busybox (containerd's sandboxes need one; none can be pulled offline)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

KETCH = str(Path(sys.executable).parent / "ketch")
PAUSE_IMAGE = "localhost/pause:ketch-test"


class Containerd:
    def __init__(self, base: Path, subnet: str, bridge: str, plain_http_registries: tuple[str, ...] = ()) -> None:
        self.base = base
        self.plain_http_registries = plain_http_registries  # 127.0.0.1:PORT registries it pulls from over HTTP
        self.socket = base / "containerd.sock"
        self.endpoint = f"unix://{self.socket}"
        self.subnet = subnet
        self.bridge = bridge
        self.process: subprocess.Popen | None = None

    def write_config(self) -> None:
        (self.base / "net.d").mkdir(parents=True, exist_ok=True)
        for host in self.plain_http_registries:  # containerd's hosts directory: the registry speaks HTTP
            (self.base / "certs.d" / host).mkdir(parents=True, exist_ok=True)
            (self.base / "certs.d" / host / "hosts.toml").write_text(
                f'server = "http://{host}"\n[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n')
        conflist = {"cniVersion": "1.0.0", "name": "containerd-test", "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{self.subnet}.0/24"}]],
                      "dataDir": str(self.base / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        (self.base / "net.d" / "10-test.conflist").write_text(json.dumps(conflist))
        (self.base / "config.toml").write_text(f"""version = 2
root = "{self.base}/root"
state = "{self.base}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.base}/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{self.base}/certs.d"
""")

    def start(self) -> None:
        self.write_config()
        self.log = open(self.base / "containerd.log", "ab")
        self.process = subprocess.Popen(["containerd", "--config", str(self.base / "config.toml")],
                                        stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start: {(self.base / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def import_images(self, ketch_root: Path, ketch_runroot: Path, image: str) -> None:
        """``image`` and a pause image, from a ketch store into containerd's k8s.io namespace."""
        ketch = [KETCH, "--root", str(ketch_root), "--runroot", str(ketch_runroot)]
        name = f"ketch-pause-maker-{os.getpid()}"
        subprocess.run([*ketch, "create", "--name", name, image, "true"], check=True, capture_output=True)
        try:
            subprocess.run([*ketch, "commit", "-q", "--change", 'ENTRYPOINT ["/bin/sleep","2147483647"]',
                            "--change", "CMD []", name, PAUSE_IMAGE], check=True, capture_output=True)
        finally:
            subprocess.run([*ketch, "rm", "-f", name], capture_output=True)
        archive = self.base / "images.tar"
        subprocess.run([*ketch, "save", "-m", "-o", str(archive), image, PAUSE_IMAGE], check=True, capture_output=True)
        subprocess.run(["ctr", "-a", str(self.socket), "-n", "k8s.io", "images", "import", str(archive)],
                       check=True, capture_output=True)
        archive.unlink()
        subprocess.run([*ketch, "rmi", PAUSE_IMAGE], capture_output=True)

    def stop(self) -> None:
        """containerd stopped; what it left mounted under its directories unmounted, its bridge gone."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        prefix = str(self.base) + "/"
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
