"""tar-split: a layer's tar stream kept as its raw headers plus the names of the files whose
content fills it, so that the very same bytes (the same digest) can be put back together from
an unpacked layer. containers/storage keeps one (gzip'd JSON lines) beside every layer, and
reassembles a layer's tar from it when the layer is pushed or saved.

Entries: ``{"type": 2, "payload": BASE64, "position": N}`` for raw bytes (headers, padding,
the end blocks) and ``{"type": 1, "name": PATH, "size": N, "payload": BASE64(CRC64), "position":
N}`` for a member's content (no size and a null payload for an empty one). The CRC is Go's
crc64 with the ISO table, which containers/storage checks when it reassembles.

Written by hand: the format is tar-split's (a Go library) and no Python package speaks it.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import struct
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from ketch.errors import ImageFormatError

FILE_TYPE = 1
SEGMENT_TYPE = 2
CHUNK = 1 << 20


def _crc64(data_chunks) -> bytes:
    import fastcrc

    crc = None
    for chunk in data_chunks:
        crc = fastcrc.crc64.go_iso(chunk, crc) if crc is not None else fastcrc.crc64.go_iso(chunk)
    return struct.pack(">Q", crc if crc is not None else 0)


def _member_name(raw: bytes, member: tarfile.TarInfo) -> str:
    """The name as the member's own header spells it (a directory keeps its trailing slash, as
    Go's archive/tar reports it); a PAX path wins, as in Go."""
    if "path" in member.pax_headers:
        return member.pax_headers["path"]
    header = raw[:512]
    name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if header[257:263] in (b"ustar\0", b"ustar "):
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if prefix and header[257:263] == b"ustar\0":
            name = f"{prefix}/{name}"
    if member.name.endswith(name.rstrip("/")) and len(member.name) > len(name.rstrip("/")):
        return member.name + ("/" if member.isdir() else "")  # a GNU long name: tarfile read it
    return name


def write(tar_path: str, out: BinaryIO) -> tuple[set[int], set[int]]:
    """The tar-split of the uncompressed tar at ``tar_path``, gzip'd into ``out``; the uids and
    gids its members have."""
    uids: set[int] = set()
    gids: set[int] = set()
    position = 0
    with open(tar_path, "rb") as raw, gzip.GzipFile(fileobj=out, mode="wb") as packed, \
            tarfile.open(tar_path, "r:", errorlevel=2) as tar:

        def emit(entry: dict) -> None:
            nonlocal position
            entry["position"] = position
            position += 1
            packed.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")

        def segment(start: int, end: int) -> None:
            raw.seek(start)
            emit({"type": SEGMENT_TYPE, "payload": base64.b64encode(raw.read(end - start)).decode()})

        done = 0  # where the last member's content ended
        for member in tar:
            segment(done, member.offset_data)
            raw.seek(member.offset_data - 512)
            name = _member_name(raw.read(512), member)
            uids.add(member.uid)
            gids.add(member.gid)
            entry: dict = {"type": FILE_TYPE, "name": name}
            size = member.size if member.isreg() or member.type in (tarfile.CONTTYPE,) else 0
            if size:
                raw.seek(member.offset_data)
                left = size

                def chunks(name: str = name):
                    nonlocal left
                    while left > 0:
                        data = raw.read(min(CHUNK, left))
                        if not data:
                            raise ImageFormatError(f"{tar_path}: {name} ends early")
                        left -= len(data)
                        yield data

                entry["size"] = size
                entry["payload"] = base64.b64encode(_crc64(chunks())).decode()
            else:
                entry["payload"] = None
            emit(entry)
            done = member.offset_data + size
        end = os.path.getsize(tar_path)
        segment(done, end)
        emit({"type": SEGMENT_TYPE, "payload": ""})
    return uids, gids


def entries(path: str) -> Iterator[dict]:
    with gzip.open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


class Reassembled:
    """The layer's tar stream, read from its tar-split and the files of ``root`` (the layer's
    unpacked tree). Each file's CRC is checked, as containers/storage checks it."""

    def __init__(self, split_path: str, root: str) -> None:
        self._entries = entries(split_path)
        self._root = root
        self._pending = b""
        self._file: BinaryIO | None = None
        self._left = 0
        self._crc: int | None = None
        self._expected = b""
        self._name = ""

    def _next(self) -> bool:
        for entry in self._entries:
            if entry["type"] == SEGMENT_TYPE:
                self._pending = base64.b64decode(entry.get("payload") or "")
                if self._pending:
                    return True
                continue
            size = entry.get("size") or 0
            if not size:
                continue
            name = entry.get("name") or base64.b64decode(entry.get("name_raw") or "").decode("utf-8",
                                                                                                "surrogateescape")
            path = os.path.join(self._root, name.lstrip("/"))
            try:
                self._file = open(path, "rb")
            except OSError as exc:
                raise ImageFormatError(f"layer file {name} is missing ({exc.strerror})") from exc
            self._left = size
            self._name = name
            self._expected = base64.b64decode(entry["payload"]) if entry.get("payload") else b""
            self._crc = None
            return True
        return False

    def read(self, size: int = -1) -> bytes:
        import fastcrc

        want = CHUNK if size is None or size < 0 else size
        while True:
            if self._pending:
                out, self._pending = self._pending[:want], self._pending[want:]
                return out
            if self._file is not None:
                data = self._file.read(min(want, self._left))
                if not data:
                    raise ImageFormatError(f"layer file {self._name} is shorter than its tar-split says")
                self._left -= len(data)
                self._crc = fastcrc.crc64.go_iso(data, self._crc) if self._crc is not None else \
                    fastcrc.crc64.go_iso(data)
                if self._left == 0:
                    self._file.close()
                    self._file = None
                    if self._expected and struct.pack(">Q", self._crc) != self._expected:
                        raise ImageFormatError(f"file integrity checksum failed for {self._name!r}")
                return data
            if not self._next():
                return b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
