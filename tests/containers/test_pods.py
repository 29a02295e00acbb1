"""``ketch pod``: podman's pods on ketch's model (pinned namespaces, no infra container), and
``ketch run --pod``."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.conftest import AS_USER
from tests.containers.conftest import IMAGE

BRIDGE = ("--network", "ketch") if AS_USER else ()  # (a user's default is pasta: the bridge by name)


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
    pod_id = ketch_env.cli("pod", "create", "--name", "web-pod", *BRIDGE, "-p", f"127.0.0.1:{port}:80", "--share",
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
        assert (entry["Name"], entry["Status"], len(entry["Containers"])) == ("web-pod", "Running", 2)
        assert entry["Networks"] == ["ketch"]
        in_pod = ketch_env.cli("ps", "--filter", "pod=web-pod", "--format", "{{.Names}} {{.PodName}}", check=True)
        assert sorted(in_pod.stdout.splitlines()) == ["pod-peer web-pod", "pod-server web-pod"]
        assert json.loads(ketch_env.cli("inspect", "--type", "pod", "web-pod", check=True).stdout)[0]["Id"] == pod_id
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
        assert again.returncode == 125 and "is in use: pod already exists" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
        bad = ketch_env.cli("pod", "create", "--share", "net,bogus")
        assert bad.returncode != 0 and "invalid --share 'bogus'" in bad.stderr
    finally:
        ketch_env.cli("pod", "rm", "twice", check=True)
    assert ketch_env.cli("pod", "inspect", "twice").returncode != 0


@pytest.mark.peer
@pytest.mark.root_only("compared with root's podman here; rootless podman is compared in tests/rootless")
def test_pod_verbs_answer_as_podmans(ketch_env, podman):
    """The same pod commands under ketch and podman (pods without an infra container, which is
    what ketch's are): output shapes, statuses and messages agree."""
    def both(*args):
        mine = ketch_env.cli(*args)
        theirs = podman.run(*args, check=False)
        return mine, theirs

    for tool in (ketch_env.cli, lambda *a: podman.run(*a, check=False)):
        assert tool("pod", "create", "--infra=false", "--name", "same", "--label", "team=blue").returncode == 0
    try:
        mine, theirs = both("pod", "ps", "--format", "json")
        mine_entry, their_entry = json.loads(mine.stdout)[0], json.loads(theirs.stdout)[0]
        assert set(mine_entry) == set(their_entry)
        for key in ("Name", "Status", "Labels", "Containers", "InfraId", "Namespace", "Cgroup"):
            assert mine_entry[key] == their_entry[key], key
        mine, theirs = both("pod", "ps", "--format", "{{.Name}} {{.Status}} {{.NumberOfContainers}} {{.InfraID}}")
        assert mine.stdout == theirs.stdout == "same Created 0 \n"
        mine, theirs = both("pod", "ps")
        # Column widths follow the values ("4 seconds ago" against "Less than a second ago"), and the
        # two pods were made at different moments: compare the columns and where each one starts.
        assert _columns(mine.stdout) == _columns(theirs.stdout)
        assert _columns(mine.stdout)[0] == ["POD ID", "NAME", "STATUS", "CREATED", "INFRA ID", "# OF CONTAINERS"]
        mine, theirs = both("pod", "inspect", "same")
        mine_pod, their_pod = json.loads(mine.stdout), json.loads(theirs.stdout)
        assert set(their_pod) <= set(mine_pod)
        for key in ("Name", "State", "Labels", "ExitPolicy", "CreateInfra", "NumContainers", "CgroupParent"):
            assert mine_pod[key] == their_pod[key], key
        for args in (("pod", "create", "--infra=false", "--name", "same"), ("pod", "inspect", "nosuch"),
                     ("pod", "start", "same"), ("pod", "start", "nosuch"), ("pod", "stop", "nosuch"),
                     ("pod", "rm", "nosuch"), ("pod", "rm", "-f", "nosuch"), ("pod", "exists", "nosuch"),
                     ("pod", "exists", "same")):
            mine, theirs = both(*args)
            assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout), args
            assert mine.stderr.replace(ketch_pod_id(ketch_env), "ID") == \
                theirs.stderr.replace(podman_pod_id(podman), "ID"), args
    finally:
        ketch_env.cli("pod", "rm", "-f", "same")
        podman.run("pod", "rm", "-f", "same", check=False)


def _columns(table: str) -> list[list[str]]:
    """The header's column names, then each row's values that do not depend on time or ids, cut
    at the columns where the header puts them."""
    header, *rows = table.splitlines()
    names = re.split(r"\s{2,}", header.strip())
    starts = [header.index(name) for name in names]
    spans = dict(zip(names, zip(starts, starts[1:] + [len(header) + 64])))
    stable = ("NAME", "STATUS", "# OF CONTAINERS")
    return [names] + [[row[slice(*spans[name])].strip() for name in stable] for row in rows]


def ketch_pod_id(env) -> str:
    return json.loads(env.cli("pod", "inspect", "same").stdout or "{}").get("Id", "-")


def podman_pod_id(podman) -> str:
    return json.loads(podman.run("pod", "inspect", "same", check=False).stdout or "{}").get("Id", "-")
