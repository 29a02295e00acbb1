"""Published ports of a rootless container on a bridge network (podman's rootlessport).

A user cannot add DNAT entries to the host's network, and the container's address lives in the
user's rootless network namespace (:mod:`ketch.containers.rootlessnet`). So one relay process
per container binds the published ports on the host's addresses (before it leaves the host's
network namespace: bound sockets stay where they were made), then enters the rootless
namespace, where every connection it makes reaches the container's address. TCP streams are
copied both ways with half-closes kept; each UDP client gets a socket of its own towards the
container, dropped after a minute of silence.

Written with asyncio: a byte relay is all it is, and no library does that across two network
namespaces. It ends by SIGTERM from ketch when the container's network is released, or by
itself once the container's namespace file is gone (a ketch killed before it could say so).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

from ketch.errors import InUseError, NetworkError

UDP_IDLE_SECONDS = 60
CHUNK = 256 * 1024


def _listening_socket(mapping) -> socket.socket:
    family = socket.AF_INET6 if ":" in mapping.host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if mapping.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((mapping.host_ip or "0.0.0.0", mapping.host_port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise InUseError(f"host port {mapping.host_ip or '0.0.0.0'}:{mapping.host_port}/{mapping.protocol}: "
                         f"{exc.strerror}") from exc
    return sock


def start(netns_path: str, container_netns: str, target_ip: str, ports: list) -> int:
    """Bind ``ports`` (PortMappings) here, then relay them from inside ``netns_path`` to
    ``target_ip``; the relay's PID once it is in place."""
    sockets: list[socket.socket] = []
    try:
        for mapping in ports:
            sockets.append(_listening_socket(mapping))
        plan = {"netns": netns_path, "container_netns": container_netns, "target": target_ip,
                "ports": [{"fd": s.fileno(), "protocol": m.protocol, "port": m.container_port}
                          for s, m in zip(sockets, ports)]}
        child = subprocess.Popen([sys.executable, "-m", "ketch.containers.portrelay", json.dumps(plan)],
                                 pass_fds=[s.fileno() for s in sockets], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        assert child.stdout is not None
        answer = child.stdout.readline().decode(errors="replace").strip()
        child.stdout.close()
        if answer != "ok":
            child.wait()
            raise NetworkError(f"the port relay did not start: {answer or 'it died'}")
        return child.pid
    finally:
        for sock in sockets:
            sock.close()


def stop(pid: int | None) -> None:
    """End a container's relay if it is still there (the PID is checked to be one), and wait
    until it is gone: its ports are free when the container's removal returns, as root's."""
    if not pid:
        return
    import signal
    import time

    def running() -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"ketch.containers.portrelay" in f.read()  # (a zombie's is empty: its sockets are closed)
        except OSError:
            return False

    if not running():
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(500):
            if not running():
                return
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# -- the relay process -------------------------------------------------------------------------

def _serve(plan: dict) -> None:
    import asyncio

    from ketch import syscalls

    fd = os.open(plan["netns"], os.O_RDONLY | os.O_CLOEXEC)
    syscalls.setns(fd, syscalls.CLONE_NEWNET)
    os.close(fd)
    target = plan["target"]

    async def pump(reader, writer) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()

    def tcp_handler(port: int):
        async def handle(client_reader, client_writer) -> None:
            try:
                inner_reader, inner_writer = await asyncio.open_connection(target, port)
            except OSError:
                client_writer.close()  # (the container does not listen there: as a refused connection)
                return
            try:
                await asyncio.gather(pump(client_reader, inner_writer), pump(inner_reader, client_writer))
            finally:
                inner_writer.close()
                client_writer.close()
        return handle

    class UdpFront(asyncio.DatagramProtocol):
        def __init__(self, port: int) -> None:
            self.port = port
            self.peers: dict[Any, UdpBack] = {}
            self.transport: Any = None

        def connection_made(self, transport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, client) -> None:
            peer = self.peers.get(client)
            if peer is None:
                peer = self.peers[client] = UdpBack(self, client)
                asyncio.ensure_future(loop.create_datagram_endpoint(lambda: peer, remote_addr=(target, self.port)))
            peer.send(data)

    class UdpBack(asyncio.DatagramProtocol):
        def __init__(self, front: UdpFront, client) -> None:
            self.front, self.client = front, client
            self.transport: Any = None
            self.waiting: list[bytes] = []
            self.last = loop.time()

        def connection_made(self, transport) -> None:
            self.transport = transport
            for data in self.waiting:
                transport.sendto(data)
            self.waiting = []
            loop.call_later(UDP_IDLE_SECONDS, self.expire)

        def send(self, data: bytes) -> None:
            self.last = loop.time()
            if self.transport is None:
                self.waiting.append(data)
            else:
                self.transport.sendto(data)

        def datagram_received(self, data: bytes, _) -> None:
            self.last = loop.time()
            self.front.transport.sendto(data, self.client)

        def expire(self) -> None:
            if loop.time() - self.last < UDP_IDLE_SECONDS:
                loop.call_later(UDP_IDLE_SECONDS, self.expire)
            else:
                self.front.peers.pop(self.client, None)
                self.transport.close()

    def udp_front(port: int):
        return lambda: UdpFront(port)

    async def main() -> None:
        for entry in plan["ports"]:
            sock = socket.socket(fileno=entry["fd"])
            sock.setblocking(False)
            if entry["protocol"] == "tcp":
                await asyncio.start_server(tcp_handler(entry["port"]), sock=sock)
            else:
                await loop.create_datagram_endpoint(udp_front(entry["port"]), sock=sock)
        os.write(1, b"ok\n")
        os.close(1)
        while os.path.exists(plan["container_netns"]):
            await asyncio.sleep(5)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())


if __name__ == "__main__":
    try:
        _serve(json.loads(sys.argv[1]))
    except Exception as exc:  # noqa: BLE001 - said to the starting ketch, one line
        try:
            os.write(1, f"{type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
        sys.exit(1)
