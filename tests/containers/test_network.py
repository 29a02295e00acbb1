"""Bridge networks: addresses, published ports reachable on 127.0.0.1, names between containers,
network commands, and that nothing is left behind (veths, nftables entries, namespaces).
Traffic goes only to 127.0.0.1 and between the tests' own containers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from ketch.errors import InvalidInputError
from tests.conftest import AS_USER

# the default network by name: for root it is the default; a user's default is pasta, and the
# bridge is asked for by name (tests/rootless/as_user.py runs this module as a user)
BRIDGE = ("--network", "ketch") if AS_USER else ()

HTTPD = ("sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _veths() -> list[str]:
    return [name for name in os.listdir("/sys/class/net") if name.startswith("veth")]


def _nft_elements() -> str:
    result = subprocess.run(["nft", "list", "table", "ip", "ketch"], capture_output=True, text=True)
    return result.stdout


@pytest.fixture
def network_env(ketch_env):
    before = set(_veths())
    yield ketch_env
    ketch_env.cli("rm", "-f", "-t", "0", "-a")
    for line in ketch_env.cli("network", "ls", "-q").stdout.split():
        if line != "ketch":
            ketch_env.cli("network", "rm", "-f", line)
    deadline = time.monotonic() + 10  # a veth goes with its namespace, which the kernel frees a moment later
    while not set(_veths()) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(_veths()) <= before, "veths left behind"
    assert "10.123.0." not in _nft_elements().split("ports_any")[-1].split("chain")[0]
    netns = ketch_env.runroot / "netns"
    assert not netns.exists() or os.listdir(netns) == []


def test_default_bridge_network_address_and_published_port(network_env):
    port = _free_port()
    started = network_env.cli("run", "-d", *BRIDGE, "--name", "web", "--hostname", "web", "-p",
                              f"127.0.0.1:{port}:80", "busybox", *HTTPD)
    assert started.returncode == 0, started.stderr
    assert _get(f"http://127.0.0.1:{port}/") == "hello-from-web\n"
    info = json.loads(network_env.cli("inspect", "web", check=True).stdout)[0]
    address = info["NetworkSettings"]["Networks"]["ketch"]["IPAddress"]
    assert address.startswith("10.123.0.") and info["NetworkSettings"]["Ports"]["80/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert network_env.cli("port", "web", check=True).stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    ps = json.loads(network_env.cli("ps", "--format", "json", check=True).stdout)[0]
    assert ps["Networks"] == ["ketch"] and ps["Ports"][0]["host_port"] == port
    inside = network_env.cli("run", "--rm", *BRIDGE, "busybox", "sh", "-c",
                             "ip -4 route; grep nameserver /etc/resolv.conf || true")
    assert "default via 10.123.0.1" in inside.stdout
    # the port is ours while the container runs; then free again
    taken = network_env.cli("run", "--rm", *BRIDGE, "-p", f"127.0.0.1:{port}:80", "busybox", "true")
    assert taken.returncode == 125 and "already" in taken.stderr
    network_env.cli("rm", "-f", "-t", "0", "web", check=True)
    with socket.socket() as probe:
        # nothing holds it any more (a user's relay made the host's side of the connection: the
        # kernel may keep it in TIME_WAIT, which SO_REUSEADDR allows, as a listener it would not)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen(1)


def test_a_host_port_in_use_elsewhere_is_a_clear_error(network_env):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = network_env.cli("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
    assert result.returncode == 125 and f"{port}" in result.stderr and "in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert network_env.ps() == []


def test_containers_reach_each_other_by_name_on_a_user_network(network_env):
    assert network_env.cli("network", "create", "--subnet", "10.124.7.0/24", "appnet", check=True).stdout == "appnet\n"
    network_env.cli("run", "-d", "--name", "api", "--network", "appnet", "--ip", "10.124.7.50", "--network-alias",
                    "backend", "busybox", *HTTPD, check=True)
    result = network_env.cli("run", "--rm", "--network", "appnet", "--add-host", "extra:10.9.9.9", "--dns",
                             "10.124.7.1", "busybox", "sh", "-c",
                             "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://api/ && break; sleep 0.2; done; "
                             "wget -qO- http://backend/ >/dev/null && echo by-alias; "
                             "grep -E 'api|extra|backend' /etc/hosts; cat /etc/resolv.conf")
    assert result.returncode == 0, result.stderr
    assert "hello-from-" in result.stdout and "10.124.7.50\tapi" in result.stdout
    assert "by-alias" in result.stdout and "10.124.7.50\tbackend" in result.stdout  # (--network-alias)
    assert "10.9.9.9\textra" in result.stdout and "nameserver 10.124.7.1" in result.stdout
    # the running container learned of the newcomer, and forgets it when it goes
    hosts = network_env.cli("exec", "api", "cat", "/etc/hosts", check=True).stdout
    assert hosts.count("\n") >= 3
    inspect = json.loads(network_env.cli("network", "inspect", "appnet", check=True).stdout)[0]
    assert inspect["subnets"] == [{"subnet": "10.124.7.0/24", "gateway": "10.124.7.1"}]
    assert "containers" not in inspect  # podman 4.3's shape; the address is the container's
    address = network_env.cli("inspect", "--format", '{{(index .NetworkSettings.Networks "appnet").IPAddress}}',
                              "api", check=True).stdout
    assert address == "10.124.7.50\n"
    busy = network_env.cli("network", "rm", "appnet")
    assert busy.returncode != 0 and "in use" in busy.stderr
    assert network_env.cli("run", "--rm", "--network", "appnet", "--ip", "10.124.7.50", "busybox", "true"
                           ).returncode == 125  # that address is taken
    network_env.cli("network", "rm", "-f", "appnet", check=True)
    assert network_env.ps() == []
    assert not os.path.exists("/sys/class/net/" + inspect["network_interface"])


def test_a_running_container_joins_and_leaves_a_network(network_env):
    network_env.cli("network", "create", "--subnet", "10.124.8.0/24", "front", check=True)
    network_env.cli("network", "create", "--subnet", "10.124.9.0/24", "back", check=True)
    network_env.cli("run", "-d", "--name", "db", "--network", "back", "--ip", "10.124.9.20", "busybox", *HTTPD,
                    check=True)
    network_env.cli("run", "-d", "--name", "app", "--network", "front", "busybox", "sleep", "1000", check=True)
    joined = network_env.cli("network", "connect", "--alias", "worker", "--ip", "10.124.9.30", "back", "app")
    assert joined.returncode == 0, joined.stderr
    inside = network_env.cli("exec", "app", "sh", "-c", "ip -4 -o addr; ip -4 route; "
                             "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://db/ && break; sleep 0.2; done",
                             check=True).stdout
    assert any(line.split()[1] == "eth1" and "inet 10.124.9.30/24" in line for line in inside.splitlines()
               if "inet" in line)
    assert "default via 10.124.8.1" in inside and "hello-from-" in inside  # (the default route stays eth0's)
    peer_hosts = network_env.cli("exec", "db", "cat", "/etc/hosts", check=True).stdout
    assert "10.124.9.30\tapp" in peer_hosts and "10.124.9.30\tworker" in peer_hosts
    assert "10.124.9.20\tdb" in network_env.cli("exec", "app", "cat", "/etc/hosts", check=True).stdout
    networks = json.loads(network_env.cli("inspect", "app", check=True).stdout)[0]["NetworkSettings"]["Networks"]
    assert sorted(networks) == ["back", "front"] and networks["back"]["IPAddress"] == "10.124.9.30"
    again = network_env.cli("network", "connect", "back", "app")
    assert again.returncode != 0 and "already connected" in again.stderr and again.stderr.count("\n") == 1

    left = network_env.cli("network", "disconnect", "back", "app")
    assert left.returncode == 0, left.stderr
    inside = network_env.cli("exec", "app", "ip", "-4", "-o", "addr", check=True).stdout
    assert "10.124.9.30" not in inside and "10.124.8." in inside
    assert "app" not in network_env.cli("exec", "db", "cat", "/etc/hosts", check=True).stdout.split()
    # its address on the network is free again
    network_env.cli("run", "--rm", "--network", "back", "--ip", "10.124.9.30", "busybox", "true", check=True)
    missing = network_env.cli("network", "disconnect", "back", "app")
    assert missing.returncode != 0 and "not connected" in missing.stderr


def test_network_create_errors_and_prune(network_env):
    network_env.cli("network", "create", "--subnet", "10.124.8.0/24", "one", check=True)
    overlap = network_env.cli("network", "create", "--subnet", "10.124.8.128/25", "two")
    assert overlap.returncode != 0 and "overlaps" in overlap.stderr
    assert network_env.cli("network", "create", "--subnet", "nonsense", "three").returncode != 0
    assert network_env.cli("network", "create", "one").returncode != 0  # exists
    assert network_env.cli("run", "--rm", "--network", "nope", "busybox", "true").returncode == 125
    listed = json.loads(network_env.cli("network", "ls", "--format", "json", check=True).stdout)
    assert {"ketch", "one"} <= {n["name"] for n in listed}
    assert network_env.cli("network", "prune", check=True).stdout.split() == ["one"]


def test_addresses_are_unique_when_allocated_at_once(network_env):
    """Several processes allocate at the same moment: never one address twice."""
    engine = network_env.engine()
    nets = engine.networks()
    nets.ensure_default()
    results: list[str] = []
    code = ("import sys; from ketch.containers.network import Networks; from ketch.storage.store import Store; "
            f"s = Store({str(network_env.root)!r}, {str(network_env.runroot)!r}); "
            "print(Networks(s).allocate(sys.argv[1], 'ketch'))")
    import sys as _sys

    procs = [subprocess.Popen([_sys.executable, "-c", code, f"fake{n:02d}" + "0" * 58], stdout=subprocess.PIPE,
                              text=True) for n in range(8)]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        results.append(out.strip())
    try:
        assert len(results) == 8 and len(set(results)) == 8, results
    finally:
        for n in range(8):
            nets.release(f"fake{n:02d}" + "0" * 58)


def test_none_and_host_do_not_load_the_netlink_library(network_env):
    """Nor dataclasses (with inspect and ast, ~12 ms of every run: the start path's value classes
    are Records)."""
    code = ("import sys; from ketch.cli.main import main; main(['--root', sys.argv[1], '--runroot', sys.argv[2], "
            "'run', '--rm', '--network', 'none', 'busybox', 'true']); "
            "print('pyroute2' in sys.modules, 'dataclasses' in sys.modules)")
    import sys as _sys

    out = subprocess.run([_sys.executable, "-c", code, str(network_env.root), str(network_env.runroot)],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False False"), out.stderr


def test_pyroute2_still_whole_for_other_users_in_the_process():
    """ketch enters pyroute2 without its package __init__; a later user of pyroute2 in the same
    process must still find all of it."""
    import sys as _sys

    code = ("from ketch.containers.bridge import _iproute; IPRoute = _iproute(); "
            "from pyroute2 import NDB, IPRoute as Again; print(Again is IPRoute, NDB.__name__)")
    out = subprocess.run([_sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "NDB"], out.stderr


def test_port_ranges_publish_all_and_a_docker_format_commit(network_env):
    from ketch.containers.network import parse_publish

    mappings = parse_publish("127.0.0.1:18200-18202:80-82/udp")
    assert [(m.host_ip, m.host_port, m.container_port, m.protocol) for m in mappings] == [
        ("127.0.0.1", 18200, 80, "udp"), ("127.0.0.1", 18201, 81, "udp"), ("127.0.0.1", 18202, 82, "udp")]
    assert [m.host_port for m in parse_publish("8080")] == [0]  # a free one when the container starts
    for bad in ("1-3:80-81", "0", "x:80", "127.0.0.1:80:80/sctp", "1.2.3:80:80"):
        with pytest.raises(InvalidInputError):
            parse_publish(bad)
    network_env.cli("create", "--name", "base", "busybox", "true", check=True)
    image = network_env.cli("commit", "-f", "docker", "-c", "EXPOSE 80", "-c", f"CMD {json.dumps(list(HTTPD))}",
                            "base", "localhost/exposed")
    assert image.returncode == 0, image.stderr
    network_env.cli("run", "-d", "--name", "all", "-P", "localhost/exposed", check=True)
    ports = network_env.cli("port", "all", check=True).stdout.split()
    assert ports[0] == "80/tcp" and ports[2].startswith("0.0.0.0:")
    host_port = int(ports[2].split(":")[1])
    assert _get(f"http://127.0.0.1:{host_port}/").startswith("hello-from-")
    network_env.cli("rm", "-f", "-t", "0", "all", "base", check=True)
    network_env.cli("rmi", "localhost/exposed", check=True)
