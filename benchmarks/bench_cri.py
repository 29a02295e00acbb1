"""Benchmark: ketch's CRI server against containerd's CRI plugin (Debian's containerd 1.6, runc),
side by side in one run, with the same CNI plugins (bridge, host-local, portmap) and the same
requests, as a kubelet makes them.

Timed per request, alternating the two servers request by request so both see the same machine:
RunPodSandbox, CreateContainer, StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
RemovePodSandbox, PullImage from a registry on 127.0.0.1 (the image removed between rounds), and
one pod with one container from nothing to running and back. Reported as medians and the ratio
ketch / containerd (below 1: ketch is faster).

Run:  .venv/bin/python -m benchmarks.bench_cri [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import grpc

import ketch.cri.api_pb2 as api
import ketch.cri.api_pb2_grpc as rpc
from tests.cri.conftest import CRIServer
from tests.cri.helpers import container_config, pod_config
from tests.support import images
from tests.support.containerd import Containerd
from tests.support.registry import run_registry, skopeo_copy

IMAGE = "docker.io/library/busybox:latest"


class Endpoint:
    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.channel = grpc.insecure_channel(endpoint)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.runtime = rpc.RuntimeServiceStub(self.channel)
        self.images = rpc.ImageServiceStub(self.channel)
        self.times: dict[str, list[float]] = {}

    def timed(self, what: str, call, request):
        start = time.perf_counter()
        answer = call(request, timeout=120)
        self.times.setdefault(what, []).append(time.perf_counter() - start)
        return answer


def one_round(peer: Endpoint, pull_name: str) -> None:
    pod = pod_config(name=f"bench-{uuid.uuid4().hex[:8]}")
    begin = time.perf_counter()
    pod_id = peer.timed("RunPodSandbox", peer.runtime.RunPodSandbox, api.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    container_id = peer.timed("CreateContainer", peer.runtime.CreateContainer, api.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=pod, config=container_config("c", ["sleep", "600"]))).container_id
    peer.timed("StartContainer", peer.runtime.StartContainer, api.StartContainerRequest(container_id=container_id))
    running = time.perf_counter() - begin
    peer.timed("StopContainer", peer.runtime.StopContainer, api.StopContainerRequest(container_id=container_id,
                                                                                      timeout=0))
    peer.timed("RemoveContainer", peer.runtime.RemoveContainer, api.RemoveContainerRequest(container_id=container_id))
    peer.timed("StopPodSandbox", peer.runtime.StopPodSandbox, api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    peer.timed("RemovePodSandbox", peer.runtime.RemovePodSandbox, api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    peer.times.setdefault("pod+container: nothing to running", []).append(running)
    peer.times.setdefault("pod+container: nothing to running and back", []).append(time.perf_counter() - begin)
    spec = api.ImageSpec(image=pull_name)
    peer.timed("PullImage", peer.images.PullImage, api.PullImageRequest(image=spec))
    peer.images.RemoveImage(api.RemoveImageRequest(image=spec), timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ketch-bench-cri-"))
    ketch_server = CRIServer(base / "ketch")
    (base / "containerd").mkdir(parents=True)
    peer = None
    try:
        (base / "registry").mkdir()
        with run_registry(workdir=base / "registry") as registry:
            peer = Containerd(base / "containerd", subnet=f"10.237.{64 + os.getpid() % 128}",
                              bridge=f"kbcd{os.getpid() % 10000}", plain_http_registries=(registry.host,))
            # another image than the preloaded busybox, so that a pull really pulls
            skopeo_copy(f"oci:{images.ensure('busybox-ktest')}:latest", registry.url("bench/ktest"))
            pull_name = f"{registry.host}/bench/ktest:latest"
            ketch_server.load_busybox()
            ketch_server.trust_registry(registry.host)
            ketch_server.start()
            peer.start()
            peer.import_images(ketch_server.root, ketch_server.runroot, IMAGE)
            peers = [Endpoint("ketch", ketch_server.endpoint), Endpoint("containerd", peer.endpoint)]
            for _ in range(2):  # warm both (first pulls, caches)
                for endpoint in peers:
                    one_round(endpoint, pull_name)
            for endpoint in peers:
                endpoint.times.clear()
            for _ in range(args.rounds):
                for endpoint in peers:
                    one_round(endpoint, pull_name)
            print(f"CRI requests, median of {args.rounds} rounds (ms); ratio = ketch / containerd")
            print(f"{'request':46} {'ketch':>9} {'containerd':>11} {'ratio':>7}")
            ketch_times, containerd_times = peers[0].times, peers[1].times
            for what in ketch_times:
                mine = statistics.median(ketch_times[what]) * 1000
                theirs = statistics.median(containerd_times[what]) * 1000
                print(f"{what:46} {mine:9.1f} {theirs:11.1f} {mine / theirs:7.2f}")
    finally:
        tear_down(base, ketch_server, peer)
    return 0


def tear_down(base: Path, ketch_server: CRIServer, peer: Containerd | None, *, remove_pods: bool = False) -> None:
    """Both servers stopped (their pods removed first when asked), the bridge, mounts and files gone."""
    try:
        if remove_pods and ketch_server.process is not None:
            ketch_server.remove_everything()
        ketch_server.stop()
    finally:
        if peer is not None:
            if remove_pods:
                try:
                    from tests.cri.test_containerd_parity import Peer

                    Peer(peer.endpoint).remove_everything()
                except Exception:  # noqa: BLE001 - stopping it is what matters
                    pass
            peer.stop()
        subprocess.run(["ip", "link", "del", ketch_server.bridge], capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(ketch_server.root / "mounts")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
