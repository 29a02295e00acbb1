"""ketch's SPDY/3.1 framing (``ketch.cri.spdy``) on socket pairs: frames, header compression,
flow control, and peers that break the protocol. Interoperation with Go's spdystream is tested
against containerd (test_containerd_parity)."""

from __future__ import annotations

import socket
import struct
import threading
import zlib

import pytest

from ketch.cri import spdy
from ketch.cri.streaming import _Reader


def _pair(on_stream=None):
    a, b = socket.socketpair()
    server = spdy.Session(a, _Reader(a), server=True, on_stream=on_stream)
    client = spdy.Session(b, _Reader(b), server=False)
    server.start()
    client.start()
    return server, client


def test_the_dictionary_is_the_drafts():
    # the draft's dictionary: 1423 bytes; zlib names a dictionary by its Adler-32 in the stream
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_header_blocks_share_one_compression_stream_per_direction():
    encoder, decoder = spdy.HeaderEncoder(), spdy.HeaderDecoder()
    blocks = [{"streamtype": ["stdout"]}, {"streamtype": ["error"], "port": ["80"], "multi": ["a", "b"]},
              {"x-long": ["y" * 10000]}]
    encoded = [encoder.encode(headers) for headers in blocks]
    assert [decoder.decode(block) for block in encoded] == blocks
    assert len(encoded[0]) < 40  # compressed against the dictionary


def test_streams_carry_data_both_ways_with_half_closes():
    arrived = []
    server, client = _pair(lambda stream: (stream.reply(), arrived.append(stream)))
    stream = client.open_stream({"streamtype": ["data"]})
    stream.write(b"x" * 300000)  # more than a window: the server reads and gives it back
    stream.close()
    peer = arrived[0]
    assert peer.header("streamtype") == "data"
    received = b""
    while chunk := peer.read():
        received += chunk
    assert received == b"x" * 300000
    peer.write(b"answer")
    peer.close()
    assert stream.read() == b"answer" and stream.read() == b""
    assert client.ping(timeout=10)
    client.close()
    server.join(timeout=10)
    assert server.closed.is_set()


def test_a_peer_that_keeps_no_windows_is_sent_to_without_waiting():
    """spdystream (kubectl, the kubelet) sends no WINDOW_UPDATE: a sender must not wait for one."""
    a, b = socket.socketpair()
    session = spdy.Session(a, _Reader(a), server=True, on_stream=lambda s: s.reply())
    threading.Thread(target=session.serve, daemon=True).start()  # (no start(): nothing announced)
    raw = b
    encoder, decoder = spdy.HeaderEncoder(), spdy.HeaderDecoder()
    raw.sendall(spdy.control_frame(spdy.SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) +
                                   encoder.encode({"streamtype": ["stdout"]})))
    reader = _Reader(raw)
    head = reader.read(8)
    reply = reader.read(struct.unpack(">II", head)[1] & 0xFFFFFF)
    assert struct.unpack(">HH", head[:4]) == (0x8003, spdy.SYN_REPLY)
    decoder.decode(reply[4:])
    stream = session.streams[1]
    done = threading.Event()
    threading.Thread(target=lambda: (stream.write(b"y" * 500000), done.set()), daemon=True).start()
    got = 0
    while got < 500000:
        first, second = struct.unpack(">II", reader.read(8))
        payload = reader.read(second & 0xFFFFFF)
        if not first & 0x80000000:
            got += len(payload)
    assert done.wait(10)
    session.close()


def test_a_peer_that_keeps_windows_is_obeyed():
    a, b = socket.socketpair()
    session = spdy.Session(a, _Reader(a), server=True, on_stream=lambda s: s.reply())
    threading.Thread(target=session.serve, daemon=True).start()
    encoder = spdy.HeaderEncoder()
    # this peer keeps windows of 1000 bytes per stream, and says so
    b.sendall(spdy.control_frame(spdy.SETTINGS, 0, struct.pack(">III", 1, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000)))
    b.sendall(spdy.control_frame(spdy.SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) +
                                 encoder.encode({"streamtype": ["stdout"]})))
    reader = _Reader(b)
    reader.read(struct.unpack(">II", reader.read(8))[1] & 0xFFFFFF)  # SYN_REPLY
    written = threading.Event()
    threading.Thread(target=lambda: (session.streams[1].write(b"z" * 3000), written.set()), daemon=True).start()
    first, second = struct.unpack(">II", reader.read(8))
    assert not first & 0x80000000 and second & 0xFFFFFF == 1000
    reader.read(1000)
    assert not written.wait(0.3)  # the rest waits for the window
    b.sendall(spdy.control_frame(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 1, 5000)))
    assert written.wait(10)
    session.close()


@pytest.mark.parametrize("frame", [
    struct.pack(">HHI", 0x8002, spdy.SYN_STREAM, 10) + bytes(10),  # SPDY/2
    spdy.control_frame(spdy.SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib at all"),
    spdy.control_frame(spdy.SYN_STREAM, 0, b"\x00\x00"),  # too short
])
def test_a_peer_breaking_the_protocol_gets_goaway_and_the_session_ends(frame):
    a, b = socket.socketpair()
    session = spdy.Session(a, _Reader(a), server=True, on_stream=lambda s: s.reply())
    session.start()
    reader = _Reader(b)
    reader.read(8 + 12)  # the SETTINGS it announced
    reader.read(8 + 8)  # and its session window
    b.sendall(frame)
    first, second = struct.unpack(">II", reader.read(8))
    assert first == 0x80030000 | spdy.GOAWAY
    session.join(timeout=10)
    assert session.closed.is_set()


def test_a_stream_id_going_backwards_is_refused_and_unknown_streams_data_ignored():
    arrived = []
    a, b = socket.socketpair()
    session = spdy.Session(a, _Reader(a), server=True, on_stream=lambda s: (s.reply(), arrived.append(s)))
    threading.Thread(target=session.serve, daemon=True).start()
    encoder = spdy.HeaderEncoder()
    b.sendall(spdy.data_frame(99, 0, b"for nobody"))
    for stream_id in (5, 3):
        b.sendall(spdy.control_frame(spdy.SYN_STREAM, 0, struct.pack(">IIBB", stream_id, 0, 0, 0) +
                                     encoder.encode({"n": [str(stream_id)]})))
    reader = _Reader(b)
    kinds = []
    for _ in range(2):
        first, second = struct.unpack(">II", reader.read(8))
        payload = reader.read(second & 0xFFFFFF)
        kinds.append((first & 0xFFFF, struct.unpack(">I", payload[:4])[0]))
    assert kinds == [(spdy.SYN_REPLY, 5), (spdy.RST_STREAM, 3)]
    assert [s.id for s in arrived] == [5]
    session.close()
