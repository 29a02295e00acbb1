"""A client of the kubelet's streaming protocols over SPDY/3.1, as kubectl speaks them: exec and
attach (``v4.channel.k8s.io`` … ``channel.k8s.io``) and port-forward (``portforward.k8s.io``).

It talks to any CRI runtime's streaming server (ketch's, containerd's): the tests compare the two
with it, and the benchmarks time them with it.
"""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import urlsplit

from ketch.cri import spdy
from ketch.cri.streaming import PORTFORWARD_PROTOCOL, REMOTECOMMAND_PROTOCOLS, _Reader
from ketch.errors import KetchError
from ketch.records import Record


class UpgradeRefused(KetchError):
    """The server answered the upgrade with an HTTP error."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the streaming server answered {status}: {body.strip()}")
        self.status = status
        self.body = body


def upgrade(url: str, protocols: list[str]) -> tuple[socket.socket, _Reader, str]:
    """A connection to ``url`` upgraded to SPDY/3.1: its socket, a reader, and the protocol the
    server chose."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lines = [f"POST {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1", f"Host: {parts.netloc}",
             "Connection: Upgrade", "Upgrade: SPDY/3.1", "Content-Length: 0"]
    lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise KetchError("the streaming server closed the connection before answering")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode(errors="replace").split("\r\n")
    status = int(status_line.split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if status != 101:
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        sock.close()
        raise UpgradeRefused(status, rest.decode(errors="replace"))
    sock.settimeout(None)
    return sock, _Reader(sock, rest), headers.get("x-stream-protocol-version", "")


class Outcome(Record):
    stdout: bytes
    stderr: bytes
    error: bytes  # the error stream as it came
    protocol: str

    @property
    def status(self) -> dict:
        """The error stream's status (v4: its JSON; earlier: Success when it is empty)."""
        if not self.error:
            return {"status": "Success"}
        try:
            return json.loads(self.error)
        except ValueError:
            return {"status": "Failure", "message": self.error.decode(errors="replace")}

    @property
    def exit_code(self) -> int | None:
        """As kubectl makes it: 0, the code in a NonZeroExitCode status, or None (another failure)."""
        status = self.status
        if status.get("status") == "Success":
            return 0
        if status.get("reason") == "NonZeroExitCode":
            for cause in (status.get("details") or {}).get("causes") or []:
                if cause.get("reason") == "ExitCode":
                    return int(cause["message"])
        return None


class RemoteCommand:
    """An exec or attach session: its streams are opened as kubectl opens them (error, then
    stdin, stdout, stderr, resize)."""

    def __init__(self, url: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True, tty: bool = False,
                 protocols: list[str] | None = None) -> None:
        self.sock, reader, self.protocol = upgrade(url, protocols or REMOTECOMMAND_PROTOCOLS)
        self.session = spdy.Session(self.sock, reader, server=False)
        self.session.start()
        self.error = self.session.open_stream({"streamtype": ["error"]})
        self.stdin = self.session.open_stream({"streamtype": ["stdin"]}) if stdin else None
        self.stdout = self.session.open_stream({"streamtype": ["stdout"]}) if stdout else None
        self.stderr = self.session.open_stream({"streamtype": ["stderr"]}) if stderr and not tty else None
        self.resizer = (self.session.open_stream({"streamtype": ["resize"]})
                        if tty and self.protocol not in ("", "channel.k8s.io", "v2.channel.k8s.io") else None)

    def resize(self, width: int, height: int) -> None:
        if self.resizer is not None:
            self.resizer.write(json.dumps({"Width": width, "Height": height}).encode())

    def communicate(self, data: bytes | None = None, *, close_stdin: bool = True) -> Outcome:
        """Send ``data`` to stdin (closing it after unless told not to), read the outputs to
        their end, then the outcome."""
        collected: dict[str, bytes] = {}
        readers = [threading.Thread(target=_drain, args=(stream, name, collected), daemon=True)
                   for name, stream in (("stdout", self.stdout), ("stderr", self.stderr), ("error", self.error))
                   if stream is not None]
        for reader in readers:
            reader.start()
        if self.stdin is not None:
            try:
                if data:
                    self.stdin.write(data)
                if close_stdin:
                    self.stdin.close()
            except (OSError, KetchError):
                pass
        for reader in readers:
            reader.join()
        self.close()
        return Outcome(collected.get("stdout", b""), collected.get("stderr", b""), collected.get("error", b""),
                       self.protocol)

    def close(self) -> None:
        self.session.close()
        self.sock.close()


def _drain(stream: spdy.Stream, name: str, into: dict[str, bytes]) -> None:
    chunks = []
    while True:
        data = stream.read()
        if not data:
            break
        chunks.append(data)
    into[name] = b"".join(chunks)


class PortForward:
    """A port-forward session: ``open(port)`` gives a connection's data and error streams."""

    def __init__(self, url: str) -> None:
        self.sock, reader, self.protocol = upgrade(url, [PORTFORWARD_PROTOCOL])
        self.session = spdy.Session(self.sock, reader, server=False)
        self.session.start()
        self._next_request = 0
        self._lock = threading.Lock()

    def open(self, port: int) -> tuple[spdy.Stream, spdy.Stream]:
        with self._lock:
            request_id = str(self._next_request)
            self._next_request += 1
        headers = {"port": [str(port)], "requestid": [request_id]}
        error = self.session.open_stream({"streamtype": ["error"], **headers})
        error.close()  # (kubectl's: the client never writes on it)
        data = self.session.open_stream({"streamtype": ["data"], **headers})
        return data, error

    def close(self) -> None:
        self.session.close()
        self.sock.close()
