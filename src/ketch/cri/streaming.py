"""The CRI streaming server: where the URLs that Exec, Attach and PortForward answer with lead.

A client (the kubelet, or kubectl through the API server) opens ``/exec/TOKEN``, ``/attach/TOKEN``
or ``/portforward/TOKEN`` and upgrades the connection to one of the protocols Kubernetes speaks:

- SPDY/3.1 (:mod:`ketch.cri.spdy`), with the sub-protocol named in ``X-Stream-Protocol-Version``:
  ``v4.channel.k8s.io`` … ``channel.k8s.io`` for exec and attach (one stream per stdin, stdout,
  stderr, error and resize, told apart by their ``streamType`` header), ``portforward.k8s.io``
  (a data and an error stream per forwarded connection, paired by ``requestID``);
- WebSocket (through ``wsproto``), with the sub-protocol in ``Sec-WebSocket-Protocol``:
  ``v5.channel.k8s.io`` … ``channel.k8s.io`` and their ``base64.`` forms, each message's first
  byte naming its channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; 255 closes a channel
  in v5), and ``portforward.k8s.io`` (channels 2i and 2i+1 for the i-th ``port`` of the query).

A token is issued per request, used once and expires (a minute by default), as the kubelet's
streaming library does: the URL is the only credential, so the server listens on 127.0.0.1
unless configured otherwise. What runs behind a session is in :mod:`ketch.cri.remotecommand`.
"""

from __future__ import annotations

import abc
import base64
import json
import logging
import queue
import secrets
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request, TextMessage

from ketch.cri import spdy
from ketch.errors import KetchError, NotFoundError
from ketch.records import Record, field

log = logging.getLogger(__name__)

REMOTECOMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
WEBSOCKET_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                       "channel.k8s.io"]
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's: how long the client may take to open its streams
MAX_HEAD = 64 * 1024
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_CHANNEL = 255  # v5.channel.k8s.io: [255, N] closes channel N (the client's stdin)


class StreamRequest(Record):
    """What a token stands for: one exec, attach or port-forward, as the CRI request asked."""

    kind: str  # exec, attach or portforward
    container_id: str = ""
    pod_id: str = ""
    cmd: list[str] = field(default_factory=list)
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True


class Tokens:
    """One-use tokens that expire: the kubelet's request cache."""

    def __init__(self, ttl: float = 60.0, limit: int = 1000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._lock = threading.Lock()
        self._requests: dict[str, tuple[float, StreamRequest]] = {}

    def issue(self, request: StreamRequest) -> str:
        token = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            for old, (expires, _) in list(self._requests.items()):
                if expires <= now:
                    del self._requests[old]
            if len(self._requests) >= self.limit:
                raise KetchError(f"too many streaming requests in flight ({self.limit}): try again later")
            self._requests[token] = (now + self.ttl, request)
        return token

    def consume(self, token: str) -> StreamRequest:
        with self._lock:
            found = self._requests.pop(token, None)
        if found is None or found[0] <= time.monotonic():
            raise NotFoundError("token not found: it was used, has expired, or was never issued")
        return found[1]


class _Reader:
    """read(n) over a socket: exactly n bytes, fewer only at its end; bytes read past an HTTP
    request's head are given first."""

    def __init__(self, sock: socket.socket, first: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(first)

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(max(65536, size - len(self.buffer)))
            if not chunk:
                break
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


class Pipe:
    """Bytes handed from a transport's reading thread to a consumer, with a bounded backlog (the
    reader then waits, and the socket pushes back)."""

    def __init__(self, limit: int = spdy.BACKLOG) -> None:
        self._data = bytearray()
        self._closed = False
        self._changed = threading.Condition()
        self.limit = limit

    def feed(self, data: bytes) -> None:
        with self._changed:
            while len(self._data) >= self.limit and not self._closed:
                self._changed.wait()
            if not self._closed:
                self._data += data
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def read(self, size: int = 65536) -> bytes:
        with self._changed:
            while not self._data and not self._closed:
                self._changed.wait()
            data = bytes(self._data[:size])
            del self._data[:size]
            self._changed.notify_all()
            return data


def read_sizes(reader):
    """The terminal sizes a resize channel carries: JSON objects one after another."""
    decoder = json.JSONDecoder()
    pending = ""
    while True:
        chunk = reader.read(4096)
        if not chunk:
            return
        pending += chunk.decode(errors="replace")
        while pending.strip():
            pending = pending.lstrip()
            try:
                size, end = decoder.raw_decode(pending)
            except ValueError:
                break  # an object not complete yet
            pending = pending[end:]
            if isinstance(size, dict):
                yield int(size.get("Width") or size.get("width") or 0), int(size.get("Height") or size.get("height") or 0)


class Channels(abc.ABC):
    """A remote command's streams, whichever transport carries them: ``stdin`` (``read``),
    ``stdout``/``stderr`` (``write``/``close``), ``resize`` (``read`` of JSON sizes), and the
    error stream, where the outcome is written as the negotiated protocol wants it."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        # readers have read(n), writers write(data) and close(): the transports' own types
        self.stdin: Any = None
        self.stdout: Any = None
        self.stderr: Any = None
        self.resize: Any = None

    @property
    def structured_status(self) -> bool:
        return self.protocol.split(".")[0] in ("v4", "v5")

    def finish(self, status: dict) -> None:
        """The outcome on the error stream, then every stream is closed."""
        if self.structured_status:
            payload = json.dumps({"metadata": {}, **status}).encode()
        else:
            payload = status.get("message", "").encode() if status.get("status") != "Success" else b""
        try:
            if payload:
                self._write_error(payload)
        except (OSError, KetchError):
            pass
        self.close()

    @abc.abstractmethod
    def _write_error(self, payload: bytes) -> None:
        """The transport's error stream (SPDY: its own stream; WebSocket: channel 3)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Every stream closed, then the connection."""

    @abc.abstractmethod
    def gone(self) -> bool:
        """Whether the client's connection has ended."""


def success() -> dict:
    return {"status": "Success"}


def exit_status(code: int, command: list[str]) -> dict:
    """A non-zero exit as the kubelet reports it: kubectl exits with the code in ``causes``."""
    return {"status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command [{' '.join(command)}], "
                       f"exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_error(message: str) -> dict:
    return {"status": "Failure", "message": f"Internal error occurred: {message}", "reason": "InternalError",
            "details": {"causes": [{"message": message}]}, "code": 500}


# -- SPDY ------------------------------------------------------------------------------------


class _SPDYChannels(Channels):
    def __init__(self, protocol: str, session: spdy.Session, streams: dict[str, spdy.Stream]) -> None:
        super().__init__(protocol)
        self.session = session
        self.streams = streams
        self.stdin = streams.get("stdin")
        self.stdout = streams.get("stdout")
        self.stderr = streams.get("stderr")
        self.resize = streams.get("resize")

    def _write_error(self, payload: bytes) -> None:
        self.streams["error"].write(payload)

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
        self.session.close()

    def gone(self) -> bool:
        return self.session.closed.is_set()


def _accepting_session(sock, reader) -> tuple[spdy.Session, queue.Queue]:
    """A server session that accepts every stream the client opens, and the queue they come in."""
    arrived: queue.Queue = queue.Queue()

    def on_stream(stream: spdy.Stream) -> None:
        stream.reply()
        arrived.put(stream)

    session = spdy.Session(sock, reader, server=True, on_stream=on_stream)
    session.start()
    return session, arrived


def _spdy_remotecommand(sock, reader, protocol: str, request: StreamRequest) -> Channels | None:
    session, arrived = _accepting_session(sock, reader)
    wanted = {"error"}
    if request.stdin:
        wanted.add("stdin")
    if request.stdout:
        wanted.add("stdout")
    if request.stderr and (not request.tty or protocol == "channel.k8s.io"):
        wanted.add("stderr")
    if request.tty and protocol not in ("channel.k8s.io", "v2.channel.k8s.io"):
        wanted.add("resize")
    streams: dict[str, spdy.Stream] = {}
    deadline = time.monotonic() + STREAM_CREATION_TIMEOUT
    while not wanted <= set(streams):
        try:
            stream = arrived.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            log.warning("streaming: the client opened %s of the streams %s in time", sorted(streams), sorted(wanted))
            session.close()
            return None
        streams[stream.header("streamtype")] = stream
    return _SPDYChannels(protocol, session, streams)


class _PortForwardPair:
    def __init__(self) -> None:
        self.data: spdy.Stream | None = None
        self.error: spdy.Stream | None = None


def _spdy_portforward(sock, reader, request: StreamRequest, forward) -> None:
    """Pairs of streams (data and error, one ``requestID``) for as long as the client keeps the
    connection; each pair is one connection to a port inside the pod."""
    session, arrived = _accepting_session(sock, reader)
    pairs: dict[str, _PortForwardPair] = {}
    try:
        while True:
            try:
                stream = arrived.get(timeout=0.5)
            except queue.Empty:
                if session.closed.is_set():
                    return
                continue
            kind = stream.header("streamtype")
            request_id = stream.header("requestid")
            if not request_id:  # (clients before requestID: the data stream follows its error stream)
                request_id = str(stream.id if kind == "error" else stream.id - 2)
            pair = pairs.setdefault(request_id, _PortForwardPair())
            if kind == "data":
                pair.data = stream
            elif kind == "error":
                pair.error = stream
            else:
                stream.reset(spdy.PROTOCOL_ERROR)
                continue
            if pair.data is not None and pair.error is not None:
                del pairs[request_id]
                threading.Thread(target=_forward_pair, args=(forward, request, pair), daemon=True,
                                 name="cri-portforward").start()
    finally:
        session.close()


def _forward_pair(forward, request: StreamRequest, pair: _PortForwardPair) -> None:
    data, error = pair.data, pair.error
    assert data is not None and error is not None
    try:
        port = int(data.header("port"))
    except ValueError:
        error.write(f"invalid port {data.header('port')!r}".encode())
        error.close()
        data.close()
        return
    forward(request, port, data, error)


# -- WebSocket -------------------------------------------------------------------------------


class _WebSocket:
    """A wsproto connection on a socket: a reading thread hands each channel's messages to its
    Pipe; writes are serialized."""

    def __init__(self, sock: socket.socket, ws: WSConnection, first: bytes, *, binary: bool,
                 readable: list[int], version5: bool = False) -> None:
        self.sock = sock
        self.ws = ws
        self.binary = binary
        self.version5 = version5
        self.pipes = {channel: Pipe() for channel in readable}
        self._send_lock = threading.Lock()
        self.closed = threading.Event()
        self._first = first
        threading.Thread(target=self._read, daemon=True, name="cri-websocket").start()

    def send(self, channel: int, data: bytes) -> None:
        event: BytesMessage | TextMessage
        if self.binary:
            event = BytesMessage(data=bytes([channel]) + data)
        else:
            event = TextMessage(data=chr(ord("0") + channel) + base64.b64encode(data).decode())
        with self._send_lock:
            if self.closed.is_set():
                raise OSError("the WebSocket connection is closed")
            self.sock.sendall(self.ws.send(event))

    def close(self) -> None:
        with self._send_lock:
            try:
                if not self.closed.is_set():
                    self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
            except (OSError, Exception):  # noqa: BLE001 - wsproto refuses to close twice: nothing to do
                pass
        self._end()

    def _end(self) -> None:
        self.closed.set()
        for pipe in self.pipes.values():
            pipe.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read(self) -> None:
        partial: list = []
        try:
            data = self._first
            while True:
                if data:
                    self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, (BytesMessage, TextMessage)):
                        partial.append(event.data)
                        if event.message_finished:
                            self._dispatch(partial)
                            partial = []
                    elif isinstance(event, CloseConnection):
                        with self._send_lock:
                            try:
                                self.sock.sendall(self.ws.send(event.response()))
                            except Exception:  # noqa: BLE001 - already closing
                                pass
                        return
                    elif isinstance(event, Ping):
                        with self._send_lock:
                            self.sock.sendall(self.ws.send(event.response()))
                data = self.sock.recv(65536)
                if not data:
                    return
        except (OSError, Exception) as exc:  # noqa: BLE001 - a broken peer ends the session, nothing more
            log.debug("websocket: %s", exc)
        finally:
            self._end()

    def _dispatch(self, parts: list) -> None:
        if isinstance(parts[0], str):
            text = "".join(parts)
            if not text:
                return
            channel, payload = ord(text[0]) - ord("0"), base64.b64decode(text[1:])
        else:
            message = b"".join(parts)
            if not message:
                return
            channel, payload = message[0], message[1:]
        if channel == CLOSE_CHANNEL and self.version5 and payload:
            pipe = self.pipes.get(payload[0])
            if pipe is not None:
                pipe.close()
            return
        pipe = self.pipes.get(channel)
        if pipe is not None and payload:
            pipe.feed(payload)


class _WebSocketWriter:
    def __init__(self, conn: _WebSocket, channel: int) -> None:
        self.conn = conn
        self.channel = channel

    def write(self, data: bytes) -> None:
        self.conn.send(self.channel, data)

    def close(self) -> None:
        if self.conn.version5:  # (earlier versions have no way to close one channel)
            try:
                self.conn.send(CLOSE_CHANNEL, bytes([self.channel]))
            except OSError:
                pass


class _WebSocketChannels(Channels):
    def __init__(self, protocol: str, conn: _WebSocket, request: StreamRequest) -> None:
        super().__init__(protocol)
        self.conn = conn
        self.stdin = conn.pipes.get(STDIN) if request.stdin else None
        self.stdout = _WebSocketWriter(conn, STDOUT) if request.stdout else None
        self.stderr = _WebSocketWriter(conn, STDERR) if request.stderr and not request.tty else None
        self.resize = conn.pipes.get(RESIZE) if request.tty else None

    def _write_error(self, payload: bytes) -> None:
        self.conn.send(ERROR, payload)

    def close(self) -> None:
        self.conn.close()

    def gone(self) -> bool:
        return self.conn.closed.is_set()


class _WebSocketPort:
    """One forwarded port of a WebSocket port-forward: its data channel read and written as a
    stream, its error channel written."""

    def __init__(self, conn: _WebSocket, data_channel: int) -> None:
        self.conn = conn
        self.channel = data_channel
        self.pipe = conn.pipes[data_channel]

    def read(self, size: int = 65536) -> bytes:
        return self.pipe.read(size)

    def write(self, data: bytes) -> None:
        self.conn.send(self.channel, data)

    def close(self) -> None:
        pass  # (the protocol closes a port's channels only with the whole connection)


# -- the server ------------------------------------------------------------------------------


class StreamingServer:
    """Listens on ``address``:``port`` (0: any free port) and serves each connection in a thread.
    ``backend`` runs what a session asks (:class:`ketch.cri.remotecommand.Backend`)."""

    def __init__(self, address: str, port: int, backend, *, token_ttl: float = 60.0) -> None:
        self.backend = backend
        self.tokens = Tokens(token_ttl)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((address, port))
        self.listener.listen(128)
        host, bound = self.listener.getsockname()[:2]
        self.base_url = f"http://[{host}]:{bound}" if family == socket.AF_INET6 else f"http://{host}:{bound}"
        self._thread: threading.Thread | None = None
        self._closing = False

    def url(self, request: StreamRequest) -> str:
        return f"{self.base_url}/{request.kind}/{self.tokens.issue(request)}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept, name="cri-streaming", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="cri-stream").start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._handle(conn)
        except Exception:  # noqa: BLE001 - one broken session must not take the server down
            log.exception("streaming: a session failed")
        finally:
            conn.close()

    def _handle(self, conn: socket.socket) -> None:
        head, rest = _read_head(conn)
        if head is None:
            return
        parser = h11.Connection(h11.SERVER)
        parser.receive_data(head)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            _respond(conn, 400, "malformed request")
            return
        if not isinstance(event, h11.Request):
            _respond(conn, 400, "malformed request")
            return
        headers: dict[str, list[str]] = {}
        for name, value in event.headers:
            headers.setdefault(name.decode().lower(), []).append(value.decode())
        target = urlsplit(event.target.decode())
        parts = target.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            _respond(conn, 404, "not found")
            return
        try:
            request = self.tokens.consume(parts[1])
        except NotFoundError as exc:
            _respond(conn, 404, str(exc))
            return
        if request.kind != parts[0]:
            _respond(conn, 404, "token not found: it was issued for another kind of request")
            return
        upgrade = ",".join(headers.get("upgrade", [])).lower()
        if "websocket" in upgrade:
            self._websocket(conn, head, rest, request, target.query)
        elif "spdy/3.1" in upgrade:
            self._spdy(conn, rest, request, headers)
        else:
            _respond(conn, 400, "unable to upgrade: missing upgrade headers in request")

    def _spdy(self, conn, rest: bytes, request: StreamRequest, headers) -> None:
        offered = [p.strip() for value in headers.get("x-stream-protocol-version", []) for p in value.split(",")]
        supported = [PORTFORWARD_PROTOCOL] if request.kind == "portforward" else REMOTECOMMAND_PROTOCOLS
        if offered:
            chosen = next((p for p in offered if p in supported), None)
            if chosen is None:
                _respond(conn, 403, f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                    f"server supports {supported}")
                return
        else:
            chosen = "channel.k8s.io" if request.kind != "portforward" else PORTFORWARD_PROTOCOL
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     + (f"X-Stream-Protocol-Version: {chosen}\r\n".encode() if offered else b"") + b"\r\n")
        reader = _Reader(conn, rest)
        if request.kind == "portforward":
            _spdy_portforward(conn, reader, request, self.backend.forward)
            return
        channels = _spdy_remotecommand(conn, reader, chosen, request)
        if channels is not None:
            self.backend.run(request, channels)

    def _websocket(self, conn, head: bytes, rest: bytes, request: StreamRequest, query: str) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(head)
        handshake = next((e for e in ws.events() if isinstance(e, Request)), None)
        if handshake is None:
            _respond(conn, 400, "malformed WebSocket request")
            return
        if request.kind == "portforward":
            supported = [PORTFORWARD_PROTOCOL, "base64." + PORTFORWARD_PROTOCOL]
        else:
            supported = WEBSOCKET_PROTOCOLS + ["base64." + p if p == "channel.k8s.io" else
                                               p.replace(".channel.", ".base64.channel.") for p in WEBSOCKET_PROTOCOLS]
        offered = list(handshake.subprotocols)
        chosen = next((p for p in offered if p in supported), None)
        if offered and chosen is None:
            conn.sendall(ws.send(RejectConnection(status_code=400)))
            return
        binary = chosen is None or "base64" not in chosen
        if request.kind == "portforward":
            ports = [int(p) for value in parse_qs(query).get("port", []) for p in value.split(",") if p.isdigit()]
            if not ports:
                conn.sendall(ws.send(RejectConnection(status_code=400)))
                return
            conn.sendall(ws.send(AcceptConnection(subprotocol=chosen)))
            socket_conn = _WebSocket(conn, ws, rest, binary=binary, readable=[2 * i for i in range(len(ports))])
            self._websocket_portforward(socket_conn, request, ports)
            return
        conn.sendall(ws.send(AcceptConnection(subprotocol=chosen)))
        protocol = (chosen or "channel.k8s.io").replace(".base64.", ".").replace("base64.", "")
        socket_conn = _WebSocket(conn, ws, rest, binary=binary, readable=[STDIN, RESIZE],
                                 version5=protocol.startswith("v5."))
        channels = _WebSocketChannels(protocol, socket_conn, request)
        # the client learns that the session is open from an empty message on the first channel
        # it reads (the kubelet's habit, which clients wait for)
        first = STDOUT if request.stdout else STDERR if request.stderr and not request.tty else ERROR
        socket_conn.send(first, b"")
        self.backend.run(request, channels)

    def _websocket_portforward(self, conn: _WebSocket, request: StreamRequest, ports: list[int]) -> None:
        workers = []
        for index, port in enumerate(ports):
            number = struct.pack("<H", port)  # each channel starts with its port, little-endian
            conn.send(2 * index, number)
            conn.send(2 * index + 1, number)
            data = _WebSocketPort(conn, 2 * index)
            error = _WebSocketWriter(conn, 2 * index + 1)
            worker = threading.Thread(target=self.backend.forward, args=(request, port, data, error), daemon=True,
                                      name="cri-portforward")
            worker.start()
            workers.append(worker)
        for worker in workers:
            worker.join()
        conn.close()


def _read_head(conn: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    conn.settimeout(STREAM_CREATION_TIMEOUT)
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk or len(data) > MAX_HEAD:
                return None, b""
            data += chunk
    except OSError:
        return None, b""
    finally:
        conn.settimeout(None)
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def _respond(conn: socket.socket, status: int, text: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")
    body = (text + "\n").encode()
    try:
        conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    except OSError:
        pass
