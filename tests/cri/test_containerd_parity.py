"""The same CRI requests to ketch's server and to containerd's CRI plugin (Debian's containerd 1.6
with runc), with the same CNI plugins: what a kubelet would see must agree (states, exit codes,
reasons, log lines, the pod's address answering, security-context effects inside the container,
the statuses of requests naming what does not exist)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import grpc
import pytest

import ketch.cri.api_pb2 as api
import ketch.cri.api_pb2_grpc as rpc
from tests.cri.helpers import (
    SERVE_PONG,
    container_config,
    pod_config,
    tcp_fetch,
    wait_for,
)
from tests.support.containerd import Containerd

pytestmark = pytest.mark.peer


class Peer:
    """One CRI endpoint, with the calls a kubelet makes."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.runtime = rpc.RuntimeServiceStub(self.channel)
        self.images = rpc.ImageServiceStub(self.channel)

    def run_pod(self, config) -> str:
        return self.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config), timeout=120).pod_sandbox_id

    def create(self, pod_id, pod, config) -> str:
        return self.runtime.CreateContainer(api.CreateContainerRequest(pod_sandbox_id=pod_id, config=config,
                                                                       sandbox_config=pod), timeout=120).container_id

    def start(self, container_id) -> None:
        self.runtime.StartContainer(api.StartContainerRequest(container_id=container_id), timeout=120)

    def status(self, container_id) -> api.ContainerStatus:
        return self.runtime.ContainerStatus(api.ContainerStatusRequest(container_id=container_id)).status

    def exec(self, container_id, *command) -> api.ExecSyncResponse:
        return self.runtime.ExecSync(api.ExecSyncRequest(container_id=container_id, cmd=list(command), timeout=30))

    def pod_ip(self, pod_id) -> str:
        return self.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip

    def remove_everything(self) -> None:
        for pod in self.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items:
            self.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
            self.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)


@pytest.fixture(scope="module")
def containerd(cri_session):
    import shutil

    if not shutil.which("containerd"):
        pytest.fail("Debian's containerd is missing (scripts/install.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="ketch-containerd-"))
    peer = Containerd(base, subnet=f"10.236.{64 + os.getpid() % 128}", bridge=f"kctd{os.getpid() % 100000}")
    try:
        peer.start()
        peer.import_images(cri_session.root, cri_session.runroot, "docker.io/library/busybox:latest")
        client = Peer(peer.endpoint)
        yield client
        client.remove_everything()
    finally:
        peer.stop()


def _both(cri, containerd):
    return {"ketch": Peer(cri.endpoint), "containerd": containerd}


def _log_records(path: str) -> list[tuple[str, str, str]]:
    """(stream, tag, text) of each record of a CRI log file, stdout's then stderr's (each in its
    order: the two are separate pipes, so how they interleave is up to the scheduler)."""
    out = []
    for line in Path(path).read_text().splitlines():
        match = re.match(r"^\S+ (stdout|stderr) (F|P) (.*)$", line)
        assert match, line
        out.append(match.groups())
    return sorted(out, key=lambda record: record[0] != "stdout")


def _lifecycle(name: str, peer: Peer, log_directory: str) -> dict:
    """What a kubelet sees of one pod's life on ``peer``."""
    pod = pod_config(name=f"parity-{name}", hostname="parity-host", log_directory=log_directory,
                     dns=api.DNSConfig(servers=["10.96.0.10"], searches=["svc.cluster.local"], options=["ndots:5"]),
                     labels={"app": "parity"})
    pod_id = peer.run_pod(pod)
    job = peer.create(pod_id, pod, container_config("job", ["sh", "-c", "echo one; echo two >&2; echo three; exit 3"]))
    created = peer.status(job).state
    peer.start(job)
    finished = wait_for(lambda: (s := peer.status(job)).state == api.CONTAINER_EXITED and s)
    server = peer.create(pod_id, pod, container_config("server", SERVE_PONG))
    peer.start(server)
    running = peer.status(server).state
    ip = peer.pod_ip(pod_id)
    answer = peer.exec(server, "sh", "-c", "echo o; echo e >&2; exit 9")
    seen = {
        "created": created, "running": running,
        "exit": (finished.exit_code, finished.reason), "log": _log_records(finished.log_path),
        "reached": wait_for(lambda: tcp_fetch(ip, 9000)), "hostname": peer.exec(server, "hostname").stdout,
        "resolv": sorted(peer.exec(server, "cat", "/etc/resolv.conf").stdout.decode().split("\n")),
        "exec": (answer.stdout, answer.stderr, answer.exit_code),
        "pods": [(p.metadata.name.split("-")[0], p.state, dict(p.labels)) for p in
                 peer.runtime.ListPodSandbox(api.ListPodSandboxRequest(filter=api.PodSandboxFilter(id=pod_id))).items],
    }
    peer.runtime.StopContainer(api.StopContainerRequest(container_id=server, timeout=0))
    stopped = peer.status(server)
    seen["stopped"] = (stopped.state, stopped.exit_code, stopped.reason)
    peer.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    seen["pod_after_stop"] = peer.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.state
    peer.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    return seen


def test_pod_and_container_lifecycle_agree(cri, containerd, tmp_path):
    seen = {name: _lifecycle(name, peer, str(tmp_path / name)) for name, peer in _both(cri, containerd).items()}
    assert seen["ketch"]["reached"] == b"pong\n"
    assert seen["ketch"] == seen["containerd"]


def test_security_context_effects_agree(cri, containerd):
    contexts = {
        "user": api.LinuxContainerSecurityContext(run_as_user=api.Int64Value(value=1000),
                                                  run_as_group=api.Int64Value(value=2000),
                                                  supplemental_groups=[3000]),
        "readonly": api.LinuxContainerSecurityContext(readonly_rootfs=True),
        "caps": api.LinuxContainerSecurityContext(capabilities=api.Capability(drop_capabilities=["ALL"],
                                                                              add_capabilities=["NET_ADMIN"])),
        "nnp": api.LinuxContainerSecurityContext(no_new_privs=True),
        "named": api.LinuxContainerSecurityContext(run_as_username="nobody"),
    }
    # (/tmp: the root directory's own mode differs, 0555 from the image in ketch's store as in
    # podman's, 0755 from containerd's snapshotter)
    probe = ("id; touch /tmp/probe 2>/dev/null; echo touch=$?; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' "
             "/proc/self/status")
    seen: dict[str, dict] = {}
    for name, peer in _both(cri, containerd).items():
        pod = pod_config(name=f"security-{name}")
        pod_id = peer.run_pod(pod)
        seen[name] = {}
        for label, security in contexts.items():
            container_id = peer.create(pod_id, pod, container_config(label, ["sleep", "60"], security=security))
            peer.start(container_id)
            answer = peer.exec(container_id, "sh", "-c", probe)
            seen[name][label] = (answer.stdout.decode(), answer.exit_code)
        peer.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        peer.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert seen["ketch"] == seen["containerd"]


def _missing_codes(peer: Peer) -> list:
    missing = "0123456789abcdef" * 4
    got: list = []
    for call in (
        lambda: peer.runtime.ContainerStatus(api.ContainerStatusRequest(container_id=missing)),
        lambda: peer.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=missing)),
        lambda: peer.runtime.StartContainer(api.StartContainerRequest(container_id=missing)),
        lambda: peer.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=missing)),
        lambda: peer.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=missing)),
        lambda: peer.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=missing)),
        lambda: peer.images.RemoveImage(api.RemoveImageRequest(image=api.ImageSpec(image="localhost/none:1"))),
    ):
        try:
            call()
            got.append("OK")
        except grpc.RpcError as exc:
            got.append(exc.code().name)
    status = peer.images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image="localhost/none:1")))
    return got + [status.HasField("image")]


def test_missing_things_get_the_same_statuses(cri, containerd):
    codes = {name: _missing_codes(peer) for name, peer in _both(cri, containerd).items()}
    assert codes["ketch"] == codes["containerd"]


def _streaming(peer: Peer) -> dict:
    """Exec, attach and port-forward on ``peer`` through ketch's SPDY client: what kubectl gets."""
    from ketch.cri.streamclient import PortForward, RemoteCommand

    pod = pod_config(name=f"stream-{os.urandom(3).hex()}")
    pod_id = peer.run_pod(pod)
    echo = container_config("echo", ["sh", "-c", "while true; do nc -l -p 9000 -e cat; done"])
    echo_id = peer.create(pod_id, pod, echo)
    peer.start(echo_id)
    chat = container_config("chat", ["sh", "-c", "while read l; do echo out-$l; echo err-$l >&2; "
                                                 "[ $l = end ] && exit 0; done"])
    chat.stdin = True
    chat_id = peer.create(pod_id, pod, chat)
    peer.start(chat_id)

    def execute(cmd, data=None, **kw):
        url = peer.runtime.Exec(api.ExecRequest(container_id=echo_id, cmd=cmd, stdout=True,
                                                stdin=data is not None, stderr=not kw.get("tty"), **kw)).url
        outcome = RemoteCommand(url, stdin=data is not None, tty=kw.get("tty", False)).communicate(data or None)
        return outcome.stdout, outcome.stderr, outcome.exit_code, outcome.status

    seen: dict = {"exit": execute(["sh", "-c", "cat; echo e >&2; exit 3"], b"in\n"),
                  "ok": execute(["echo", "fine"]),
                  "tty": execute(["sh", "-c", "tty >/dev/null && echo a-terminal"], tty=True)}
    _, _, code, status = execute(["no-such-command"])
    seen["missing"] = (code, status.get("status"), "no-such-command" in status.get("message", ""))
    url = peer.runtime.Attach(api.AttachRequest(container_id=chat_id, stdin=True, stdout=True, stderr=True)).url
    session = RemoteCommand(url, stdin=True)
    session.stdin.write(b"a\nend\n")
    attached = session.communicate(None, close_stdin=False)
    seen["attach"] = (attached.stdout, attached.stderr, attached.exit_code)
    forward = PortForward(peer.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pod_id)).url)
    data, error = forward.open(9001)
    refused = (data.read(), bool(error.read()))
    wait_for(lambda: _forwarded(forward, b"ping") == b"ping", timeout=30)
    seen["forward"] = (refused, _forwarded(forward, b"x" * 30_000_000) == b"x" * 30_000_000)
    forward.close()
    peer.runtime.StopContainer(api.StopContainerRequest(container_id=echo_id, timeout=1))
    try:
        peer.runtime.Exec(api.ExecRequest(container_id=echo_id, cmd=["true"], stdout=True))
        seen["stopped"] = "answered"
    except grpc.RpcError as exc:
        seen["stopped"] = ("CONTAINER_EXITED" in exc.details(), exc.code() != grpc.StatusCode.OK)
    peer.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
    peer.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
    return seen


def _forwarded(forward, payload: bytes) -> bytes:
    from tests.cri.test_streaming import _roundtrip

    data, _ = forward.open(9000)
    return _roundtrip(data, payload)


def test_streaming_exec_attach_and_port_forward_agree(cri, containerd):
    seen = {name: _streaming(peer) for name, peer in _both(cri, containerd).items()}
    assert seen["ketch"] == seen["containerd"], seen
    assert seen["ketch"]["exit"][:3] == (b"in\n", b"e\n", 3)
    assert seen["ketch"]["forward"] == ((b"", True), True)
