"""RuntimeService against the real server: pods (pinned namespaces, CNI network, DNS, hostname),
containers (lifecycle, logs, namespaces, security context, resources, mounts), ExecSync,
statistics, and the statuses the kubelet expects for bad input."""

from __future__ import annotations

import json
import os
import re

import grpc
import pytest

import ketch.cri.api_pb2 as api
from tests.cri.helpers import (
    SERVE_PONG,
    container_config,
    exec_sync,
    pod_config,
    run_pod,
    start_container,
    status,
    tcp_fetch,
    wait_for,
    wait_state,
)

LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$")


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_version_status_and_runtime_config(cri):
    version = cri.runtime.Version(api.VersionRequest(version="v1"))
    assert (version.runtime_name, version.runtime_api_version) == ("ketch", "v1")
    assert re.match(r"^\d+\.\d+\.\d+", version.runtime_version)
    answer = cri.runtime.Status(api.StatusRequest(verbose=True))
    conditions = {c.type: c.status for c in answer.status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert "" in {h.name for h in answer.runtime_handlers}  # the default handler
    assert cri.runtime.RuntimeConfig(api.RuntimeConfigRequest()).linux.cgroup_driver == api.CGROUPFS
    cri.runtime.UpdateRuntimeConfig(api.UpdateRuntimeConfigRequest(
        runtime_config=api.RuntimeConfig(network_config=api.NetworkConfig(pod_cidr="10.244.0.0/24"))))


def test_pod_lifecycle_network_and_idempotent_stop_remove(cri):
    config = pod_config(hostname="webhost", labels={"app": "web", "tier": "front"}, annotations={"a/b": "c"},
                        dns=api.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local"],
                                          options=["ndots:5"]))
    pod_id = run_pod(cri, config)
    answer = cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True))
    pod = answer.status
    assert pod.state == api.SANDBOX_READY and pod.id == pod_id
    assert pod.metadata == config.metadata
    assert dict(pod.labels) == {"app": "web", "tier": "front"} and dict(pod.annotations) == {"a/b": "c"}
    assert pod.network.ip.startswith(cri.subnet + "."), pod.network.ip
    assert pod.created_at > 0
    info = json.loads(answer.info["info"])
    assert set(info["namespaces"]) == {"net", "ipc", "uts"}
    # hostname and resolv.conf inside a container of the pod; its address answers from the host,
    # through the bridge CNI made
    container_id = start_container(cri, pod_id, config, container_config("c", SERVE_PONG))
    assert wait_for(lambda: tcp_fetch(pod.network.ip, 9000)) == b"pong\n"
    assert exec_sync(cri, container_id, "hostname").stdout == b"webhost\n"
    resolv = exec_sync(cri, container_id, "cat", "/etc/resolv.conf").stdout.decode()
    assert "nameserver 10.96.0.10" in resolv and "search default.svc.cluster.local" in resolv
    assert "options ndots:5" in resolv
    # filters: id, state, labels
    listed = lambda f: [p.id for p in cri.runtime.ListPodSandbox(api.ListPodSandboxRequest(filter=f)).items]  # noqa: E731
    assert listed(api.PodSandboxFilter(id=pod_id)) == [pod_id]
    assert pod_id in listed(api.PodSandboxFilter(label_selector={"app": "web"}))
    assert pod_id not in listed(api.PodSandboxFilter(label_selector={"app": "other"}))
    ready = api.PodSandboxStateValue(state=api.SANDBOX_READY)
    assert pod_id in listed(api.PodSandboxFilter(state=ready))
    cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    assert wait_state(cri, container_id, api.CONTAINER_EXITED).exit_code == 137
    assert pod_id not in listed(api.PodSandboxFilter(state=ready))
    assert cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.state == \
        api.SANDBOX_NOTREADY
    # the address went back: nothing answers it any more
    assert tcp_fetch(pod.network.ip, 9000, timeout=1) == b""
    cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))  # again: no error
    cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))  # again: no error
    assert _code(lambda: cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id))) == \
        grpc.StatusCode.NOT_FOUND
    assert _code(lambda: status(cri, container_id)) == grpc.StatusCode.NOT_FOUND  # its containers went too


def test_container_lifecycle_logs_and_filters(cri, tmp_path):
    config = pod_config(log_directory=str(tmp_path / "pods"))
    pod_id = run_pod(cri, config)
    script = "echo one; echo two >&2; printf 'no newline'; head -c 40000 /dev/zero | tr '\\0' x; echo; exit 3"
    created = cri.runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=container_config("job", ["sh", "-c", script], labels={"role": "job"}, annotations={"x": "y"})))
    container_id = created.container_id
    before = status(cri, container_id)
    assert before.state == api.CONTAINER_CREATED and before.started_at == 0 and before.created_at > 0
    assert before.log_path == str(tmp_path / "pods" / "job" / "0.log")
    assert dict(before.labels) == {"role": "job"} and dict(before.annotations) == {"x": "y"}
    assert before.image.image == "docker.io/library/busybox:latest" and before.image_ref
    cri.runtime.StartContainer(api.StartContainerRequest(container_id=container_id))
    after = wait_state(cri, container_id, api.CONTAINER_EXITED)
    assert (after.exit_code, after.reason) == (3, "Error")
    assert after.finished_at >= after.started_at > 0
    lines = (tmp_path / "pods" / "job" / "0.log").read_bytes().splitlines()
    parsed = [LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines[:3]
    records = [(m.group(2), m.group(3), m.group(4)) for m in parsed]
    assert (b"stdout", b"F", b"one") in records and (b"stderr", b"F", b"two") in records
    # a line longer than a record: partial records (P), then the rest with F; together the line
    long_parts = [r for r in records if r[0] == b"stdout" and r[2] not in (b"one",)]
    assert any(tag == b"P" for _, tag, _ in long_parts)
    assert b"".join(text for _, _, text in long_parts) == b"no newline" + b"x" * 40000
    # the second attempt of a container name, and filters
    second = start_container(cri, pod_id, config, container_config(
        "job", ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"], attempt=1))
    ids = lambda f: {c.id for c in cri.runtime.ListContainers(api.ListContainersRequest(filter=f)).containers}  # noqa: E731
    running = api.ContainerStateValue(state=api.CONTAINER_RUNNING)
    assert ids(api.ContainerFilter(pod_sandbox_id=pod_id)) == {container_id, second}
    assert ids(api.ContainerFilter(state=running, pod_sandbox_id=pod_id)) == {second}
    assert ids(api.ContainerFilter(label_selector={"role": "job"})) == {container_id}
    assert ids(api.ContainerFilter(id=second)) == {second}
    # stop: idempotent; remove: idempotent, and the status is gone
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=second, timeout=10))
    assert status(cri, second).exit_code == 0  # it ended on TERM, within the grace period
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=second, timeout=10))
    for _ in range(2):
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=second))
    assert _code(lambda: status(cri, second)) == grpc.StatusCode.NOT_FOUND


def test_stop_timeout_then_kill(cri):
    config = pod_config()
    pod_id = run_pod(cri, config)
    stubborn = start_container(cri, pod_id, config, container_config("trap", ["sh", "-c", "trap '' TERM; sleep 60 & wait"]))
    wait_for(lambda: exec_sync(cri, stubborn, "true").exit_code == 0)
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=stubborn, timeout=1))
    assert status(cri, stubborn).exit_code == 137  # the TERM was ignored: killed after the timeout


def test_pod_namespaces_shared_and_pid_modes(cri):
    config = pod_config(pid=api.POD)
    pod_id = run_pod(cri, config)
    server = start_container(cri, pod_id, config, container_config("server", SERVE_PONG, pid=api.POD))
    client = start_container(cri, pod_id, config, container_config("client", ["sleep", "60"], pid=api.POD))
    ns = lambda cid, kind: exec_sync(cri, cid, "readlink", f"/proc/self/ns/{kind}").stdout  # noqa: E731
    for kind in ("net", "ipc", "uts", "pid"):
        assert ns(server, kind) == ns(client, kind), kind
    assert ns(server, "mnt") != ns(client, "mnt")
    # the network is one: the client reaches the server on localhost
    answer = wait_for(lambda: exec_sync(cri, client, "sh", "-c", "sleep 1 | nc 127.0.0.1 9000").stdout)
    assert answer == b"pong\n"
    # a shared PID namespace: each sees the other's processes (PID 1 is the pod's holder)
    processes = exec_sync(cri, client, "ps", "-o", "args").stdout.decode()
    assert "sleep 60" in processes and "nc -l -p 9000" in processes
    # a container's own PID namespace in another pod: it is PID 1 there
    other = pod_config(pid=api.CONTAINER)
    other_id = run_pod(cri, other)
    alone = start_container(cri, other_id, other, container_config("alone", ["sleep", "60"]))
    assert exec_sync(cri, alone, "cat", "/proc/1/cmdline").stdout == b"sleep\x0060\x00"
    # TARGET (the kubelet's debug containers): the target container's PID namespace
    debug = container_config("debug", ["sleep", "61"])
    debug.linux.security_context.namespace_options.pid = api.TARGET
    debug.linux.security_context.namespace_options.target_id = alone
    debugger = start_container(cri, other_id, other, debug)
    assert exec_sync(cri, debugger, "cat", "/proc/1/cmdline").stdout == b"sleep\x0060\x00"


def test_host_network_pod(cri):
    config = pod_config(network=api.NODE)
    pod_id = run_pod(cri, config)
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"]))
    host_ns = os.readlink("/proc/self/ns/net")
    assert exec_sync(cri, container_id, "readlink", "/proc/self/ns/net").stdout.decode().strip() == host_ns
    assert not cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip


def test_security_context(cri):
    config = pod_config()
    pod_id = run_pod(cri, config)

    def run(name, security, *command):
        container_id = start_container(cri, pod_id, config,
                                       container_config(name, ["sleep", "60"], security=security))
        return exec_sync(cri, container_id, *command)

    as_user = api.LinuxContainerSecurityContext(run_as_user=api.Int64Value(value=1000),
                                                run_as_group=api.Int64Value(value=2000), supplemental_groups=[3000])
    assert run("user", as_user, "id").stdout.decode().split() == ["uid=1000", "gid=2000", "groups=2000,3000"]
    by_name = api.LinuxContainerSecurityContext(run_as_username="nobody")
    assert run("named", by_name, "id", "-u").stdout == b"65534\n"
    read_only = api.LinuxContainerSecurityContext(readonly_rootfs=True)
    assert run("ro", read_only, "touch", "/x").exit_code != 0
    drop_all = api.LinuxContainerSecurityContext(capabilities=api.Capability(drop_capabilities=["ALL"],
                                                                             add_capabilities=["NET_ADMIN"]))
    status_lines = run("caps", drop_all, "cat", "/proc/self/status").stdout.decode()
    assert re.search(r"CapEff:\s+0000000000001000", status_lines), status_lines  # NET_ADMIN (12) only
    privileged = api.LinuxContainerSecurityContext(privileged=True)
    privileged_status = run("priv", privileged, "cat", "/proc/self/status").stdout.decode()
    with open("/proc/self/status") as f:  # every capability this host gives root
        host_effective = re.search(r"CapEff:\s+(\w+)", f.read()).group(1)
    assert re.search(r"CapEff:\s+(\w+)", privileged_status).group(1) == host_effective
    no_new = api.LinuxContainerSecurityContext(no_new_privs=True)
    assert re.search(r"NoNewPrivs:\s+1", run("nnp", no_new, "cat", "/proc/self/status").stdout.decode())
    masked = api.LinuxContainerSecurityContext(masked_paths=["/proc/kcore", "/etc/hostname"],
                                               readonly_paths=["/proc/sys"])
    assert run("masked", masked, "cat", "/etc/hostname").stdout == b""
    # seccomp: the runtime's default filter, none, and a missing Localhost profile
    default = api.LinuxContainerSecurityContext(seccomp=api.SecurityProfile(profile_type=api.SecurityProfile.RuntimeDefault))
    assert re.search(r"Seccomp:\s+2", run("seccomp", default, "cat", "/proc/self/status").stdout.decode())
    unconfined = api.LinuxContainerSecurityContext(seccomp=api.SecurityProfile(profile_type=api.SecurityProfile.Unconfined))
    assert re.search(r"Seccomp:\s+0", run("noseccomp", unconfined, "cat", "/proc/self/status").stdout.decode())
    missing = api.LinuxContainerSecurityContext(seccomp=api.SecurityProfile(
        profile_type=api.SecurityProfile.Localhost, localhost_ref="/nonexistent/profile.json"))
    assert _code(lambda: cri.runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=container_config("bad-seccomp", ["true"], security=missing)))) == grpc.StatusCode.INVALID_ARGUMENT


def test_localhost_seccomp_profile(cri, tmp_path):
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    config = pod_config()
    pod_id = run_pod(cri, config)
    security = api.LinuxContainerSecurityContext(seccomp=api.SecurityProfile(
        profile_type=api.SecurityProfile.Localhost, localhost_ref=str(profile)))
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"], security=security))
    assert exec_sync(cri, container_id, "mkdir", "/tmp/x").exit_code != 0
    assert exec_sync(cri, container_id, "touch", "/tmp/x").exit_code == 0


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                with open(f"/sys/fs/cgroup/{controller}{path}/{name}") as g:
                    return g.read().strip()
    raise AssertionError(f"no {controller} cgroup")


def _pid(cri, container_id: str) -> int:
    info = cri.runtime.ContainerStatus(api.ContainerStatusRequest(container_id=container_id, verbose=True)).info
    return json.loads(info["info"])["pid"]


def test_resources_update_and_oom_score_adj(cri):
    config = pod_config(cgroup_parent="/ketch-cri-test/pod1")
    pod_id = run_pod(cri, config)
    resources = api.LinuxContainerResources(cpu_shares=512, cpu_quota=50000, cpu_period=100000,
                                            memory_limit_in_bytes=64 * 1024 * 1024, oom_score_adj=-900)
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"], resources=resources))
    pid = _pid(cri, container_id)
    try:
        assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
        assert _cgroup_file(pid, "cpu", "cpu.shares") == "512"
        assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
        with open(f"/proc/{pid}/cgroup") as f:
            assert "/ketch-cri-test/pod1/" in f.read()
        # no CAP_SYS_RESOURCE here: a value below the server's own is raised to it (containerd's
        # restrict_oom_score_adj); with the capability it is kept
        with open(f"/proc/{cri.process.pid}/oom_score_adj") as f:
            own = int(f.read())
        with open(f"/proc/{pid}/oom_score_adj") as f:
            assert int(f.read()) == max(-900, own) if own > -900 else -900
        cri.runtime.UpdateContainerResources(api.UpdateContainerResourcesRequest(
            container_id=container_id, linux=api.LinuxContainerResources(memory_limit_in_bytes=128 * 1024 * 1024)))
        assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(128 * 1024 * 1024)
        assert status(cri, container_id).resources.linux.memory_limit_in_bytes == 128 * 1024 * 1024
    finally:
        cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container_id))
        for controller in os.listdir("/sys/fs/cgroup"):
            for path in (f"/sys/fs/cgroup/{controller}/ketch-cri-test/pod1", f"/sys/fs/cgroup/{controller}/ketch-cri-test"):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


def test_mounts_and_devices(cri, tmp_path):
    import subprocess

    shared = tmp_path / "data"
    shared.mkdir()
    # the source is a shared mount of its own, so that propagation has something to carry
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ktest-src", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        (shared / "hello").write_text("from the host")
        (shared / "sub").mkdir()
        link = tmp_path / "link"
        link.symlink_to(shared)
        config = pod_config()
        pod_id = run_pod(cri, config)
        mounts = [api.Mount(container_path="/data", host_path=str(shared)),
                  api.Mount(container_path="/ro", host_path=str(link), readonly=True,
                            propagation=api.PROPAGATION_HOST_TO_CONTAINER),
                  api.Mount(container_path="/both", host_path=str(shared),
                            propagation=api.PROPAGATION_BIDIRECTIONAL)]
        # (privileged: Kubernetes allows Bidirectional only there, and mounting needs CAP_SYS_ADMIN)
        container = container_config("c", ["sleep", "60"], mounts=mounts,
                                     security=api.LinuxContainerSecurityContext(privileged=True))
        container.devices.append(api.Device(container_path="/dev/mynull", host_path="/dev/null", permissions="rw"))
        container_id = start_container(cri, pod_id, config, container)
        assert exec_sync(cri, container_id, "cat", "/ro/hello").stdout == b"from the host"
        assert exec_sync(cri, container_id, "sh", "-c", "echo x > /data/new").exit_code == 0
        assert (shared / "new").read_text() == "x\n"
        assert exec_sync(cri, container_id, "sh", "-c", "echo x > /ro/other").exit_code != 0
        assert exec_sync(cri, container_id, "sh", "-c", "echo hi > /dev/mynull").exit_code == 0
        # a mount made on the host afterwards: seen through rslave and rshared, not through rprivate
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ktest-later", str(shared / "sub")], check=True)
        try:
            mounted = exec_sync(cri, container_id, "cat", "/proc/self/mountinfo").stdout.decode()
            points = {line.split()[4] for line in mounted.splitlines()}
            assert {"/ro/sub", "/both/sub"} <= points and "/data/sub" not in points, points
        finally:
            subprocess.run(["umount", str(shared / "sub")], check=True)
        # a mount made in the container under the rshared one reaches the host
        assert exec_sync(cri, container_id, "mount", "-t", "tmpfs", "inner", "/both/sub").exit_code == 0
        with open("/proc/self/mountinfo") as f:
            assert any(line.split()[4] == str(shared / "sub") for line in f)
        subprocess.run(["umount", str(shared / "sub")], check=True)
        # a missing host path: refused, and nothing left
        before = {c.id for c in cri.runtime.ListContainers(api.ListContainersRequest()).containers}
        bad = container_config("bad", ["true"], mounts=[api.Mount(container_path="/x", host_path=str(tmp_path / "no"))])
        assert _code(lambda: cri.runtime.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=pod_id, sandbox_config=config, config=bad))) == grpc.StatusCode.INVALID_ARGUMENT
        assert {c.id for c in cri.runtime.ListContainers(api.ListContainersRequest()).containers} == before
        cri.remove_everything()  # (the container's mounts of the source go before the source does)
    finally:
        subprocess.run(["umount", "-R", "-l", str(shared)], capture_output=True)


def test_exec_sync(cri):
    config = pod_config()
    pod_id = run_pod(cri, config)
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"],
                                                                          envs=[api.KeyValue(key="GREETING", value="hi")]))
    answer = exec_sync(cri, container_id, "sh", "-c", "echo $GREETING; echo err >&2; exit 7")
    assert (answer.stdout, answer.stderr, answer.exit_code) == (b"hi\n", b"err\n", 7)
    big = exec_sync(cri, container_id, "head", "-c", "3000000", "/dev/zero")
    assert len(big.stdout) == 3000000 and big.exit_code == 0
    assert _code(lambda: exec_sync(cri, container_id, "sleep", "30", timeout=1)) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sleep 30" not in exec_sync(cri, container_id, "ps", "-o", "args").stdout.decode()  # killed at the timeout
    assert _code(lambda: exec_sync(cri, container_id, "/no/such/command")) == grpc.StatusCode.UNKNOWN
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=0))
    assert _code(lambda: exec_sync(cri, container_id, "true")) == grpc.StatusCode.INVALID_ARGUMENT


def test_stats(cri):
    config = pod_config(labels={"stats": "yes"})
    pod_id = run_pod(cri, config)
    container_id = start_container(cri, pod_id, config, container_config("c", ["sh", "-c", "dd if=/dev/zero of=/f "
                                                                                        "bs=1k count=256; sleep 60"]))
    wait_for(lambda: exec_sync(cri, container_id, "test", "-s", "/f").exit_code == 0)
    stats = cri.runtime.ContainerStats(api.ContainerStatsRequest(container_id=container_id)).stats
    assert stats.attributes.id == container_id and stats.attributes.metadata.name == "c"
    assert stats.cpu.timestamp > 0 and stats.cpu.usage_core_nano_seconds.value > 0
    assert stats.memory.working_set_bytes.value > 0
    assert stats.writable_layer.used_bytes.value >= 256 * 1024
    listed = cri.runtime.ListContainerStats(api.ListContainerStatsRequest(
        filter=api.ContainerStatsFilter(pod_sandbox_id=pod_id))).stats
    assert [s.attributes.id for s in listed] == [container_id]
    pod_stats = cri.runtime.PodSandboxStats(api.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
    assert pod_stats.attributes.id == pod_id
    assert [c.attributes.id for c in pod_stats.linux.containers] == [container_id]
    assert pod_stats.linux.network.default_interface.name == "eth0"
    assert pod_stats.linux.network.default_interface.rx_bytes.value >= 0
    all_pods = cri.runtime.ListPodSandboxStats(api.ListPodSandboxStatsRequest(
        filter=api.PodSandboxStatsFilter(label_selector={"stats": "yes"}))).stats
    assert [s.attributes.id for s in all_pods] == [pod_id]


def test_reopen_container_log(cri, tmp_path):
    config = pod_config(log_directory=str(tmp_path))
    pod_id = run_pod(cri, config)
    container_id = start_container(cri, pod_id, config, container_config(
        "c", ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]))
    log = tmp_path / "c" / "0.log"
    assert wait_for(lambda: log.exists() and b"tick" in log.read_bytes())
    log.rename(tmp_path / "c" / "0.log.rotated")  # as the kubelet rotates it
    cri.runtime.ReopenContainerLog(api.ReopenContainerLogRequest(container_id=container_id))
    assert wait_for(lambda: log.exists() and b"tick" in log.read_bytes())
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=0))
    assert _code(lambda: cri.runtime.ReopenContainerLog(api.ReopenContainerLogRequest(
        container_id=container_id))) == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_input_gets_the_expected_status_and_leaves_nothing(cri):
    config = pod_config()
    missing = "0" * 64
    container = container_config("c", ["true"])
    assert _code(lambda: cri.runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=missing, config=container, sandbox_config=config))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: cri.runtime.StartContainer(api.StartContainerRequest(container_id=missing))) == \
        grpc.StatusCode.NOT_FOUND
    assert _code(lambda: cri.runtime.StopContainer(api.StopContainerRequest(container_id=missing))) == \
        grpc.StatusCode.NOT_FOUND
    cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=missing))  # removed already: fine
    assert _code(lambda: cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=missing))) == \
        grpc.StatusCode.NOT_FOUND  # (as containerd; the kubelet takes it as stopped)
    cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=missing))
    assert _code(lambda: cri.runtime.RunPodSandbox(api.RunPodSandboxRequest())) == grpc.StatusCode.INVALID_ARGUMENT
    no_uid = pod_config()
    no_uid.metadata.uid = ""
    assert _code(lambda: run_pod(cri, no_uid)) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: run_pod(cri, pod_config(), handler="no-such-handler")) == grpc.StatusCode.INVALID_ARGUMENT
    pod_id = run_pod(cri, config)
    assert _code(lambda: run_pod(cri, config)) == grpc.StatusCode.ALREADY_EXISTS  # the same name and attempt
    assert _code(lambda: cri.runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=container_config("c", ["true"], image="localhost/no-such-image:1"),
        sandbox_config=config))) == grpc.StatusCode.NOT_FOUND
    first = cri.runtime.CreateContainer(api.CreateContainerRequest(pod_sandbox_id=pod_id, config=container,
                                                                   sandbox_config=config)).container_id
    assert _code(lambda: cri.runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=container, sandbox_config=config))) == grpc.StatusCode.ALREADY_EXISTS
    listed = cri.runtime.ListContainers(api.ListContainersRequest()).containers
    assert [c.id for c in listed] == [first]
    pods = cri.runtime.ListPodSandbox(api.ListPodSandboxRequest()).items
    assert [p.id for p in pods] == [pod_id]


def test_twenty_pods_at_once_get_distinct_addresses(cri):
    from concurrent.futures import ThreadPoolExecutor

    configs = [pod_config() for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        pod_ids = list(pool.map(lambda c: run_pod(cri, c), configs))
    addresses = [cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=p)).status.network.ip
                 for p in pod_ids]
    assert len(set(addresses)) == 20 and all(a.startswith(cri.subnet + ".") for a in addresses)
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda p: cri.runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=p)), pod_ids))
        list(pool.map(lambda p: cri.runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=p)), pod_ids))


def test_port_mapping_reaches_the_pod(cri):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    config = pod_config(ports=[api.PortMapping(protocol=api.TCP, container_port=80, host_port=host_port,
                                               host_ip="127.0.0.1")])
    pod_id = run_pod(cri, config)
    start_container(cri, pod_id, config, container_config("web", ["sh", "-c",
                                                               "while true; do echo served | nc -l -p 80; done"]))
    pod_ip = cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip
    assert wait_for(lambda: tcp_fetch(pod_ip, 80)) == b"served\n"  # straight to the pod's address
    assert wait_for(lambda: tcp_fetch("127.0.0.1", host_port)) == b"served\n"  # the host port (portmap's DNAT)


def test_pod_sysctls_ipc_modes_and_hugepage_limits(cri):
    sysctls = {"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"}
    config = pod_config(sysctls=sysctls)
    pod_id = run_pod(cri, config)
    # the kubelet sends a limit for each page size the node has; without a hugetlb controller
    # (as here, unless it is mounted) they are dropped and the container runs
    resources = api.LinuxContainerResources(hugepage_limits=[api.HugepageLimit(page_size="2MB", limit=0)])
    container_id = start_container(cri, pod_id, config, container_config("c", ["sleep", "60"], resources=resources))
    read = lambda key: exec_sync(cri, container_id, "cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()  # noqa: E731
    assert {key: read(key).decode() for key in sysctls} == sysctls
    # a pod in the host's IPC namespace; net.* sysctls refused for a pod in the host's network
    host_ipc = pod_config()
    host_ipc.linux.security_context.namespace_options.ipc = api.NODE
    other = run_pod(cri, host_ipc)
    in_host_ipc = start_container(cri, other, host_ipc, container_config("c", ["sleep", "60"]))
    assert exec_sync(cri, in_host_ipc, "readlink", "/proc/self/ns/ipc").stdout.decode().strip() == \
        os.readlink("/proc/self/ns/ipc")
    refused = pod_config(network=api.NODE, sysctls={"net.ipv4.ip_forward": "1"})
    assert _code(lambda: run_pod(cri, refused)) == grpc.StatusCode.INVALID_ARGUMENT


def test_verbose_pod_status_runs_cni_check(cri):
    pod_id = run_pod(cri, pod_config())
    answer = cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True))
    assert json.loads(answer.info["info"])["networkCheck"] == "ok"
    # the pod's interface taken away behind CNI's back: CHECK says so
    netns = json.loads(answer.info["info"])["namespaces"]["net"]
    import subprocess

    subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "del", "eth0"], check=True)
    answer = cri.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True))
    assert json.loads(answer.info["info"])["networkCheck"] not in ("ok", "")


def test_cgroup_parent_forms():
    from ketch.cri.sandboxes import cgroup_parent

    assert cgroup_parent("kubepods-burstable-pod1.slice", "systemd") == \
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
    assert cgroup_parent("/kubepods/burstable/pod1", "cgroupfs") == "/kubepods/burstable/pod1"
    assert cgroup_parent("kubepods", "cgroupfs") == "/kubepods"
    assert cgroup_parent("", "cgroupfs") is None
