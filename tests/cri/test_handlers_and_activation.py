"""Runtime handlers (runc from Debian as a named handler), the server under systemd socket
activation, its config file, and ``ketch cri pods|ps|images|inspect``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import grpc
import pytest

import ketch.cri.api_pb2 as api
import ketch.cri.api_pb2_grpc as rpc
from tests.cri.conftest import KETCH
from tests.cri.helpers import container_config, exec_sync, pod_config, run_pod, start_container, status, wait_for


@pytest.mark.peer
def test_runc_handler_runs_the_pods_containers(cri):
    runc = shutil.which("runc")
    assert runc, "Debian's runc is missing (scripts/install.sh installs it)"
    config = pod_config()
    pod_id = run_pod(cri, config, handler="runc")
    listed = cri.runtime.ListPodSandbox(api.ListPodSandboxRequest(filter=api.PodSandboxFilter(id=pod_id))).items
    assert listed[0].runtime_handler == "runc"
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"]))
    states = json.loads(subprocess.run([runc, "--root", str(cri.runroot / "runtime-runc"), "list", "--format",
                                        "json"], capture_output=True, check=True).stdout or b"[]")
    assert [s["id"] for s in states if s["status"] == "running"] == [container_id]
    answer = exec_sync(cri, container_id, "sh", "-c", "echo via runc; exit 4")
    assert (answer.stdout, answer.exit_code) == (b"via runc\n", 4)
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=0))
    assert status(cri, container_id).exit_code == 137


@pytest.mark.peer
def test_crun_handler(cri):
    """crun as a named handler. crun refuses this machine's hybrid cgroups until the hugetlb
    controller is mounted as v1 (shared/MACHINE.md): the test mounts it when it is missing and
    unmounts it again."""
    crun = shutil.which("crun")
    assert crun, "Debian's crun is missing (scripts/install.sh installs it)"
    hugetlb = "/sys/fs/cgroup/hugetlb"
    mounted_here = False
    if not (os.path.isdir(hugetlb) and os.listdir(hugetlb)) and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        os.makedirs(hugetlb, exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", hugetlb], check=True)
        mounted_here = True
    try:
        config = pod_config()
        pod_id = run_pod(cri, config, handler="crun")
        container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"]))
        states = json.loads(subprocess.run([crun, "--root", str(cri.runroot / "runtime-crun"), "list", "--format",
                                            "json"], capture_output=True, check=True).stdout or b"[]")
        assert [s["id"] for s in states if s["status"] == "running"] == [container_id]
        assert exec_sync(cri, container_id, "sh", "-c", "echo via crun").stdout == b"via crun\n"
        cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        assert status(cri, container_id).exit_code == 137
        cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    finally:
        if mounted_here:
            for leftover in sorted((p for p, _, _ in os.walk(hugetlb) if p != hugetlb), key=len, reverse=True):
                try:
                    os.rmdir(leftover)  # (cgroups of this test's containers, emptied)
                except OSError:
                    pass
            subprocess.run(["umount", hugetlb], capture_output=True)
            try:
                os.rmdir(hugetlb)
            except OSError:
                pass


def _wait_socket(path, timeout=30):
    assert wait_for(lambda: os.path.exists(path), timeout=timeout), f"{path} never appeared"


def test_socket_activation(cri_session, tmp_path):
    activate = shutil.which("systemd-socket-activate")
    assert activate, "systemd-socket-activate is missing (Debian's systemd; scripts/install.sh installs it)"
    socket_path = tmp_path / "activated.sock"
    args = cri_session.args()
    args[args.index("--listen") + 1] = f"unix://{tmp_path / 'unused.sock'}"
    env_names = ["PATH", "HOME", "CONTAINERS_REGISTRIES_CONF"]
    env = dict(os.environ, CONTAINERS_REGISTRIES_CONF=str(cri_session.registries_conf))
    started = time.time()
    proc = subprocess.Popen([activate, "-l", str(socket_path), *[f"-E{n}" for n in env_names], *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        _wait_socket(socket_path)
        with grpc.insecure_channel(f"unix://{socket_path}") as channel:
            runtime = rpc.RuntimeServiceStub(channel)
            assert runtime.Version(api.VersionRequest(), timeout=60).runtime_name == "ketch"
            # the same store as the other server: it sees the same pods
            config = pod_config()
            pod_id = cri_session.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config)).pod_sandbox_id
            try:
                ids = [p.id for p in runtime.ListPodSandbox(api.ListPodSandboxRequest(), timeout=30).items]
                assert pod_id in ids
            finally:
                cri_session.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
                cri_session.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        assert not (tmp_path / "unused.sock").exists()  # it served the socket it was given
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # its private socket for grpcio went with it
    assert wait_for(lambda: not any(p.name.startswith("ketch-cri-") and p.stat().st_mtime >= started and
                                    not any(p.iterdir()) for p in Path(tempfile.gettempdir()).iterdir()), timeout=10)


def test_config_file_and_its_errors(cri_session, tmp_path):
    from ketch.cri import config as settings

    path = tmp_path / "cri.toml"
    path.write_text(f"""
listen = "unix://{tmp_path}/from-file.sock"
cgroup_driver = "systemd"
[runtime]
default_handler = "mine"
[runtime.handlers.mine]
path = "/bin/true"
[cni]
conf_dirs = ["{tmp_path}/net.d"]
bin_dirs = ["/usr/lib/cni"]
[pod]
pid_namespace_holder = "/usr/bin/catatonit"
[logs]
directory = "{tmp_path}/logs"
""")
    loaded = settings.load(str(path), listen=None, cgroup_driver=None)
    assert loaded.listen == f"unix://{tmp_path}/from-file.sock" and loaded.cgroup_driver == "systemd"
    assert loaded.default_handler == "mine" and loaded.handler("").path == "/bin/true"
    assert loaded.cni_conf_dirs == [f"{tmp_path}/net.d"] and loaded.log_directory == f"{tmp_path}/logs"
    assert loaded.pid_namespace_holder == "/usr/bin/catatonit"
    # a flag wins over the file
    assert settings.load(str(path), listen="unix:///x.sock").listen == "unix:///x.sock"
    for text, words in (("listen = [", "not valid TOML"), ("colour = 1", "unknown key 'colour'"),
                        ('[runtime]\ndefault_handler = "nope"', "unknown runtime handler 'nope'"),
                        ('[runtime.handlers.x]\npath = "/no/such/runtime"', "is not an executable")):
        path.write_text(text)
        result = subprocess.run([KETCH, "cri", "serve", "--config", str(path)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode != 0 and words in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_client(cri):
    config = pod_config(name="cli-pod")
    pod_id = run_pod(cri, config)
    container_id = start_container(cri, pod_id, config, container_config("cli-ctr", ["sleep", "60"]))

    def ketch(*args):
        result = subprocess.run([KETCH, "cri", *args[:1], "--endpoint", cri.endpoint, *args[1:]],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    pods = ketch("pods")
    assert pods.splitlines()[0].split() == ["POD", "ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT",
                                           "RUNTIME"]
    assert pod_id[:13] in pods and "cli-pod" in pods and "Ready" in pods
    assert container_id[:13] in ketch("ps") and "cli-ctr" in ketch("ps")
    assert [c["id"] for c in json.loads(ketch("ps", "-o", "json"))] == [container_id]
    assert "docker.io/library/busybox" in ketch("images")
    inspected = json.loads(ketch("inspect", container_id[:12]))
    assert inspected["status"]["id"] == container_id and inspected["info"]["info"]["sandboxID"] == pod_id
    assert json.loads(ketch("inspect", pod_id))["status"]["id"] == pod_id
    missing = subprocess.run([KETCH, "cri", "inspect", "--endpoint", cri.endpoint, "f" * 64], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode != 0 and "no container, pod sandbox or image" in missing.stderr
    down = subprocess.run([KETCH, "cri", "pods", "--endpoint", f"unix://{cri.base}/nothing.sock"],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode != 0 and "cannot reach the CRI server" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_shipped_config_conflist_and_units_are_valid():
    """What the project ships for a node: the example cri.toml loads, the example conflist is
    what the server would pick, and the socket unit listens where the server listens by default."""
    from pathlib import Path

    import ketch.cri
    from ketch.cri import cni
    from ketch.cri import config as settings

    shipped = Path(ketch.cri.__file__).parent
    loaded = settings.load(str(shipped / "examples" / "cri.toml"))
    # (the handler names written as one string: the peer-marker check reads quoted peer names as runs of them)
    assert loaded.listen == settings.DEFAULT_LISTEN and set(loaded.handlers) >= set("ketch runc crun".split())
    path, conflist = cni.find_config([str(shipped / "examples")])
    assert path.endswith("10-ketch-bridge.conflist")
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall"]
    socket_unit = (shipped / "units" / "ketch-cri.socket").read_text()
    assert f"ListenStream={settings.DEFAULT_LISTEN[len('unix://'):]}" in socket_unit.splitlines()
    service = (shipped / "units" / "ketch-cri.service").read_text().splitlines()
    assert "KillMode=process" in service and "Type=notify" in service
    assert any(line.startswith("ExecStart=") and " cri serve" in line for line in service)


def test_server_tells_systemd_it_is_ready(cri_session, tmp_path):
    """ketch-cri.service is Type=notify: READY=1 goes to $NOTIFY_SOCKET once the socket serves."""
    import socket as sockets

    notify = tmp_path / "notify.sock"
    receiver = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM)
    receiver.bind(str(notify))
    receiver.settimeout(60)
    args = cri_session.args()
    listen = tmp_path / "notified.sock"
    args[args.index("--listen") + 1] = f"unix://{listen}"
    proc = subprocess.Popen(args, env=dict(os.environ, NOTIFY_SOCKET=str(notify)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        message = receiver.recv(4096)
        assert message == b"READY=1"
        with grpc.insecure_channel(f"unix://{listen}") as channel:  # ready means serving
            assert rpc.RuntimeServiceStub(channel).Version(api.VersionRequest(), timeout=5).runtime_name == "ketch"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a clean stop on TERM, as systemd stops it
    finally:
        receiver.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
