"""What a node needs of the CRI server to run for months: container events (the evented PLEG)
that survive a server restart, pods whose processes all died, the server's own log."""

from __future__ import annotations

import json
import os
import signal
import threading

import grpc

import ketch.cri.api_pb2 as api
from tests.cri.helpers import container_config, pod_config, run_pod, start_container, wait_for, wait_state


class EventStream:
    """GetContainerEvents read in a thread."""

    def __init__(self, cri) -> None:
        self.call = cri.runtime.GetContainerEvents(api.GetEventsRequest())
        self.call.initial_metadata()  # the server has opened the stream: what happens next is sent
        self.events: list = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
        except grpc.RpcError:
            pass

    def of(self, container_id: str) -> list[int]:
        return [e.container_event_type for e in self.events if e.container_id == container_id]

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=10)


def _died_events(cri, container_id: str) -> int:
    path = cri.root / "events" / "events.log"
    return sum(1 for line in path.read_text().splitlines()
               if (e := json.loads(line))["ID"] == container_id and e["Status"] == "died")


def test_container_events_follow_a_life_each_once(cri):
    stream = EventStream(cri)
    try:
        pod = pod_config()
        pod_id = run_pod(cri, pod)
        container_id = start_container(cri, pod_id, pod, container_config("main", ["sleep", "1000"]))
        cri.runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=1))
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container_id))
        wanted = [api.CONTAINER_CREATED_EVENT, api.CONTAINER_STARTED_EVENT, api.CONTAINER_STOPPED_EVENT,
                  api.CONTAINER_DELETED_EVENT]
        assert wait_for(lambda: stream.of(container_id) == wanted, timeout=30), stream.of(container_id)
        started = next(e for e in stream.events if e.container_id == container_id and
                       e.container_event_type == api.CONTAINER_STARTED_EVENT)
        assert started.pod_sandbox_status.id == pod_id
        assert started.created_at > 0
    finally:
        stream.close()


def test_an_exit_while_the_server_is_down_is_recorded_once_and_not_sent_again(cri):
    pod = pod_config()
    pod_id = run_pod(cri, pod)
    container_id = start_container(cri, pod_id, pod, container_config("main", ["sleep", "1000"]))
    info = cri.runtime.ContainerStatus(api.ContainerStatusRequest(container_id=container_id, verbose=True)).info
    pid = json.loads(info["info"])["pid"]
    stream = EventStream(cri)
    cri.kill9()
    os.kill(pid, signal.SIGKILL)  # the container dies while no server runs: its monitor records it
    assert wait_for(lambda: _died_events(cri, container_id) == 1, timeout=30)
    stream.close()
    cri.start()
    after = EventStream(cri)
    try:
        status = wait_state(cri, container_id, api.CONTAINER_EXITED)
        assert (status.exit_code, status.reason) == (137, "Error")
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container_id))
        assert wait_for(lambda: after.of(container_id) == [api.CONTAINER_DELETED_EVENT], timeout=30), \
            after.of(container_id)
        assert _died_events(cri, container_id) == 1
    finally:
        after.close()


def _processes_of_pod(cri, pod_id: str, container_ids: list[str]) -> list[int]:
    """Every process of the pod: its containers', their monitors', its PID namespace holder."""
    pids = []
    for container_id in container_ids:
        info = json.loads(cri.runtime.ContainerStatus(api.ContainerStatusRequest(
            container_id=container_id, verbose=True)).info["info"])
        pids += [info["pid"], info["state"].get("monitor_pid") or 0]
    pod = json.loads(cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(
        pod_sandbox_id=pod_id, verbose=True)).info["info"])
    pids.append((pod.get("pidHolder") or {}).get("pid") or 0)
    return [p for p in pids if p]


def test_a_pod_whose_processes_all_died_is_notready_and_removed_cleanly(cri):
    pod = pod_config(pid=api.POD)
    pod_id = run_pod(cri, pod)
    ids = [start_container(cri, pod_id, pod, container_config(name, ["sleep", "1000"], pid=api.POD))
           for name in ("one", "two")]
    for pid in _processes_of_pod(cri, pod_id, ids):  # (an OOM kill of everything)
        os.kill(pid, signal.SIGKILL)
    for container_id in ids:
        wait_state(cri, container_id, api.CONTAINER_EXITED)
    assert wait_for(lambda: cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(
        pod_sandbox_id=pod_id)).status.state == api.SANDBOX_NOTREADY, timeout=30)
    cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert not cri.runtime.ListPodSandbox(api.ListPodSandboxRequest(filter=api.PodSandboxFilter(id=pod_id))).items
    assert not cri.runtime.ListContainers(api.ListContainersRequest(
        filter=api.ContainerFilter(pod_sandbox_id=pod_id))).containers


def test_after_a_reboot_old_containers_are_exited_and_removed_on_request(tmp_path, cri_session):
    """A reboot, simulated: every process of ketch's killed and the run directory (a tmpfs, as
    /run is) unmounted; a server started afresh reports the old pods NOTREADY and their
    containers EXITED, and removes them when asked, leaving nothing behind."""
    import subprocess

    from tests.cri.conftest import CRIServer

    server = CRIServer(tmp_path)
    server.bridge, server.subnet = f"kcrb{os.getpid() % 100000}", f"10.237.{64 + os.getpid() % 128}"
    server.write_conflist()
    server.runroot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(server.runroot)], check=True)
    try:
        server.load_busybox()
        server.start()
        pod = pod_config()
        pod_id = run_pod(server, pod)
        ids = [start_container(server, pod_id, pod, container_config(name, ["sleep", "1000"]))
               for name in ("one", "two")]
        pids = _processes_of_pod(server, pod_id, ids)
        server.kill9()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-R", "-l", str(server.runroot)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(server.runroot)], check=True)
        server.start()
        pods = server.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items
        assert [(p.id, p.state) for p in pods] == [(pod_id, api.SANDBOX_NOTREADY)]
        containers = server.runtime.ListContainers(api.ListContainersRequest()).containers
        assert sorted((c.id, c.state) for c in containers) == sorted((i, api.CONTAINER_EXITED) for i in ids)
        for container_id in ids:
            server.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container_id))
        server.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        server.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        assert not server.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items
        assert not server.runtime.ListContainers(api.ListContainersRequest()).containers
        ipam = tmp_path / "ipam" / "ketch-cri-test"
        assert not [p.name for p in ipam.iterdir() if p.name[0].isdigit()] if ipam.exists() else True
    finally:
        server.stop()
        subprocess.run(["umount", "-R", "-l", str(server.root / "mounts")], capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(server.runroot)], capture_output=True)
        subprocess.run(["ip", "link", "del", server.bridge], capture_output=True)


def test_the_server_logs_json_lines_and_rereads_its_config_on_sighup(tmp_path):
    import time

    from tests.cri.conftest import CRIServer

    server = CRIServer(tmp_path)
    config = tmp_path / "cri.toml"
    config.write_text('log_level = "debug"\n')
    server.extra_args = ["--config", str(config)]
    try:
        server.start()
        pod = pod_config(network=api.NODE)
        try:
            server.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=pod, runtime_handler="extra"))
            raise AssertionError("an unknown handler was accepted")
        except grpc.RpcError as exc:
            assert "unknown runtime handler 'extra'" in exc.details()
        # (a handler is checked to be an executable; the pod runs no container with it)
        config.write_text('log_level = "info"\n[runtime.handlers.extra]\npath = "/bin/true"\n')
        server.process.send_signal(signal.SIGHUP)

        def log_entries() -> list[dict]:
            text = (tmp_path / "server.log").read_text()
            return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

        assert wait_for(lambda: any(e["msg"] == "configuration reloaded" for e in log_entries()), timeout=20)
        reloaded = next(e for e in log_entries() if e["msg"] == "configuration reloaded")
        assert {"handlers", "log_level"} <= set(reloaded["changed"]) and reloaded["level"] == "info"
        pod_id = server.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=pod, runtime_handler="extra")
                                              ).pod_sandbox_id
        assert server.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(
            pod_sandbox_id=pod_id)).status.runtime_handler == "extra"
        server.remove_everything()
        serving = next(e for e in log_entries() if e["msg"] == "serving")
        assert serving["streaming"].startswith("http://127.0.0.1:") and time.strptime(serving["time"][:19],
                                                                                       "%Y-%m-%dT%H:%M:%S")
    finally:
        server.stop()


def test_a_gigabyte_of_output_with_a_rotation_midway_keeps_every_line_in_order(cri, tmp_path):
    """1 GB in lines of ~1 KB (every 50000th of 40 KB: written as partial records), the log
    rotated as the kubelet rotates it (renamed, then ReopenContainerLog) while it is written."""
    log_dir = tmp_path / "pod-logs"
    log_dir.mkdir()
    pod = pod_config(log_directory=str(log_dir))
    pod_id = run_pod(cri, pod)
    script = ('BEGIN { pad = sprintf("%1000s", ""); long = sprintf("%40000s", ""); '
              'for (i = 0; i < 1000000; i++) print i, (i % 50000 == 0 ? long : pad) }')
    container_id = start_container(cri, pod_id, pod, container_config("writer", ["awk", script]))
    log_path = log_dir / "writer" / "0.log"
    assert wait_for(lambda: log_path.exists() and log_path.stat().st_size > 200 * 1024 * 1024, timeout=120)
    log_path.rename(log_dir / "writer" / "0.log.rotated")
    cri.runtime.ReopenContainerLog(api.ReopenContainerLogRequest(container_id=container_id))
    status = wait_state(cri, container_id, api.CONTAINER_EXITED, timeout=300)
    assert status.exit_code == 0
    expected, partial = 0, b""
    for path in (log_dir / "writer" / "0.log.rotated", log_path):
        assert path.stat().st_size > 0
        with open(path, "rb") as f:
            for record in f:
                stamp, stream, tag, text = record.rstrip(b"\n").split(b" ", 3)
                assert stream == b"stdout"
                partial += text
                if tag == b"P":
                    continue
                number, _, rest = partial.partition(b" ")
                assert int(number) == expected, (path, expected, number)
                assert len(rest) == (40000 if expected % 50000 == 0 else 1000)
                expected += 1
                partial = b""
    assert expected == 1000000
