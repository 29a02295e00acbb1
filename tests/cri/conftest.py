"""The real CRI server (``ketch cri serve``, a process of its own) on a store of the tests' own,
with a CNI network of its own (bridge, host-local, portmap, loopback from Debian's
containernetworking-plugins), and clients over grpcio. Every test leaves no pod, container,
pinned namespace, mount or address behind; the bridge is removed at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from tests.support import cgroups, images

KETCH = str(Path(sys.executable).parent / "ketch")
IMAGE = "docker.io/library/busybox:latest"
CNI_BIN = "/usr/lib/cni"


def _subnet_octet() -> int:
    return 64 + os.getpid() % 128  # 10.235.X.0/24: apart from podman's and ketch's defaults


class CRIServer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.runroot = base / "run"
        self.socket = base / "cri.sock"
        self.endpoint = f"unix://{self.socket}"
        self.conf_dir = base / "net.d"
        self.bin_dir = base / "cni-bin"
        self.log_dir = base / "logs"
        self.registries_conf = base / "registries.conf"  # the tests add their registries (insecure: HTTP)
        self.bridge = f"kcri{os.getpid() % 100000}"
        self.subnet = f"10.235.{_subnet_octet()}"
        self.process: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self.extra_args: list[str] = []
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.write_conflist()

    def write_conflist(self, extra_plugins: list[dict] | None = None) -> None:
        conflist = {"cniVersion": "1.0.0", "name": "ketch-cri-test", "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{self.subnet}.0/24"}]],
                      "dataDir": str(self.base / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            *(extra_plugins or []),
        ]}
        (self.conf_dir / "10-test.conflist").write_text(json.dumps(conflist))

    def args(self, *extra: str) -> list[str]:
        return [KETCH, "--root", str(self.root), "--runroot", str(self.runroot), "cri", "serve",
                "--listen", self.endpoint, "--cni-conf-dir", str(self.conf_dir), "--cni-bin-dir", str(self.bin_dir),
                "--cni-bin-dir", CNI_BIN, "--log-dir", str(self.log_dir), *extra]

    def start(self) -> None:
        if self.socket.exists():
            self.socket.unlink()
        self.log = open(self.base / "server.log", "ab")
        env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=str(self.registries_conf))
        self.process = subprocess.Popen(self.args(*self.extra_args), stdout=self.log, stderr=self.log, start_new_session=True,
                                        env=env)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the CRI server did not start: {(self.base / 'server.log').read_text()}")
            time.sleep(0.02)
        self.connect()

    def connect(self) -> None:
        from ketch.cri import api_pb2_grpc as rpc

        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(self.endpoint)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.runtime = rpc.RuntimeServiceStub(self.channel)
        self.images = rpc.ImageServiceStub(self.channel)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def remove_everything(self) -> None:
        from ketch.cri import api_pb2 as api

        for container in self.runtime.ListContainers(api.ListContainersRequest()).containers:
            self.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container.id))
        for pod in self.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items:
            self.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod.id))
            self.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod.id))

    def load_busybox(self) -> None:
        """The busybox image in the store (again, after a test removed it)."""
        from ketch import CopyOptions, SystemContext, copy_image
        from ketch.image.policy import Policy

        ctx = SystemContext(storage_root=str(self.root), storage_runroot=str(self.runroot))
        copy_image(f"oci:{images.ensure('busybox')}:latest", f"ketch-storage:{IMAGE}",
                   CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything()))

    def trust_registry(self, host: str) -> None:
        text = self.registries_conf.read_text()
        if host not in text:
            self.registries_conf.write_text(text + f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')

    def pinned_mounts(self) -> list[str]:
        prefix = str(self.runroot) + "/"
        with open("/proc/self/mountinfo") as f:
            return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@pytest.fixture(scope="session")
def cri_session():
    if not os.path.exists(f"{CNI_BIN}/bridge"):
        pytest.fail("Debian's containernetworking-plugins is missing (scripts/install.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="ketch-cri-"))
    base.chmod(0o755)
    server = CRIServer(base)
    server.load_busybox()
    server.start()
    try:
        yield server
    finally:
        try:
            if server.process is None:
                server.start()
            server.remove_everything()
        finally:
            server.stop()
            subprocess.run(["ip", "link", "del", server.bridge], capture_output=True)
            subprocess.run(["umount", "-R", "-l", str(server.root / "mounts")], capture_output=True)
            for path in server.pinned_mounts():
                subprocess.run(["umount", "-l", path], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)
            for root in cgroups.roots():
                for name in ("ketch",):
                    try:
                        os.rmdir(f"{root}/{name}")
                    except OSError:
                        pass


@pytest.fixture
def cri(cri_session):
    if cri_session.process is None or cri_session.process.poll() is not None:
        cri_session.start()
    yield cri_session
    if cri_session.process is None or cri_session.process.poll() is not None:
        cri_session.start()  # a test killed it: the next one gets a server
    cri_session.remove_everything()
    # nothing left: pods' pinned namespaces, containers' mounts, host-local addresses
    assert cri_session.pinned_mounts() == [], "mounts left under the run directory"
    ipam = cri_session.base / "ipam" / "ketch-cri-test"
    held = [p.name for p in ipam.iterdir() if p.name[0].isdigit()] if ipam.exists() else []
    assert held == [], f"addresses left: {held}"
