"""Benchmark: the CRI streaming paths and the kubelet's per-second list calls, ketch's CRI server
against containerd's CRI plugin (Debian's containerd 1.6, runc), side by side in one run,
alternating request by request.

- ExecSync of ``true``: median and p99 over --execs (200) calls;
- an exec session's time to first byte: the Exec RPC, the SPDY upgrade and streams (ketch's
  client, ``ketch.cri.streamclient``, against both), until ``echo`` is read;
- port-forward throughput: --megabytes (200) through one forwarded connection to an echo server
  in the pod and back, on 127.0.0.1;
- with 100 pods of 2 containers each on both: ListPodSandbox, ListContainers, PodSandboxStatus
  and ContainerStatus (what the kubelet asks every second).

Reported as medians and the ratio ketch / containerd (below 1: ketch is faster).

Run:  .venv/bin/python -m benchmarks.bench_cri_streaming [--execs N] [--pods N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import ketch.cri.api_pb2 as api
from benchmarks.bench_cri import Endpoint, tear_down
from ketch.cri.streamclient import PortForward, RemoteCommand
from tests.cri.conftest import CRIServer
from tests.cri.helpers import container_config, pod_config
from tests.support.containerd import Containerd

IMAGE = "docker.io/library/busybox:latest"
ECHO = ["nc", "-ll", "-p", "9000", "-e", "cat"]


def start_pod(peer: Endpoint, commands: list[list[str]], network: int = api.POD) -> tuple[str, list[str]]:
    pod = pod_config(name=f"bench-{uuid.uuid4().hex[:8]}", network=network)
    if network == api.NODE:
        pod.hostname = ""  # (the node's: a pod in the node's network has its UTS namespace too)
    pod_id = peer.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=pod), timeout=120).pod_sandbox_id
    ids = []
    for index, command in enumerate(commands):
        container_id = peer.runtime.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=pod_id, sandbox_config=pod, config=container_config(f"c{index}", command)),
            timeout=120).container_id
        peer.runtime.StartContainer(api.StartContainerRequest(container_id=container_id), timeout=120)
        ids.append(container_id)
    return pod_id, ids


def exec_sync(peer: Endpoint, container_id: str) -> None:
    peer.timed("ExecSync true", peer.runtime.ExecSync,
               api.ExecSyncRequest(container_id=container_id, cmd=["true"], timeout=30))


def exec_first_byte(peer: Endpoint, container_id: str) -> None:
    start = time.perf_counter()
    url = peer.runtime.Exec(api.ExecRequest(container_id=container_id, cmd=["echo", "x"], stdout=True,
                                            stderr=True)).url
    session = RemoteCommand(url)
    assert session.stdout is not None
    first = session.stdout.read(1)
    peer.times.setdefault("exec session: time to first byte", []).append(time.perf_counter() - start)
    assert first == b"x"
    session.communicate()


def forward_throughput(peer: Endpoint, pod_id: str, megabytes: int) -> None:
    forward = PortForward(peer.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pod_id)).url)
    try:
        block = os.urandom(1024 * 1024)
        for _ in range(100):  # the echo server is up
            data, _ = forward.open(9000)
            data.write(b"ping")
            data.close()
            if data.read() == b"ping":
                while data.read():
                    pass
                break
            time.sleep(0.1)
        data, _ = forward.open(9000)
        received = [0]

        def receive() -> None:
            while chunk := data.read():
                received[0] += len(chunk)

        reader = threading.Thread(target=receive)
        start = time.perf_counter()
        reader.start()
        for _ in range(megabytes):
            data.write(block)
        data.close()
        reader.join()
        elapsed = time.perf_counter() - start
        assert received[0] == megabytes * 1024 * 1024, received[0]
        # MB/s each way (a smaller figure is slower, so the time per MB is what is kept)
        peer.times.setdefault("port-forward: seconds per 100 MB each way", []).append(elapsed * 100 / megabytes)
    finally:
        forward.close()


def lists(peer: Endpoint, pod_id: str, container_id: str) -> None:
    peer.timed("ListPodSandbox (100 pods)", peer.runtime.ListPodSandbox, api.ListPodSandboxRequest())
    peer.timed("ListContainers (200 containers)", peer.runtime.ListContainers, api.ListContainersRequest())
    peer.timed("PodSandboxStatus", peer.runtime.PodSandboxStatus, api.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    peer.timed("ContainerStatus", peer.runtime.ContainerStatus, api.ContainerStatusRequest(container_id=container_id))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--pods", type=int, default=100)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ketch-bench-stream-"))
    ketch_server = CRIServer(base / "ketch")
    (base / "containerd").mkdir(parents=True)
    peer = None
    try:
        peer = Containerd(base / "containerd", subnet=f"10.238.{64 + os.getpid() % 128}",
                          bridge=f"kbcd{os.getpid() % 10000}")
        ketch_server.load_busybox()
        ketch_server.start()
        peer.start()
        peer.import_images(ketch_server.root, ketch_server.runroot, IMAGE)
        peers = [Endpoint("ketch", ketch_server.endpoint), Endpoint("containerd", peer.endpoint)]
        targets = {p.name: start_pod(p, [["sleep", "100000"], ECHO]) for p in peers}
        for _ in range(5):  # warm
            for endpoint in peers:
                exec_sync(endpoint, targets[endpoint.name][1][0])
                exec_first_byte(endpoint, targets[endpoint.name][1][0])
        for endpoint in peers:
            endpoint.times.clear()
        for _ in range(args.execs):
            for endpoint in peers:
                exec_sync(endpoint, targets[endpoint.name][1][0])
        for _ in range(args.sessions):
            for endpoint in peers:
                exec_first_byte(endpoint, targets[endpoint.name][1][0])
        for _ in range(3):
            for endpoint in peers:
                forward_throughput(endpoint, targets[endpoint.name][0], args.megabytes)
        for endpoint in peers:
            for _ in range(args.pods - 1):
                start_pod(endpoint, [["sleep", "100000"], ["sleep", "100000"]], network=api.NODE)
        for _ in range(50):
            for endpoint in peers:
                lists(endpoint, targets[endpoint.name][0], targets[endpoint.name][1][0])
        print("CRI streaming and lists; medians (ms), ratio = ketch / containerd")
        print(f"{'what':46} {'ketch':>9} {'containerd':>11} {'ratio':>7}")
        mine_all, theirs_all = peers[0].times, peers[1].times
        for what in mine_all:
            mine = statistics.median(mine_all[what]) * 1000
            theirs = statistics.median(theirs_all[what]) * 1000
            print(f"{what:46} {mine:9.1f} {theirs:11.1f} {mine / theirs:7.2f}")
            if what == "ExecSync true":
                p99 = [statistics.quantiles(t, n=100)[98] * 1000 for t in (mine_all[what], theirs_all[what])]
                print(f"{'ExecSync true, p99':46} {p99[0]:9.1f} {p99[1]:11.1f} {p99[0] / p99[1]:7.2f}")
    finally:
        tear_down(base, ketch_server, peer, remove_pods=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
