"""The port relay of rootless containers on bridge networks (ketch.containers.portrelay), on
its own: ports bound on the host's 127.0.0.1, connections made inside another network namespace
(one the test makes, with echo servers in it), TCP half-closes kept, UDP answered to each
client, a taken port refused in one line, and the relay ending once its owner's namespace file
is gone."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ketch.containers import netns, portrelay
from ketch.containers.network import PortMapping
from ketch.errors import InUseError
from tests.support.registry import free_port

ECHO = r"""
import socket, sys, threading
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 7000)); tcp.listen(8)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 7001))
def serve_udp():
    while True:
        data, peer = udp.recvfrom(65536)
        udp.sendto(b"udp:" + data, peer)
threading.Thread(target=serve_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, _ = tcp.accept()
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    conn.sendall(b"got %d bytes, ends with %s" % (len(received), received[-3:]))
    conn.close()
"""


@pytest.fixture
def namespace(tmp_path):
    """A network namespace of the test's own with lo up and the echo servers in it."""
    path = str(tmp_path / "ns")
    netns.pin_namespaces({"net": path})
    server = subprocess.Popen(["nsenter", f"--net={path}", sys.executable, "-c", ECHO], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        yield path
    finally:
        server.kill()
        server.wait()
        netns.remove_namespace(path)


def _wait_gone(pid: int) -> bool:
    for _ in range(400):  # (the relay looks for its owner's namespace file every few seconds)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_tcp_and_udp_through_the_relay(namespace, tmp_path):
    owner = tmp_path / "owner-ns"
    owner.write_text("")
    tcp_port, udp_port = free_port(), free_port()
    relay = portrelay.start(namespace, str(owner), "127.0.0.1",
                            [PortMapping("127.0.0.1", tcp_port, 7000, "tcp"),
                             PortMapping("127.0.0.1", udp_port, 7001, "udp")])
    try:
        payload = b"x" * 3_000_000 + b"end"
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=30) as conn:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)  # the server answers only after our end: the half-close went through
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        assert answer == b"got 3000003 bytes, ends with end"
        for client_data in (b"one", b"two"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(30)
                client.sendto(client_data, ("127.0.0.1", udp_port))
                assert client.recvfrom(65536)[0] == b"udp:" + client_data
        # a port already taken is refused in one line, and nothing is started
        with pytest.raises(InUseError, match=f"host port 127.0.0.1:{tcp_port}/tcp"):
            portrelay.start(namespace, str(owner), "127.0.0.1", [PortMapping("127.0.0.1", tcp_port, 7000, "tcp")])
        # the relay ends by itself once its owner's namespace is gone
        owner.unlink()
        assert _wait_gone(relay), "the relay outlived its owner"
    finally:
        portrelay.stop(relay)


def test_a_connection_nobody_takes_is_closed(namespace, tmp_path):
    owner = tmp_path / "owner-ns"
    owner.write_text("")
    port = free_port()
    relay = portrelay.start(namespace, str(owner), "127.0.0.1", [PortMapping("127.0.0.1", port, 7999, "tcp")])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            assert conn.recv(10) == b""  # (nothing listens on 7999 inside: closed, as a refused connection)
        portrelay.stop(relay)
        assert _wait_gone(relay)
    finally:
        portrelay.stop(relay)
