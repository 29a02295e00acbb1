"""The ``oci:PATH[:REF]`` transport: an OCI image layout directory.

REF is the ``org.opencontainers.image.ref.name`` annotation of an entry in
``index.json``, as skopeo and umoci spell it. Sigstore signatures of an image are kept beside it
as cosign keeps them in a layout: the attachment manifest named ``sha256-HEX.sig`` (simple
signatures have no place in a layout, as in containers/image). Blobs are written under a
temporary name and renamed; ``index.json`` is replaced last and atomically,
under an exclusive lock on the layout, so an interrupted copy never leaves
an entry that points at missing content.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ketch.errors import (
    DestinationError,
    DigestMismatchError,
    ImageFormatError,
    InvalidReferenceError,
    ManifestUnknownError,
    NotFoundError,
    from_oserror,
)
from ketch.image.context import SystemContext
from ketch.image.layout import has_blob_file, remove_temporaries, store_blob_file, write_atomically
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest
from ketch.oci import mediatypes as mt
from ketch.oci.manifest import dump_json

TRANSPORT = "oci"
REF_NAME = "org.opencontainers.image.ref.name"


def _is_attachment(descriptor: Descriptor) -> bool:
    """Whether an index entry is an image's sigstore attachment (named ``ALGO-HEX.sig``)."""
    name = descriptor.annotations.get(REF_NAME, "")
    algorithm, _, rest = name.partition("-")
    return name.endswith(".sig") and algorithm in ("sha256", "sha512") and len(rest) in (68, 132)
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def split_path_and_ref(text: str, transport: str) -> tuple[str, str]:
    """``PATH[:REF]`` split at the first colon, as containers/image does."""
    path, _, ref = text.partition(":")
    if not path:
        raise InvalidReferenceError(f"invalid {transport}: reference {text!r}: empty path")
    return path, ref


class OCILayoutReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, path: str, image: str = "") -> None:
        self.path = Path(path)
        self.image = image

    @classmethod
    def parse(cls, text: str) -> OCILayoutReference:
        return cls(*split_path_and_ref(text, TRANSPORT))

    def string_within_transport(self) -> str:
        return f"{self.path}:{self.image}" if self.image else str(self.path)

    def new_source(self, ctx: SystemContext) -> OCILayoutSource:
        return OCILayoutSource(self, ctx.oci_shared_blob_dir)

    def new_destination(self, ctx: SystemContext) -> OCILayoutDestination:
        return OCILayoutDestination(self, ctx.oci_shared_blob_dir, ctx.oci_accept_uncompressed_layers)


def blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.encoded


def parse_index(raw: bytes, where: str) -> dict:
    try:
        index = json.loads(raw)
    except ValueError as exc:
        raise ImageFormatError(f"{where}/index.json is not valid JSON") from exc
    if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
        raise ImageFormatError(f"{where}/index.json is not an image index")
    return index


def read_index(root: Path) -> dict:
    try:
        raw = (root / "index.json").read_bytes()
    except OSError as exc:
        raise from_oserror(exc, f"reading OCI layout {root}") from exc
    return parse_index(raw, str(root))


@contextlib.contextmanager
def layout_lock(root: Path) -> Iterator[None]:
    """Exclusive flock on the layout directory itself (no extra file in the layout)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class OCILayoutSource(ImageSource):
    """Reads an OCI layout. File access goes through ``_read``/``_open`` so that
    the oci-archive transport reads the same structure out of a tar file."""
    reference: OCILayoutReference  # (this transport's)

    def __init__(self, reference: OCILayoutReference, shared_blob_dir: str | None = None) -> None:
        self.reference = reference
        self.root = reference.path
        self.where = str(reference.path)
        self.shared_blob_dir = Path(shared_blob_dir) if shared_blob_dir else None
        self.descriptor = self._resolve()

    # File access (overridden for archives).
    def _read(self, relpath: str) -> bytes:
        try:
            return (self.root / relpath).read_bytes()
        except OSError as exc:
            raise from_oserror(exc, f"reading {self.root / relpath}") from exc

    def _open(self, relpath: str) -> tuple[BinaryIO, int]:
        try:
            stream = open(self.root / relpath, "rb")
        except OSError as exc:
            raise from_oserror(exc, f"reading {self.root / relpath}") from exc
        return stream, os.fstat(stream.fileno()).st_size

    def _resolve(self) -> Descriptor:
        index = parse_index(self._read("index.json"), self.where)
        entries = [Descriptor.from_dict(d, where="index.json entry") for d in index.get("manifests", [])]
        name = self.reference.image
        if name:
            matches = [d for d in entries if d.annotations.get(REF_NAME) == name]
            if not matches:
                raise ManifestUnknownError(f"no image named {name!r} in OCI layout {self.where}")
            return matches[0]
        entries = [d for d in entries if not _is_attachment(d)]  # (an image's signatures are not another image)
        if len(entries) == 1:
            return entries[0]
        if not entries:
            raise ManifestUnknownError(f"OCI layout {self.where} holds no image")
        raise InvalidReferenceError(
            f"OCI layout {self.where} holds {len(entries)} images; name one as {self.reference.transport}:"
            f"{self.where}:NAME")

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        if instance is None:
            descriptor = self.descriptor
            raw = self._read_blob(descriptor.digest, "manifest")
            if Digest.of(raw, descriptor.digest.algorithm) != descriptor.digest:
                raise DigestMismatchError(f"manifest {descriptor.digest} in {self.where} does not match its digest")
            return raw, descriptor.media_type
        return self._read_blob(instance, "manifest"), ""

    def get_signatures(self, manifest: bytes) -> list[bytes]:
        """The sigstore signatures in the attachment named ``sha256-HEX.sig`` (none without one)."""
        from ketch.image.sigstore import MAX_PAYLOAD_SIZE, SigstoreSignature, attachment_tag

        tag = attachment_tag(str(Digest.of(manifest)))
        index = parse_index(self._read("index.json"), self.where)
        entries = [Descriptor.from_dict(d, where="index.json entry") for d in index.get("manifests", [])]
        found = next((d for d in entries if d.annotations.get(REF_NAME) == tag), None)
        if found is None:
            return []
        attachment = json.loads(self._read_blob(found.digest, "signature attachment"))
        blobs = []
        for layer in attachment.get("layers") or []:
            descriptor = Descriptor.from_dict(layer, where=f"layer of {tag}")
            if descriptor.size > MAX_PAYLOAD_SIZE:
                raise ImageFormatError(f"a signature in {tag} of {self.where} is over {MAX_PAYLOAD_SIZE >> 20} MiB")
            payload = self._read_blob(descriptor.digest, "signature")
            if Digest.of(payload, descriptor.digest.algorithm) != descriptor.digest:
                raise DigestMismatchError(f"signature {descriptor.digest} in {self.where} does not match its digest")
            blobs.append(SigstoreSignature(descriptor.media_type, payload, dict(descriptor.annotations)).blob())
        return blobs

    def _blob_relpath(self, digest: Digest) -> str:
        if self.shared_blob_dir is not None:  # an absolute path: the layout's root does not apply
            return str(self.shared_blob_dir / digest.algorithm / digest.encoded)
        return f"blobs/{digest.algorithm}/{digest.encoded}"

    def _read_blob(self, digest: Digest, what: str) -> bytes:
        try:
            return self._read(self._blob_relpath(digest))
        except NotFoundError as exc:
            raise NotFoundError(f"{what} {digest} is missing from OCI layout {self.where}") from exc

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        digest = descriptor.digest
        try:
            return self._open(self._blob_relpath(digest))
        except NotFoundError as exc:
            raise NotFoundError(f"blob {digest} is missing from OCI layout {self.where}") from exc


class OCILayoutDestination(ImageDestination):
    reference: OCILayoutReference  # (this transport's)
    supported_manifest_types = (mt.OCI_MANIFEST, mt.OCI_INDEX)
    # uncompressed layers are compressed on the way in, as containers/image's oci: destination does
    # unless told to accept them (--dest-oci-accept-uncompressed-layers)
    desired_layer_compression = "compress"

    def __init__(self, reference: OCILayoutReference, shared_blob_dir: str | None = None,
                 accept_uncompressed: bool = False) -> None:
        if accept_uncompressed:
            self.desired_layer_compression = "preserve"
        self.reference = reference
        self.root = reference.path
        self.blobs = Path(shared_blob_dir) if shared_blob_dir else self.root / "blobs"
        self._top: Descriptor | None = None
        try:
            if self.root.exists() and not self.root.is_dir():
                raise DestinationError(f"{self.root} exists and is not a directory")
            (self.blobs / "sha256").mkdir(parents=True, exist_ok=True)
            (self.root / "blobs").mkdir(parents=True, exist_ok=True)
            for directory in (self.root, self.blobs / "sha256"):
                remove_temporaries(directory)  # what an interrupted copy left
            layout = self.root / LAYOUT_FILE
            if not layout.exists():
                write_atomically(layout, dump_json(LAYOUT_VERSION))
        except OSError as exc:
            raise DestinationError(f"creating OCI layout {self.root}: {exc.strerror}", errno=exc.errno) from exc

    supports_signatures = True
    _sigstore: list[bytes] = []

    def put_signatures(self, manifest: bytes, signatures: list[bytes]) -> None:
        from ketch.errors import UnsupportedError
        from ketch.image.sigstore import is_sigstore

        if any(not is_sigstore(blob) for blob in signatures):
            raise UnsupportedError(f"{self.reference.transport}: layouts keep sigstore signatures only, not simple "
                                   "(GPG) ones; copy with --remove-signatures")
        self._sigstore = list(signatures)  # (written at commit, beside the image)

    def _attachment(self, index: dict, tag: str) -> dict | None:
        """The layout's index entry of the signature attachment named ``tag``, with the
        signatures it holds already, written out merged with the new ones."""
        import io

        from ketch.image.sigstore import SigstoreSignature

        manifest: dict = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": []}
        config: dict = {"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
        for entry in index.get("manifests", []):
            if (entry.get("annotations") or {}).get(REF_NAME) == tag:
                manifest = json.loads((self.blobs / "sha256" / entry["digest"].split(":", 1)[1]).read_bytes())
                config = json.loads((self.blobs / "sha256" / manifest["config"]["digest"].split(":", 1)[1]).read_bytes())
        for blob in self._sigstore:
            signature = SigstoreSignature.from_blob(blob)
            digest = Digest.of(signature.payload)
            if any(layer.get("digest") == str(digest) and (layer.get("annotations") or {}) == signature.annotations
                   for layer in manifest["layers"]):
                continue
            store_blob_file(self.blobs / "sha256", self._blob_path, io.BytesIO(signature.payload),
                            BlobInfo(signature.mime_type, digest, len(signature.payload)), None)
            manifest["layers"].append({"mediaType": signature.mime_type, "digest": str(digest),
                                       "size": len(signature.payload), "annotations": signature.annotations})
            config["rootfs"]["diff_ids"].append(str(digest))
        config_raw = dump_json(config)
        write_atomically(self._blob_path(Digest.of(config_raw)), config_raw, fsync=False)
        manifest["config"] = {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of(config_raw)),
                              "size": len(config_raw)}
        raw = dump_json(manifest)
        write_atomically(self._blob_path(Digest.of(raw)), raw, fsync=False)
        return {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(raw)), "size": len(raw),
                "annotations": {REF_NAME: tag}}

    def _blob_path(self, digest: Digest) -> Path:
        path = self.blobs / digest.algorithm / digest.encoded
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        return has_blob_file(self.blobs / descriptor.digest.algorithm / descriptor.digest.encoded, descriptor)

    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        return store_blob_file(self.blobs / "sha256", self._blob_path, stream, info, on_progress)

    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        digest = Digest.of(raw)
        write_atomically(self._blob_path(digest), raw, fsync=False)
        if instance is None:
            annotations = {REF_NAME: self.reference.image} if self.reference.image else {}
            self._top = Descriptor(media_type=media_type, digest=digest, size=len(raw), annotations=annotations)

    def commit(self) -> None:
        if self._top is None:
            raise DestinationError("commit before the top-level manifest was written")
        with layout_lock(self.root):
            index_path = self.root / "index.json"
            if index_path.exists():
                index = read_index(self.root)
            else:
                index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
            name = self.reference.image
            kept = []
            for entry in index.get("manifests", []):
                entry_name = (entry.get("annotations") or {}).get(REF_NAME)
                if name and entry_name == name:
                    continue
                if not name and not entry_name and entry.get("digest") == str(self._top.digest):
                    continue
                kept.append(entry)
            kept.append(self._top.to_dict())
            if self._sigstore:
                from ketch.image.sigstore import attachment_tag

                tag = attachment_tag(str(self._top.digest))
                attachment = self._attachment(index, tag)
                kept = [e for e in kept if (e.get("annotations") or {}).get(REF_NAME) != tag] + [attachment]
            index["manifests"] = kept
            write_atomically(index_path, dump_json(index))
