"""The CRI's numbers and changes of running containers: statistics from their cgroups,
UpdateContainerResources, ReopenContainerLog, and the image file system's usage."""

from __future__ import annotations

import os
import time
from typing import Any

import ketch.cri.api_pb2 as api


def _u64(value: int | float) -> api.UInt64Value:
    return api.UInt64Value(value=max(0, int(value)))


def container_stats(sandboxes, record) -> api.ContainerStats:
    from ketch.containers import stats

    cri = record.meta["cri"]
    now = time.time_ns()
    current = sandboxes.engine.status(record.id)
    numbers = stats.sample(record, current, sandboxes.engine.cgroup_path(record.id))
    message = api.ContainerStats()
    message.attributes.id = record.id
    message.attributes.metadata.name = cri["metadata"].get("name", "")
    message.attributes.metadata.attempt = int(cri["metadata"].get("attempt", 0))
    message.attributes.labels.update(cri["labels"] or {})
    message.attributes.annotations.update(cri["annotations"] or {})
    message.cpu.timestamp = now
    message.cpu.usage_core_nano_seconds.CopyFrom(_u64(numbers["CPUNano"]))
    message.memory.timestamp = now
    message.memory.working_set_bytes.CopyFrom(_u64(numbers["MemUsage"]))
    if numbers["MemLimit"]:
        message.memory.available_bytes.CopyFrom(_u64(numbers["MemLimit"] - numbers["MemUsage"]))
    message.memory.usage_bytes.CopyFrom(_u64(numbers["MemUsage"]))
    message.writable_layer.timestamp = now
    upper = sandboxes.store.container_upper(record.id)
    message.writable_layer.fs_id.mountpoint = str(upper)
    used, inodes = _tree_usage(str(upper))
    message.writable_layer.used_bytes.CopyFrom(_u64(used))
    message.writable_layer.inodes_used.CopyFrom(_u64(inodes))
    return message


def pod_stats(sandboxes, pod) -> api.PodSandboxStats:
    now = time.time_ns()
    config = pod.data["cri"]
    message = api.PodSandboxStats()
    message.attributes.id = pod.id
    metadata = config.get("metadata") or {}
    message.attributes.metadata.name = metadata.get("name", "")
    message.attributes.metadata.uid = metadata.get("uid", "")
    message.attributes.metadata.namespace = metadata.get("namespace", "")
    message.attributes.metadata.attempt = int(metadata.get("attempt", 0))
    message.attributes.labels.update(config.get("labels") or {})
    message.attributes.annotations.update(config.get("annotations") or {})
    containers = [container_stats(sandboxes, r) for r in sandboxes.containers_of(pod.id)
                  if sandboxes.container_state(r)[0] == "CONTAINER_RUNNING"]
    linux = message.linux
    linux.containers.extend(containers)
    linux.cpu.timestamp = now
    linux.cpu.usage_core_nano_seconds.CopyFrom(_u64(sum(c.cpu.usage_core_nano_seconds.value for c in containers)))
    linux.memory.timestamp = now
    linux.memory.working_set_bytes.CopyFrom(_u64(sum(c.memory.working_set_bytes.value for c in containers)))
    linux.process.timestamp = now
    linux.network.timestamp = now
    netns = pod.namespace_path("net")
    if netns and os.path.exists(netns):
        for name, (received, errors_in, sent, errors_out) in _interfaces(netns).items():
            usage = api.NetworkInterfaceUsage(name=name, rx_bytes=_u64(received), rx_errors=_u64(errors_in),
                                              tx_bytes=_u64(sent), tx_errors=_u64(errors_out))
            if name == "eth0":
                linux.network.default_interface.CopyFrom(usage)
            elif name != "lo":
                linux.network.interfaces.append(usage)
    return message


def _interfaces(netns: str) -> dict[str, tuple[int, int, int, int]]:
    """/proc/net/dev of a network namespace, read in a child that entered it."""
    from ketch.containers.netns import in_namespace

    def work() -> dict:
        with open("/proc/net/dev") as f:
            lines = f.read().splitlines()[2:]
        table = {}
        for line in lines:
            name, _, rest = line.partition(":")
            fields = rest.split()
            table[name.strip()] = (int(fields[0]), int(fields[2]), int(fields[8]), int(fields[10]))
        return table

    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        table = in_namespace(fd, work)
    finally:
        os.close(fd)
    return {k: tuple(v) for k, v in (table or {}).items()}


def _tree_usage(path: str) -> tuple[int, int]:
    total = inodes = 0
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
            inodes += 1
    return total, inodes


def filesystem_usage(store) -> api.FilesystemUsage:
    usage = api.FilesystemUsage(timestamp=time.time_ns())
    usage.fs_id.mountpoint = str(store.root)
    used = sum(store.layer_sizes([layer for image in store.images() for layer in image.layers]) or [0])
    usage.used_bytes.value = max(0, int(used))
    usage.inodes_used.value = 0
    return usage


def update(sandboxes, record, linux: dict[str, Any]) -> None:
    """UpdateContainerResources: the OCI resources of the CRI's, applied to the running
    container's cgroup, and kept for ContainerStatus."""
    resources: dict[str, Any] = {}
    cpu = {k: int(linux[c]) for k, c in (("shares", "cpuShares"), ("quota", "cpuQuota"), ("period", "cpuPeriod"))
           if int(linux.get(c) or 0)}
    for key, name in (("cpus", "cpusetCpus"), ("mems", "cpusetMems")):
        if linux.get(name):
            cpu[key] = linux[name]
    if cpu:
        resources["cpu"] = cpu
    if int(linux.get("memoryLimitInBytes") or 0):
        resources["memory"] = {"limit": int(linux["memoryLimitInBytes"])}
    if linux.get("hugepageLimits"):
        resources["hugepageLimits"] = [{"pageSize": h["pageSize"], "limit": int(h.get("limit") or 0)}
                                       for h in linux["hugepageLimits"]]
    if linux.get("unified"):
        resources["unified"] = dict(linux["unified"])
    sandboxes.engine.update_resources(record.id, resources)
    cri = dict(record.meta["cri"])
    cri["resources"] = {**(cri.get("resources") or {}), **linux}
    sandboxes.store.update_container_metadata(record.id, {"cri": cri})


def reopen_log(sandboxes, record) -> None:
    sandboxes.engine.reopen_log(record.id)
