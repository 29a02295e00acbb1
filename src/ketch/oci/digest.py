"""Content digests as the OCI image-spec defines them (``algorithm:encoded``).

Only the registered algorithms sha256 and sha512 are accepted; both are
lowercase hex. :class:`VerifyingReader` checks a stream against a digest and a
size while it is read, so content is never trusted before it has been checked.
"""

from __future__ import annotations

import re

from ketch.errors import DigestMismatchError, InvalidInputError
from ketch.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and hashlib (OpenSSL) cost milliseconds; the runtime path parses references only
    import hashlib
    from typing import BinaryIO, Protocol

    class Readable(Protocol):
        def read(self, size: int = -1, /) -> bytes: ...

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


class Digest(Record, frozen=True, order=True):
    """A validated content digest, e.g. ``sha256:e3b0...``."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _DIGEST_RE.match(text)
        if not match:
            raise InvalidInputError(f"invalid digest {text!r}: expected ALGORITHM:HEX")
        algorithm, encoded = match.groups()
        expected = _HEX_LENGTH.get(algorithm)
        if expected is None:
            raise InvalidInputError(f"invalid digest {text!r}: unsupported algorithm {algorithm!r}")
        if len(encoded) != expected or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise InvalidInputError(
                f"invalid digest {text!r}: {algorithm} needs {expected} lowercase hex characters"
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        import hashlib

        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        import hashlib

        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


class VerifyingReader:
    """Wraps a stream; raises :class:`DigestMismatchError` when it ends wrong.

    The check happens when the wrapped stream reports end of file: if the bytes
    seen do not hash to ``digest`` or do not add up to ``size`` (when given),
    the read that would have returned EOF raises instead, so a consumer that
    reads to the end can never mistake bad content for good. Reading past
    ``size`` raises at once.
    """

    def __init__(self, stream: Readable, digest: Digest, size: int | None = None, *, what: str = "blob"):
        self._stream = stream
        self._digest = digest
        self._size = size if size is not None and size >= 0 else None
        self._hasher = digest.hasher()
        self._what = what
        self.bytes_read = 0
        self.verified = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self.bytes_read += len(data)
            if self._size is not None and self.bytes_read > self._size:
                raise DigestMismatchError(
                    f"{self._what} {self._digest}: more data than the {self._size} bytes announced"
                )
            self._hasher.update(data)
            return data
        self._finish()
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self.verified:
            return
        if self._size is not None and self.bytes_read != self._size:
            raise DigestMismatchError(
                f"{self._what} {self._digest}: got {self.bytes_read} bytes, expected {self._size}"
            )
        actual = self._hasher.hexdigest()
        if actual != self._digest.encoded:
            raise DigestMismatchError(
                f"{self._what} digest mismatch: expected {self._digest}, got {self._digest.algorithm}:{actual}"
            )
        self.verified = True


def copy_verified(source: Readable, sink: BinaryIO, digest: Digest, size: int | None = None,
                  *, what: str = "blob", chunk_size: int = 1 << 20, on_progress=None) -> int:
    """Copy ``source`` to ``sink`` in chunks, checking digest and size; returns bytes copied."""
    reader = VerifyingReader(source, digest, size, what=what)
    while True:
        chunk = reader.read(chunk_size)
        if not chunk:
            break
        sink.write(chunk)
        if on_progress is not None:
            on_progress(len(chunk))
    return reader.bytes_read
