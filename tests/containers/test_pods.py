"""``ketch pod``: podman's pods on ketch's model (pinned namespaces, no infra container), and
``ketch run --pod``."""

from __future__ import annotations

import json
import socket
import time

from tests.containers.conftest import IMAGE


def _fetch(port: int, patience: float = 20) -> bytes:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                data = conn.recv(100)
                if data:
                    return data
        except OSError:
            pass
        time.sleep(0.05)
    return b""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_pod_shares_namespaces_and_publishes_ports(ketch_env):
    port = _free_port()
    pod_id = ketch_env.cli("pod", "create", "--name", "web-pod", "-p", f"127.0.0.1:{port}:80", "--share",
                           "net,ipc,uts,pid", check=True).stdout.strip()
    try:
        assert len(pod_id) == 64
        ketch_env.cli("run", "-d", "--pod", "web-pod", "--name", "pod-server", IMAGE, "sh", "-c",
                      "while true; do echo served | nc -l -p 80; done", check=True)
        out = ketch_env.cli("run", "--rm", "--pod", "web-pod", IMAGE, "sh", "-c",
                            "hostname; ps -o args | grep -cx 'nc -l -p 80'", check=True).stdout.split()
        assert out == ["web-pod", "1"]  # the pod's hostname; the server's processes seen (shared PID namespace)
        ns = lambda name, kind: ketch_env.cli("exec", name, "readlink", f"/proc/self/ns/{kind}").stdout  # noqa: E731
        ketch_env.cli("run", "-d", "--pod", "web-pod", "--name", "pod-peer", IMAGE, "sleep", "60", check=True)
        for kind in ("net", "ipc", "uts", "pid"):
            assert ns("pod-server", kind) == ns("pod-peer", kind), kind
        assert _fetch(port) == b"served\n"  # the pod's published port
        listed = json.loads(ketch_env.cli("pod", "ps", "--format", "json", check=True).stdout)
        entry = next(p for p in listed if p["Id"] == pod_id)
        assert (entry["Name"], entry["State"], entry["NumContainers"]) == ("web-pod", "Running", 2)
        shown = ketch_env.cli("pod", "ps", "--format", "{{.Name}} {{.Status}} {{.NumberOfContainers}}", check=True)
        assert "web-pod Running 2" in shown.stdout.splitlines()
        inspected = json.loads(ketch_env.cli("pod", "inspect", "web-pod", check=True).stdout)
        assert sorted(c["Name"] for c in inspected["Containers"]) == ["pod-peer", "pod-server"]
        assert inspected["InfraConfig"]["PortBindings"][0]["host_port"] == port
        # ports belong to the pod: a container of it cannot publish its own
        refused = ketch_env.cli("run", "--pod", "web-pod", "-p", "8081:81", IMAGE, "true")
        assert refused.returncode == 125 and "published ports must be defined when the pod is created" in \
            refused.stderr
        ketch_env.cli("pod", "stop", "-t", "0", "web-pod", check=True)
        assert json.loads(ketch_env.cli("pod", "inspect", "web-pod", check=True).stdout)["State"] == "Exited"
        ketch_env.cli("pod", "start", "web-pod", check=True)
        assert _fetch(port) == b"served\n"
        busy = ketch_env.cli("pod", "rm", "web-pod")
        assert busy.returncode != 0 and "running containers" in busy.stderr
    finally:
        ketch_env.cli("pod", "rm", "-f", "-t", "0", "web-pod")
    assert ketch_env.cli("pod", "exists", "web-pod").returncode == 1
    assert [c for c in ketch_env.ps() if c["Names"][0].startswith("pod-")] == []
    assert _fetch(port, patience=0) == b""  # the published port went with the pod


def test_pod_errors(ketch_env):
    missing = ketch_env.cli("run", "--pod", "no-such-pod", IMAGE, "true")
    assert missing.returncode == 125 and "no pod with name or ID no-such-pod found" in missing.stderr
    ketch_env.cli("pod", "create", "--name", "twice", check=True)
    try:
        again = ketch_env.cli("pod", "create", "--name", "twice")
        assert again.returncode != 0 and "already in use" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
        bad = ketch_env.cli("pod", "create", "--share", "net,bogus")
        assert bad.returncode != 0 and "invalid --share 'bogus'" in bad.stderr
    finally:
        ketch_env.cli("pod", "rm", "twice", check=True)
    assert ketch_env.cli("pod", "inspect", "twice").returncode != 0
