"""Docker's streams: the multiplexed format (an 8-byte header per frame naming stdout or stderr,
for a container without a terminal) and hijacked connections (``attach`` and ``exec start``
answer ``101 UPGRADED`` and then the connection is a raw stream both ways).

aiohttp, the server, answers the upgrade itself; what follows the 101 is read here through the
protocol's payload-parser hook, the one aiohttp's own WebSocket support uses (no public API
hands over an upgraded connection's incoming bytes).
"""

from __future__ import annotations

import asyncio
import os
import struct

from aiohttp import web

STDIN, STDOUT, STDERR = 0, 1, 2
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


def frame(stream: int, data: bytes) -> bytes:
    """One frame of the multiplexed stream format."""
    return struct.pack(">BxxxL", stream, len(data)) + data


async def head_now(request: web.Request, response: web.StreamResponse) -> None:
    """Prepare ``response`` and send its head at once: aiohttp holds a head back to send it with
    the first bytes of the body, and Docker's clients wait for the head of some responses
    (``wait``, ``attach``) before they make the request that lets the body come."""
    await response.prepare(request)
    writer = response._payload_writer
    if writer is not None and hasattr(writer, "send_headers"):
        writer.send_headers()


class _Incoming:
    """The payload parser aiohttp feeds an upgraded connection's bytes to: they go to a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(b"")


class _RawProtocol(asyncio.Protocol):
    """An upgraded connection's protocol: incoming bytes and the half-close go to ``incoming``;
    write flow control and the connection's loss go on to aiohttp's protocol, which still
    writes the response and cleans up after it."""

    def __init__(self, inner: asyncio.BaseProtocol, incoming: _Incoming) -> None:
        self.inner, self.incoming = inner, incoming

    def data_received(self, data: bytes) -> None:
        self.incoming.feed_data(data)

    def eof_received(self) -> bool:
        self.incoming.feed_eof()
        return True  # (keep the connection open for our output)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.incoming.feed_eof()
        self.inner.connection_lost(exc)


class Hijacked:
    """An upgraded connection: ``write`` sends raw bytes to the client, ``read`` returns what the
    client sends (b"" once it closed its side, as ``docker run -i`` does at the end of its input)."""

    def __init__(self, response: web.StreamResponse, incoming: _Incoming) -> None:
        self.response, self.incoming = response, incoming

    @classmethod
    async def accept(cls, request: web.Request, content_type: str) -> Hijacked:
        upgrade = "upgrade" in request.headers.get("Connection", "").lower()
        response = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK")
        response.headers["Content-Type"] = content_type
        if upgrade:
            response.headers["Connection"] = "Upgrade"
            response.headers["Upgrade"] = request.headers.get("Upgrade", "tcp")
        incoming = _Incoming()
        await head_now(request, response)  # (the client waits for the 101 before it starts the container)
        protocol, transport = request.protocol, request.transport
        if upgrade and protocol is not None and transport is not None:
            response.force_close()
            # (what came with the request's head goes to ``incoming`` first)
            protocol.set_parser(incoming)  # type: ignore[arg-type]
            # From here the connection's bytes come to us directly: aiohttp's protocol would let
            # asyncio close the whole connection at the client's half-close (``docker run -i``
            # closes its side at the end of its input, and still reads the output).
            transport.set_protocol(_RawProtocol(protocol, incoming))
        else:
            incoming.feed_eof()
        return cls(response, incoming)

    async def write(self, data: bytes) -> bool:
        """Send ``data``; False once the client is gone."""
        transport = self.response._req.transport if self.response._req is not None else None
        if transport is None or transport.is_closing():
            return False
        try:
            await self.response.write(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def read(self) -> bytes:
        return await self.incoming.queue.get()

    async def close(self) -> None:
        try:
            await self.response.write_eof()
        except (ConnectionError, RuntimeError):
            pass


def set_terminal_size(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ on a terminal (either side): the kernel tells its foreground processes (SIGWINCH)."""
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to a non-blocking pipe or terminal, waiting while it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await asyncio.sleep(0.01)
