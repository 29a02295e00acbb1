"""The ``dir:PATH`` transport: an image as plain files, as skopeo writes it.

Layout (containers/image's "Directory Transport Version: 1.1"): ``version``,
``manifest.json`` for the top level, ``DIGEST.manifest.json`` for instances of
an index, and one file per blob named by its sha256 hex. ``manifest.json`` is
renamed into place at commit, so an interrupted copy leaves no manifest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DestinationError, InvalidReferenceError, NotFoundError, from_oserror
from ketch.image.context import SystemContext
from ketch.image.layout import TEMP_PREFIX, has_blob_file, remove_temporaries, store_blob_file, write_atomically
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest

TRANSPORT = "dir"
VERSION_FILE = "version"
VERSION = b"Directory Transport Version: 1.1\n"


class DirectoryReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, path: str) -> None:
        if not path:
            raise InvalidReferenceError("invalid dir: reference: empty path")
        self.path = Path(path)

    @classmethod
    def parse(cls, text: str) -> DirectoryReference:
        return cls(text)

    def string_within_transport(self) -> str:
        return str(self.path)

    def new_source(self, ctx: SystemContext) -> DirectorySource:
        return DirectorySource(self)

    def new_destination(self, ctx: SystemContext) -> DirectoryDestination:
        return DirectoryDestination(self)


def _blob_name(digest: Digest) -> str:
    return digest.encoded if digest.algorithm == "sha256" else f"{digest.algorithm}-{digest.encoded}"


def _manifest_name(instance: Digest | None) -> str:
    return "manifest.json" if instance is None else f"{_blob_name(instance)}.manifest.json"


class DirectorySource(ImageSource):
    def __init__(self, reference: DirectoryReference) -> None:
        self.reference = reference
        self.root = reference.path
        if not (self.root / "manifest.json").is_file():
            raise NotFoundError(f"{self.root} holds no image (no manifest.json)")

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        path = self.root / _manifest_name(instance)
        try:
            return path.read_bytes(), ""
        except OSError as exc:
            raise from_oserror(exc, f"reading {path}") from exc

    def get_signatures(self, manifest: bytes) -> list[bytes]:
        """``signature-1``, ``signature-2``... beside the manifest, as skopeo writes them."""
        signatures: list[bytes] = []
        while (path := self.root / f"signature-{len(signatures) + 1}").is_file():
            signatures.append(path.read_bytes()[:4 << 20])
        return signatures

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        path = self.root / _blob_name(descriptor.digest)
        try:
            stream = open(path, "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {descriptor.digest} is missing from {self.root}") from exc
        except OSError as exc:
            raise from_oserror(exc, f"reading {path}") from exc
        return stream, os.fstat(stream.fileno()).st_size


class DirectoryDestination(ImageDestination):
    supported_manifest_types = None  # stores any manifest as it is

    def __init__(self, reference: DirectoryReference) -> None:
        self.reference = reference
        self.root = reference.path
        self._top: bytes | None = None
        try:
            if self.root.exists():
                if not self.root.is_dir():
                    raise DestinationError(f"{self.root} exists and is not a directory")
                remove_temporaries(self.root)  # what an interrupted copy left; a live writer's stay
                entries = [e for e in os.listdir(self.root) if not e.startswith(TEMP_PREFIX)]
                if entries and VERSION_FILE not in entries:
                    raise DestinationError(
                        f"{self.root} is not empty and does not hold a dir: image; refusing to overwrite it")
                # Replacing an earlier dir: image: drop its manifest first, so it stops looking complete.
                for name in entries:
                    path = self.root / name
                    if name == "manifest.json":
                        path.unlink()
                for name in entries:
                    path = self.root / name
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    elif name != "manifest.json":
                        path.unlink()
            else:
                self.root.mkdir(parents=True)
            write_atomically(self.root / VERSION_FILE, VERSION, fsync=False)
        except OSError as exc:
            raise DestinationError(f"preparing {self.root}: {exc.strerror}", errno=exc.errno) from exc

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        return has_blob_file(self.root / _blob_name(descriptor.digest), descriptor)

    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        return store_blob_file(self.root, lambda digest: self.root / _blob_name(digest), stream, info, on_progress)

    supports_signatures = True

    def put_signatures(self, manifest: bytes, signatures: list[bytes]) -> None:
        index = 0
        for index, signature in enumerate(signatures, 1):
            write_atomically(self.root / f"signature-{index}", signature)
        while (extra := self.root / f"signature-{index + 1}").exists():  # (an older image's)
            extra.unlink()
            index += 1

    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        if instance is None:
            self._top = raw  # written at commit
        else:
            write_atomically(self.root / _manifest_name(instance), raw, fsync=False)

    def commit(self) -> None:
        if self._top is None:
            raise DestinationError("commit before the top-level manifest was written")
        write_atomically(self.root / "manifest.json", self._top)
