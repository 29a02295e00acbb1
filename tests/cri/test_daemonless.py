"""The server holds nothing the store does not: killed (-9) at any moment and started again, it
answers for the same pods and containers, still running, with their logs and exit codes; what a
request killed half-way made is listed and removable, and the store stays consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import grpc
import pytest

import ketch.cri.api_pb2 as api
from tests.cri.helpers import (
    container_config,
    exec_sync,
    pod_config,
    random_layer,
    run_pod,
    start_container,
    status,
    wait_for,
)
from tests.support.fakeregistry import FakeRegistry, serve


def _storage_check(cri) -> subprocess.CompletedProcess:
    from tests.cri.conftest import KETCH

    return subprocess.run([KETCH, "--root", str(cri.root), "--runroot", str(cri.runroot), "storage", "check"],
                          capture_output=True, text=True, timeout=120)


def test_kill_9_and_restart_keeps_pods_containers_logs_and_exit_codes(cri, tmp_path):
    config = pod_config(log_directory=str(tmp_path))
    pod_id = run_pod(cri, config)
    ip = cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip
    long_running = start_container(cri, pod_id, config, container_config(
        "server", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]))
    finishing = start_container(cri, pod_id, config, container_config(
        "job", ["sh", "-c", "read line < /dev/null; sleep 2; echo done; exit 5"]))
    cri.kill9()
    time.sleep(2.5)  # the job ends while no server runs: its monitor records how
    cri.start()
    pods = cri.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items
    assert [(p.id, p.state) for p in pods] == [(pod_id, api.SANDBOX_READY)]
    assert cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip == ip
    assert status(cri, long_running).state == api.CONTAINER_RUNNING
    job = wait_for(lambda: (s := status(cri, finishing)).state == api.CONTAINER_EXITED and s)
    assert (job.exit_code, job.reason) == (5, "Error")
    assert b"done" in (tmp_path / "job" / "0.log").read_bytes()
    ticks = (tmp_path / "server" / "0.log").read_bytes().count(b"tick")
    assert wait_for(lambda: (tmp_path / "server" / "0.log").read_bytes().count(b"tick") > ticks)
    assert exec_sync(cri, long_running, "echo", "still here").stdout == b"still here\n"


@pytest.fixture
def slow_cni(cri):
    """A CNI plugin after the bridge that stalls ADD (writing its pid first) and does DEL at once."""
    marker = cri.base / "slow-plugin.pid"
    plugin = cri.bin_dir / "ktest-slow"
    plugin.write_text(f"""#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then echo $$ > {marker}; exec sleep 60; fi
exit 0
""")
    plugin.chmod(0o755)
    cri.write_conflist([{"type": "ktest-slow"}])
    yield marker
    cri.write_conflist()
    if marker.exists():
        try:
            os.kill(int(marker.read_text()), signal.SIGKILL)  # the plugin process this test started
        except (ProcessLookupError, ValueError):
            pass
        marker.unlink()


def test_kill_9_during_run_pod_sandbox_leaves_a_removable_pod(cri, slow_cni):
    failures: list[grpc.StatusCode] = []

    def request() -> None:
        try:
            run_pod(cri, pod_config(name="killed-pod"))
        except grpc.RpcError as exc:
            failures.append(exc.code())

    caller = threading.Thread(target=request)
    caller.start()
    assert wait_for(slow_cni.exists, timeout=30), "the CNI ADD never started"
    cri.kill9()
    caller.join(timeout=30)
    assert failures == [grpc.StatusCode.UNAVAILABLE]
    os.kill(int(slow_cni.read_text()), signal.SIGKILL)
    cri.start()
    pods = cri.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items
    assert [(p.metadata.name, p.state) for p in pods] == [("killed-pod", api.SANDBOX_NOTREADY)]
    cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pods[0].id))
    cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pods[0].id))
    assert cri.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items == []
    assert cri.pinned_mounts() == []
    # the kubelet's next attempt of the same pod works
    cri.write_conflist()
    pod_id = run_pod(cri, pod_config(name="killed-pod", attempt=1))
    assert cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip
    check = _storage_check(cri)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.02])
def test_kill_9_during_create_container_leaves_nothing_unremovable(cri, delay):
    config = pod_config()
    pod_id = run_pod(cri, config)
    request = api.CreateContainerRequest(pod_sandbox_id=pod_id, sandbox_config=config,
                                         config=container_config("c", ["sleep", "60"]))
    future = cri.runtime.CreateContainer.future(request)
    time.sleep(delay)
    cri.kill9()
    try:
        future.result(timeout=30)
    except grpc.RpcError:
        pass  # killed before it answered
    cri.start()
    containers = cri.runtime.ListContainers(api.ListContainersRequest()).containers
    assert len(containers) <= 1
    for container in containers:  # made, as far as it got: it can be started or removed
        assert container.state == api.CONTAINER_CREATED
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container.id))
    # the same container again: its name is free
    again = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"]))
    assert status(cri, again).state == api.CONTAINER_RUNNING
    check = _storage_check(cri)
    assert check.returncode == 0, check.stdout + check.stderr


def test_kill_9_during_pull_image_leaves_no_image_and_a_consistent_store(cri):
    layer, diff_id = random_layer(3_000_000)
    fake = FakeRegistry()
    fake.add_image("app", "latest", [layer], config={"architecture": "amd64", "os": "linux",
                                                     "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    digest = next(d for d, data in fake.blobs.items() if data == layer)
    started, release = threading.Event(), threading.Event()

    def stall(handler, info):
        if info["path"].endswith(digest) and not release.is_set():
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(layer)))
            handler.end_headers()
            handler.wfile.write(layer[:1_500_000])
            handler.wfile.flush()
            started.set()
            release.wait(30)
            handler.close_connection = True
            return True
        return False

    fake.behaviours.append(stall)
    with serve(fake):
        cri.trust_registry(fake.host)
        name = f"{fake.host}/app:latest"
        future = cri.images.PullImage.future(api.PullImageRequest(image=api.ImageSpec(image=name)))
        try:
            assert started.wait(30), "the pull never started the layer"
            time.sleep(0.2)
            cri.kill9()
            with pytest.raises(grpc.RpcError):
                future.result(timeout=30)
        finally:
            release.set()
        cri.start()
        assert not cri.images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=name))).HasField("image")
        check = _storage_check(cri)
        assert check.returncode == 0, check.stdout + check.stderr
        ref = cri.images.PullImage(api.PullImageRequest(image=api.ImageSpec(image=name))).image_ref
        assert cri.images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=name))).image.id == ref
        cri.images.RemoveImage(api.RemoveImageRequest(image=api.ImageSpec(image=ref)))


def test_a_removal_a_killed_server_did_not_finish_is_finished_at_start(cri):
    """RemoveContainer answers once the container is marked removed; the rest follows. A server
    killed in between leaves the mark in the store, and the next one finishes the removal."""
    from ketch.storage.store import Store

    config = pod_config()
    pod_id = run_pod(cri, config)
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"]))
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=0))
    cri.kill9()
    store = Store(str(cri.root), str(cri.runroot))
    meta = __import__("json").loads(store.container(container_id)["metadata"])
    store.update_container_metadata(container_id, {"cri": {**meta["cri"], "removing": True}})  # (as it marks it)
    cri.start()
    assert cri.runtime.ListContainers(api.ListContainersRequest()).containers == []
    assert [r["id"] for r in store.containers() if r["id"] == container_id] == []
    # the name is free again: the kubelet's next attempt of the same container is made
    again = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"]))
    assert status(cri, again).state == api.CONTAINER_RUNNING
    check = _storage_check(cri)
    assert check.returncode == 0, check.stdout + check.stderr
