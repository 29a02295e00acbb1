"""Layer compression: detection, streaming decompression and compression.

gzip goes through ISA-L (python-isal) where it can: decompression, and
compression at its levels 0-3, several times faster than zlib. Levels 4-9,
which ISA-L does not have, go through zlib-ng. zstd goes through the
``zstandard`` bindings of libzstd.
"""

from __future__ import annotations

from typing import Any, Protocol

from ketch.errors import ImageFormatError, InvalidInputError

GZIP = "gzip"
ZSTD = "zstd"
ALGORITHMS = (GZIP, ZSTD)
_CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def detect(prefix: bytes) -> str | None:
    """The compression of a stream from its first bytes (None: not compressed)."""
    if prefix.startswith(_GZIP_MAGIC):
        return GZIP
    if prefix.startswith(_ZSTD_MAGIC):
        return ZSTD
    return None


def check_algorithm(name: str) -> str:
    if name not in ALGORITHMS:
        raise InvalidInputError(f"unknown compression format {name!r} (use gzip or zstd)")
    return name


class PeekableReader:
    """A stream whose first bytes can be looked at without consuming them."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._buffer = b""

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._stream.read(size - len(self._buffer))
            if not chunk:
                break
            self._buffer += chunk
        return self._buffer[:size]

    def read(self, size: int = -1) -> bytes:
        if self._buffer:
            if size is None or size < 0:
                data, self._buffer = self._buffer, b""
                return data + self._stream.read()
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._stream.read(size)


class DecompressingReader:
    """Reads decompressed bytes of a gzip or zstd stream."""

    def __init__(self, stream: Readable, algorithm: str) -> None:
        self._stream = stream
        self._algorithm = algorithm
        self._pending = b""
        self._eof = False
        if algorithm == GZIP:
            from isal import isal_zlib

            self._new_gzip = lambda: isal_zlib.decompressobj(31)
            self._decoder: Any
            self._decoder = self._new_gzip()
        elif algorithm == ZSTD:
            import zstandard

            self._decoder = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        else:
            raise InvalidInputError(f"unknown compression {algorithm!r}")

    def read(self, size: int = -1) -> bytes:
        want = _CHUNK if size is None or size < 0 else size
        while len(self._pending) < want and not self._eof:
            chunk = self._stream.read(_CHUNK)
            try:
                if not chunk:
                    self._eof = True
                    if self._algorithm == GZIP and not self._decoder.eof and self._seen_data:
                        raise ImageFormatError("compressed layer ends in the middle of the gzip stream")
                    break
                self._seen_data = True
                self._pending += self._feed(chunk)
            except ImageFormatError:
                raise
            except Exception as exc:  # noqa: BLE001 - zlib.error, isal's, zstd.ZstdError: no common base
                raise ImageFormatError(f"corrupt {self._algorithm} layer: {exc}") from exc
        data, self._pending = self._pending[:want], self._pending[want:]
        return data

    _seen_data = False

    def _feed(self, chunk: bytes) -> bytes:
        if self._algorithm != GZIP:
            return self._decoder.decompress(chunk)
        out = []
        while chunk:
            out.append(self._decoder.decompress(chunk))
            if not self._decoder.eof:
                break
            # Concatenated gzip members (pigz, some tools) form one stream.
            chunk = self._decoder.unused_data
            if chunk:
                self._decoder = self._new_gzip()
        return b"".join(out)


def decompressed(stream: Readable) -> Readable:
    """The stream's uncompressed bytes, whatever compression its first bytes show (or none)."""
    peek = PeekableReader(stream)
    kind = detect(peek.peek(4))
    return DecompressingReader(peek, kind) if kind else peek


class CompressingReader:
    """Reads the compressed form of another stream."""

    def __init__(self, stream: Readable, algorithm: str, level: int | None = None) -> None:
        self._stream = stream
        self._done = False
        self._pending = b""
        if algorithm == GZIP:
            if level is None or level <= 3:
                from isal import isal_zlib

                self._encoder: Any = isal_zlib.compressobj(2 if level is None else max(level, 0),
                                                      isal_zlib.DEFLATED, 31)
            else:
                from zlib_ng import zlib_ng

                self._encoder = zlib_ng.compressobj(min(level, 9), zlib_ng.DEFLATED, 31)
        elif algorithm == ZSTD:
            import zstandard

            self._encoder = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()
        else:
            raise InvalidInputError(f"unknown compression {algorithm!r}")

    def read(self, size: int = -1) -> bytes:
        want = _CHUNK if size is None or size < 0 else size
        while len(self._pending) < want and not self._done:
            chunk = self._stream.read(_CHUNK)
            if chunk:
                self._pending += self._encoder.compress(chunk)
            else:
                self._pending += self._encoder.flush()
                self._done = True
        data, self._pending = self._pending[:want], self._pending[want:]
        return data
