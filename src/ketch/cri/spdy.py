"""SPDY/3.1 framing and sessions: the multiplexing under the kubelet's exec, attach and
port-forward streams.

Written by hand because no maintained Python library speaks SPDY (it was withdrawn in favour of
HTTP/2), yet kubectl and the kubelet (through Go's ``spdystream``) still use it. Only what those
peers use is here: streams opened by SYN_STREAM and answered by SYN_REPLY, DATA with FIN
half-closes, RST_STREAM, PING, GOAWAY, SETTINGS, HEADERS and WINDOW_UPDATE, and header blocks
compressed with one zlib stream per direction primed with the protocol's dictionary.

Flow control: a receiver here sends WINDOW_UPDATE (per stream and, as 3.1 adds, for the session)
as the application consumes data, and keeps at most a bounded backlog per stream (beyond it the
reader stops reading the socket, so TCP pushes back, as spdystream does). ``spdystream`` neither
sends nor obeys WINDOW_UPDATE, so a sender here obeys the peer's windows only once the peer has
shown it keeps them (a WINDOW_UPDATE or an initial window in SETTINGS); before that it sends as
spdystream does.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections.abc import Callable

from ketch.errors import KetchError

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
SETTINGS_INITIAL_WINDOW_SIZE = 7
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED = 7, 8, 9

INITIAL_WINDOW = 64 * 1024
MAX_FRAME_DATA = 16 * 1024 * 1024 - 1  # the 24-bit length
MAX_HEADER_BLOCK = 256 * 1024  # a decompressed header block larger than this is refused
WRITE_CHUNK = 32 * 1024
BACKLOG = 1024 * 1024  # received but unread bytes a stream may hold before the reader waits
RECEIVE_WINDOW = BACKLOG  # the window each stream announces (SETTINGS), and the session's:
SESSION_WINDOW = 16 * 1024 * 1024


class SPDYError(KetchError):
    """The peer broke the SPDY protocol, or the session is gone."""


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed
    header names and values, then a run of common value fragments."""
    words = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
             "accept-ranges age allow authorization cache-control connection content-base content-encoding "
             "content-language content-length content-location content-md5 content-range content-type date "
             "etag expect expires from host if-match if-modified-since if-none-match if-range "
             "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
             "user-agent vary via warning www-authenticate method get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    prefixed = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
            "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service "
            "UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, "
            "Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return prefixed + tail.encode()


DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


class HeaderEncoder:
    """Name/value blocks into one compressed stream (one per direction of a session)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, zlib.MAX_WBITS, zdict=DICTIONARY)

    def encode(self, headers: Headers) -> bytes:
        block = [struct.pack(">I", len(headers))]
        for name, values in headers.items():
            name_bytes, value = name.lower().encode(), "\0".join(values).encode()
            block += [struct.pack(">I", len(name_bytes)), name_bytes, struct.pack(">I", len(value)), value]
        return self._zlib.compress(b"".join(block)) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecoder:
    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS, zdict=DICTIONARY)

    def decode(self, data: bytes) -> Headers:
        try:
            block = self._zlib.decompress(data, MAX_HEADER_BLOCK + 1)
        except zlib.error as exc:
            raise SPDYError(f"a SPDY header block does not decompress: {exc}") from exc
        if len(block) > MAX_HEADER_BLOCK or self._zlib.unconsumed_tail:
            raise SPDYError("a SPDY header block is too large")
        headers: Headers = {}
        try:
            (count,), offset = struct.unpack_from(">I", block), 4
            for _ in range(count):
                (length,) = struct.unpack_from(">I", block, offset)
                name = block[offset + 4:offset + 4 + length]
                offset += 4 + length
                (length,) = struct.unpack_from(">I", block, offset)
                value = block[offset + 4:offset + 4 + length]
                offset += 4 + length
                if offset > len(block):
                    raise struct.error("truncated")
                headers.setdefault(name.decode().lower(), []).extend(value.decode().split("\0"))
        except (struct.error, UnicodeDecodeError) as exc:
            raise SPDYError("a SPDY header block is malformed") from exc
        return headers


def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class Stream:
    """One stream of a session: headers, a byte stream each way, half-closes."""

    def __init__(self, session: Session, stream_id: int, headers: Headers, *, remote_closed: bool = False) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._inbox = bytearray()
        self._ready = threading.Condition(session._lock)
        self.remote_closed = remote_closed  # the peer sent FIN (or reset)
        self.local_closed = False
        self.reset_status: int | None = None
        self.replied = threading.Event()
        self._send_window = session._initial_send_window
        self._unacknowledged = 0  # consumed bytes not yet given back by WINDOW_UPDATE

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    def reply(self, headers: Headers | None = None, *, fin: bool = False) -> None:
        payload = struct.pack(">I", self.id)
        self.session._send_control(SYN_REPLY, FLAG_FIN if fin else 0, payload, headers or {})
        if fin:
            self._closed_locally()

    def read(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes as they come; b"" once the peer has finished (or reset) the stream."""
        with self._ready:
            while not self._inbox and not self.remote_closed:
                self._ready.wait()
            data = bytes(self._inbox[:size])
            del self._inbox[:size]
            self._ready.notify_all()  # the reader may be waiting for room
            self._unacknowledged += len(data)
            give_back = self._unacknowledged if self._unacknowledged >= RECEIVE_WINDOW // 2 else 0
            if give_back:
                self._unacknowledged = 0
        if give_back and not self.remote_closed:
            self.session._window_update(self.id, give_back)
        if data:
            self.session._consumed(len(data))
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            chunk = self.session._take_window(self, min(len(view), WRITE_CHUNK))
            self.session._send(data_frame(self.id, 0, bytes(view[:chunk])))
            view = view[chunk:]

    def close(self) -> None:
        """Half-close: FIN; the peer may go on sending."""
        if not self.local_closed and self.reset_status is None:
            try:
                self.session._send(data_frame(self.id, FLAG_FIN, b""))
            except OSError:
                pass
            self._closed_locally()

    def reset(self, status: int = CANCEL) -> None:
        if self.reset_status is None:
            try:
                self.session._send_control(RST_STREAM, 0, struct.pack(">II", self.id, status))
            except OSError:
                pass
        self._was_reset(status)

    def _was_reset(self, status: int) -> None:
        with self._ready:
            self.reset_status = status
            self.remote_closed = self.local_closed = True
            self._ready.notify_all()
        self.replied.set()
        self.session._forget(self)

    def _closed_locally(self) -> None:
        self.local_closed = True
        if self.remote_closed:
            self.session._forget(self)


class Session:
    """A SPDY session over a connected socket: ``serve()`` reads frames until the connection ends
    (in the caller's thread, or ``start()`` runs it in a thread of its own); ``on_stream`` gets each
    stream the peer opens (called in the reading thread: it must not block)."""

    def __init__(self, sock: socket.socket, reader, *, server: bool,
                 on_stream: Callable[[Stream], None] | None = None) -> None:
        self.sock = sock
        self.reader = reader  # a file whose read(n) returns n bytes or fewer only at the end
        self.server = server
        self.on_stream = on_stream
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._window_changed = threading.Condition(self._lock)
        self._encoder = HeaderEncoder()
        self._decoder = HeaderDecoder()
        self.streams: dict[int, Stream] = {}
        self._next_id = 2 if server else 1
        self._last_peer_id = 0
        self._initial_send_window = INITIAL_WINDOW
        self._session_send_window = INITIAL_WINDOW
        self._peer_keeps_windows = False
        self._session_unacknowledged = 0
        self._pings: dict[int, threading.Event] = {}
        self._pending: list[tuple[int, int, bytes, Headers | None]] = []  # control frames to send
        self._next_ping = 2 if server else 1
        self.closed = threading.Event()
        self.gone_away = False
        self._thread: threading.Thread | None = None

    # -- sending -----------------------------------------------------------------------

    # A data write may block for as long as the peer does not read. Control frames (replies,
    # window updates, pings) must never wait behind it: the reading thread and the consumers
    # send them, and a consumer stuck there stops reading, which stops the peer reading... So
    # they are queued, and sent by whoever holds the write lock (at once when nobody does).

    def _send(self, frame: bytes) -> None:
        with self._write_lock:
            self._flush_locked()
            self.sock.sendall(frame)
            self._flush_locked()
        self._flush()

    def _send_control(self, kind: int, flags: int, payload: bytes, headers: Headers | None = None) -> None:
        with self._lock:
            self._pending.append((kind, flags, payload, headers))
        self._flush()

    def _flush(self) -> None:
        while self._pending and self._write_lock.acquire(blocking=False):
            try:
                self._flush_locked()
            finally:
                self._write_lock.release()

    def _flush_locked(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                kind, flags, payload, headers = self._pending.pop(0)
            # (encoded here: the compressor's state follows the order frames go out in)
            block = self._encoder.encode(headers) if headers is not None else b""
            try:
                self.sock.sendall(control_frame(kind, flags, payload + block))
            except OSError:
                with self._lock:
                    self._pending.clear()
                return

    def _window_update(self, stream_id: int, delta: int) -> None:
        try:
            self._send_control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, delta))
        except OSError:
            pass

    def _consumed(self, size: int) -> None:
        """The session's window (3.1) given back as any stream's data is read: per stream it
        could stay short of each stream's threshold while the session's runs out."""
        with self._lock:
            self._session_unacknowledged += size
            delta = self._session_unacknowledged if self._session_unacknowledged >= SESSION_WINDOW // 2 else 0
            if delta:
                self._session_unacknowledged = 0
        if delta:
            self._window_update(0, delta)

    def announce_windows(self) -> None:
        """Tell the peer the windows this side keeps: RECEIVE_WINDOW per stream, SESSION_WINDOW
        for the session (a peer like spdystream ignores both)."""
        self._send_control(SETTINGS, 0, struct.pack(">III", 1, SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW))
        self._window_update(0, SESSION_WINDOW - INITIAL_WINDOW)

    def _take_window(self, stream: Stream, wanted: int) -> int:
        with self._window_changed:
            while True:
                if stream.reset_status is not None or self.closed.is_set():
                    raise SPDYError(f"SPDY stream {stream.id} is closed")
                if not self._peer_keeps_windows:
                    return wanted
                allowed = min(wanted, stream._send_window, self._session_send_window)
                if allowed > 0:
                    stream._send_window -= allowed
                    self._session_send_window -= allowed
                    return allowed
                self._window_changed.wait()

    def open_stream(self, headers: Headers, *, fin: bool = False, wait_reply: bool = True) -> Stream:
        with self._write_lock:  # ids must reach the peer in increasing order
            self._flush_locked()
            with self._lock:
                stream_id = self._next_id
                self._next_id += 2
                stream = Stream(self, stream_id, headers)
                self.streams[stream_id] = stream
            block = self._encoder.encode(headers)
            payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
            self.sock.sendall(control_frame(SYN_STREAM, FLAG_FIN if fin else 0, payload))
        self._flush()
        if fin:
            stream.local_closed = True
        if wait_reply:
            stream.replied.wait()
            if stream.reset_status is not None:
                raise SPDYError(f"the peer refused SPDY stream {stream_id} (status {stream.reset_status})")
        return stream

    def ping(self, timeout: float | None = None) -> bool:
        with self._lock:
            ping_id = self._next_ping
            self._next_ping += 2
            answered = self._pings[ping_id] = threading.Event()
        self._send_control(PING, 0, struct.pack(">I", ping_id))
        try:
            return answered.wait(timeout)
        finally:
            self._pings.pop(ping_id, None)

    def goaway(self, status: int = 0) -> None:
        try:
            self._send_control(GOAWAY, 0, struct.pack(">II", self._last_peer_id, status))
        except OSError:
            pass

    def close(self) -> None:
        """GOAWAY, then the connection is shut (every stream reads its end)."""
        if not self.closed.is_set():
            self.goaway()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._end()

    # -- receiving ---------------------------------------------------------------------

    def start(self) -> None:
        self.announce_windows()
        self._thread = threading.Thread(target=self.serve, name="spdy-reader", daemon=True)
        self._thread.start()

    def serve(self) -> None:
        try:
            while True:
                head = self.reader.read(8)
                if len(head) < 8:
                    break
                first, second = struct.unpack(">II", head)
                length = second & 0xFFFFFF
                payload = self.reader.read(length) if length else b""
                if len(payload) < length:
                    break
                flags = second >> 24
                if first & 0x80000000:
                    version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
                    if version != VERSION:
                        raise SPDYError(f"SPDY version {version} is not supported (3 is)")
                    self._control(kind, flags, payload)
                else:
                    self._data(first & 0x7FFFFFFF, flags, payload)
        except (OSError, ValueError):
            pass
        except SPDYError:
            self.goaway(1)  # PROTOCOL_ERROR
        finally:
            self._end()

    def _end(self) -> None:
        with self._lock:
            self.closed.set()
            streams = list(self.streams.values())
            for event in self._pings.values():
                event.set()
            self._window_changed.notify_all()
        for stream in streams:
            with stream._ready:
                stream.remote_closed = True
                if stream.reset_status is None and not stream.local_closed:
                    stream.reset_status = CANCEL  # cut off: a write now fails
                stream._ready.notify_all()
            stream.replied.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise SPDYError("a SPDY SYN_STREAM frame is too short")
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = self._decoder.decode(payload[10:])  # always: the decompressor's state goes on
            if stream_id == 0 or stream_id % 2 == (0 if self.server else 1) or stream_id <= self._last_peer_id:
                self._send_control(RST_STREAM, 0, struct.pack(">II", stream_id, PROTOCOL_ERROR))
                return
            self._last_peer_id = stream_id
            stream = Stream(self, stream_id, headers, remote_closed=bool(flags & FLAG_FIN))
            with self._lock:
                self.streams[stream_id] = stream
            if self.gone_away or self.on_stream is None:
                stream.reset(REFUSED_STREAM)
                return
            self.on_stream(stream)
        elif kind in (SYN_REPLY, HEADERS):
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            self._decoder.decode(payload[4:])
            replied = self.streams.get(stream_id)
            if replied is not None:
                replied.replied.set()
                if flags & FLAG_FIN:
                    self._remote_fin(replied)
        elif kind == RST_STREAM:
            stream_id, status = struct.unpack(">II", payload[:8])
            reset = self.streams.get(stream_id & 0x7FFFFFFF)
            if reset is not None:
                reset._was_reset(status)
        elif kind == SETTINGS:
            (count,) = struct.unpack_from(">I", payload)
            for index in range(count):
                flag_id, value = struct.unpack_from(">II", payload, 4 + 8 * index)
                if flag_id & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                    with self._window_changed:
                        change = value - self._initial_send_window
                        self._initial_send_window = value
                        self._peer_keeps_windows = True
                        for stream in self.streams.values():
                            stream._send_window += change
                        self._window_changed.notify_all()
        elif kind == PING:
            (ping_id,) = struct.unpack(">I", payload[:4])
            if ping_id % 2 == (0 if self.server else 1):
                event = self._pings.get(ping_id)
                if event is not None:
                    event.set()
            else:
                self._send_control(PING, 0, payload[:4])
        elif kind == GOAWAY:
            self.gone_away = True
        elif kind == WINDOW_UPDATE:
            stream_id, delta = struct.unpack(">II", payload[:8])
            stream_id &= 0x7FFFFFFF
            delta &= 0x7FFFFFFF
            with self._window_changed:
                self._peer_keeps_windows = True
                if stream_id == 0:
                    self._session_send_window += delta
                elif stream_id in self.streams:
                    self.streams[stream_id]._send_window += delta
                self._window_changed.notify_all()
        # other types (the withdrawn CREDENTIAL, 0x5) are ignored, as the protocol asks

    def _data(self, stream_id: int, flags: int, data: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return  # late data for a stream already finished or reset
        with stream._ready:
            while len(stream._inbox) >= BACKLOG and stream.reset_status is None and not self.closed.is_set():
                stream._ready.wait()
            if stream.reset_status is None:
                stream._inbox += data
            stream._ready.notify_all()
        if flags & FLAG_FIN:
            self._remote_fin(stream)

    def _remote_fin(self, stream: Stream) -> None:
        with stream._ready:
            stream.remote_closed = True
            stream._ready.notify_all()
        if stream.local_closed:
            self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        with self._lock:
            if self.streams.get(stream.id) is stream:
                del self.streams[stream.id]
