"""Requests as the kubelet builds them, and waiting on what the server reports."""

from __future__ import annotations

import time
import uuid

import ketch.cri.api_pb2 as api

IMAGE = "docker.io/library/busybox:latest"


def pod_config(name: str | None = None, *, hostname: str = "", log_directory: str = "", pid: int = api.CONTAINER,
               network: int = api.POD, labels: dict | None = None, annotations: dict | None = None,
               dns: api.DNSConfig | None = None, ports: list[api.PortMapping] | None = None,
               cgroup_parent: str = "", sysctls: dict | None = None, attempt: int = 0) -> api.PodSandboxConfig:
    name = name or f"pod-{uuid.uuid4().hex[:8]}"
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, uid=uuid.uuid5(uuid.NAMESPACE_DNS, name).hex, namespace="default",
                                        attempt=attempt),
        hostname=hostname or name, log_directory=log_directory, labels=labels or {}, annotations=annotations or {},
        dns_config=dns, port_mappings=ports or [],
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent, sysctls=sysctls or {},
            security_context=api.LinuxSandboxSecurityContext(
                namespace_options=api.NamespaceOption(network=network, pid=pid, ipc=api.POD))))


def container_config(name: str, command: list[str], *, args: list[str] | None = None, log_path: str = "",
                     security: api.LinuxContainerSecurityContext | None = None,
                     resources: api.LinuxContainerResources | None = None, pid: int = api.CONTAINER,
                     labels: dict | None = None, annotations: dict | None = None, mounts=None, envs=None,
                     image: str = IMAGE, attempt: int = 0) -> api.ContainerConfig:
    security = security or api.LinuxContainerSecurityContext()
    if not security.HasField("namespace_options"):
        security.namespace_options.CopyFrom(api.NamespaceOption(network=api.POD, pid=pid, ipc=api.POD))
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=attempt), image=api.ImageSpec(image=image),
        command=command, args=args or [], log_path=log_path or f"{name}/{attempt}.log", labels=labels or {},
        annotations=annotations or {}, mounts=mounts or [], envs=envs or [],
        linux=api.LinuxContainerConfig(security_context=security, resources=resources))


def run_pod(cri, config: api.PodSandboxConfig, handler: str = "") -> str:
    return cri.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config, runtime_handler=handler)).pod_sandbox_id


def start_container(cri, pod_id: str, pod: api.PodSandboxConfig, config: api.ContainerConfig) -> str:
    container_id = cri.runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=config, sandbox_config=pod)).container_id
    cri.runtime.StartContainer(api.StartContainerRequest(container_id=container_id))
    return container_id


def status(cri, container_id: str) -> api.ContainerStatus:
    return cri.runtime.ContainerStatus(api.ContainerStatusRequest(container_id=container_id)).status


def wait_state(cri, container_id: str, state: int, timeout: float = 20) -> api.ContainerStatus:
    deadline = time.monotonic() + timeout
    current = status(cri, container_id)
    while current.state != state and time.monotonic() < deadline:
        time.sleep(0.05)
        current = status(cri, container_id)
    assert current.state == state, f"container state {current.state}, wanted {state}"
    return current


def exec_sync(cri, container_id: str, *command: str, timeout: int = 20) -> api.ExecSyncResponse:
    return cri.runtime.ExecSync(api.ExecSyncRequest(container_id=container_id, cmd=list(command), timeout=timeout))


def wait_for(predicate, timeout: float = 20, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def tcp_fetch(address: str, port: int, timeout: float = 2) -> bytes:
    """What a TCP server at the address sends first (b"" when nothing answers)."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            return conn.recv(100)
    except OSError:
        return b""


SERVE_PONG = ["sh", "-c", "while true; do echo pong | nc -l -p 9000; done"]


def random_layer(size: int) -> tuple[bytes, str]:
    """A gzip layer of one file of ``size`` random bytes, and its diff id."""
    import gzip
    import hashlib
    import io
    import os
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return gzip.compress(data.getvalue(), compresslevel=1), "sha256:" + hashlib.sha256(data.getvalue()).hexdigest()
