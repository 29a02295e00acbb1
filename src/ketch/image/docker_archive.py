"""The ``docker-archive:PATH[:REF]`` transport: the ``docker save`` format.

An archive holds ``manifest.json`` (a list of ``{Config, RepoTags, Layers}``),
one JSON config per image and one tar per layer. Reading: REF is a
``name:tag`` from RepoTags or ``@N``, the N-th image; without REF the archive
must hold one image. Layers are served as they are stored; uncompressed ones
(the norm) get their digests from the config's diff_ids, verified while they
stream. Writing: layers are stored uncompressed, named by diff_id, as docker
and podman load them; :class:`DockerArchiveWriter` puts several images into
one archive.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import BinaryIO

from ketch.errors import DestinationError, ImageFormatError, InvalidReferenceError, NotFoundError, UnsupportedError
from ketch.image import compression
from ketch.image.archive import TarReader, remove_tree, temp_dir_beside, write_tar
from ketch.image.context import SystemContext
from ketch.image.layout import has_blob_file, store_blob_file, write_atomically
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest, ImageConfig, parse_manifest
from ketch.oci import mediatypes as mt
from ketch.oci.manifest import dump_json
from ketch.oci.reference import Reference, parse_reference

TRANSPORT = "docker-archive"
CONFIG_TYPES = (mt.DOCKER_CONFIG, mt.OCI_CONFIG)


class DockerArchiveReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, path: str, name: Reference | None = None, index: int | None = None,
                 writer: DockerArchiveWriter | None = None) -> None:
        self.path = Path(path)
        self.name = name
        self.index = index
        self.writer = writer

    @classmethod
    def parse(cls, text: str) -> DockerArchiveReference:
        path, sep, ref = text.partition(":")
        if not path:
            raise InvalidReferenceError(f"invalid docker-archive: reference {text!r}: empty path")
        if not ref:
            return cls(path)
        if ref.startswith("@"):
            if not ref[1:].isdigit():
                raise InvalidReferenceError(f"invalid docker-archive: image index {ref!r}")
            return cls(path, index=int(ref[1:]))
        name = parse_reference(ref)
        if name.digest is not None:
            raise InvalidReferenceError(f"docker-archive: references name a tag, not a digest: {ref!r}")
        return cls(path, name.with_default_tag())

    def string_within_transport(self) -> str:
        if self.name is not None:
            return f"{self.path}:{self.name}"
        if self.index is not None:
            return f"{self.path}:@{self.index}"
        return str(self.path)

    def new_source(self, ctx: SystemContext) -> DockerArchiveSource:
        return DockerArchiveSource(self)

    def new_destination(self, ctx: SystemContext) -> DockerArchiveDestination:
        if self.index is not None:
            raise InvalidReferenceError("docker-archive: @N names an image to read, not one to write")
        return DockerArchiveDestination(self)


def _normalized_tags(tags: list) -> list[str]:
    out = []
    for tag in tags or []:
        try:
            out.append(str(parse_reference(tag).with_default_tag()))
        except InvalidReferenceError:
            continue
    return out


class DockerArchiveSource(ImageSource):
    reference: DockerArchiveReference  # (this transport's)
    def __init__(self, reference: DockerArchiveReference) -> None:
        self.reference = reference
        self.tar = TarReader(reference.path)
        try:
            entries = json.loads(self.tar.read("manifest.json"))
        except NotFoundError as exc:
            raise ImageFormatError(f"{reference.path} is not a docker archive (no manifest.json)") from exc
        except ValueError as exc:
            raise ImageFormatError(f"{reference.path}: manifest.json is not valid JSON") from exc
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ImageFormatError(f"{reference.path}: manifest.json is not a list of images")
        self.entry = self._choose(entries)
        self._blobs: dict[Digest, str] = {}
        self._manifest = self._build_manifest()

    def _choose(self, entries: list[dict]) -> dict:
        ref = self.reference
        if ref.index is not None:
            if ref.index >= len(entries):
                raise NotFoundError(f"{ref.path} holds {len(entries)} images; there is no @{ref.index}")
            return entries[ref.index]
        if ref.name is not None:
            wanted = str(ref.name)
            for entry in entries:
                if wanted in _normalized_tags(entry.get("RepoTags") or []):
                    return entry
            raise NotFoundError(f"no image tagged {wanted} in {ref.path}")
        if len(entries) != 1:
            raise InvalidReferenceError(
                f"{ref.path} holds {len(entries)} images; name one as docker-archive:{ref.path}:NAME:TAG or :@N")
        return entries[0]

    def _build_manifest(self) -> bytes:
        config_path = self.entry.get("Config")
        layers = self.entry.get("Layers")
        if not isinstance(config_path, str) or not isinstance(layers, list):
            raise ImageFormatError(f"{self.reference.path}: manifest.json entry lacks Config or Layers")
        config_raw = self.tar.read(config_path)
        config = ImageConfig.parse(config_raw)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(layers):
            raise ImageFormatError(f"{self.reference.path}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        config_digest = Digest.of(config_raw)
        self._blobs[config_digest] = config_path
        descriptors = []
        any_zstd = False
        for path, diff_id in zip(layers, diff_ids):
            stream, size = self.tar.open(path)
            try:
                kind = compression.detect(stream.read(4))
            finally:
                stream.close()
            if kind is None:
                digest = Digest.parse(diff_id)  # an uncompressed layer's digest is its diff_id
            else:
                digest = self._hash_member(path)
            any_zstd |= kind == compression.ZSTD
            self._blobs[digest] = path
            media_type = {None: mt.DOCKER_LAYER, compression.GZIP: mt.DOCKER_LAYER_GZIP,
                          compression.ZSTD: mt.OCI_LAYER_ZSTD}[kind]
            descriptors.append({"mediaType": media_type, "size": size, "digest": str(digest)})
        manifest_type = mt.OCI_MANIFEST if any_zstd else mt.DOCKER_MANIFEST
        config_type = mt.OCI_CONFIG if any_zstd else mt.DOCKER_CONFIG
        if any_zstd:
            for d in descriptors:
                media = str(d["mediaType"])
                d["mediaType"] = mt.DOCKER_TO_OCI.get(media, media)
        return dump_json({"schemaVersion": 2, "mediaType": manifest_type,
                          "config": {"mediaType": config_type, "size": len(config_raw),
                                     "digest": str(config_digest)},
                          "layers": descriptors})

    def _hash_member(self, path: str) -> Digest:
        import hashlib

        stream, _ = self.tar.open(path)
        hasher = hashlib.sha256()
        try:
            while chunk := stream.read(1 << 20):
                hasher.update(chunk)
        finally:
            stream.close()
        return Digest("sha256", hasher.hexdigest())

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        if instance is not None:
            raise NotFoundError("docker archives hold no manifest lists")
        return self._manifest, parse_manifest(self._manifest).media_type

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        path = self._blobs.get(descriptor.digest)
        if path is None:
            raise NotFoundError(f"blob {descriptor.digest} is not in {self.reference.path}")
        return self.tar.open(path)


class DockerArchiveWriter:
    """Collects one or more images and writes them as one docker archive on :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.work = temp_dir_beside(self.path)
        self.entries: list[dict] = []
        self._lock = threading.Lock()
        self._closed = False

    def reference(self, name: str | Reference | None = None) -> DockerArchiveReference:
        ref = parse_reference(name).with_default_tag() if isinstance(name, str) else name
        return DockerArchiveReference(str(self.path), ref, writer=self)

    def add_entry(self, entry: dict) -> None:
        with self._lock:
            for existing in self.entries:
                if existing["Config"] == entry["Config"] and existing["Layers"] == entry["Layers"]:
                    existing["RepoTags"] += [t for t in entry["RepoTags"] if t not in existing["RepoTags"]]
                    return
            self.entries.append(entry)

    def close(self) -> None:
        """Write the archive (atomically) and remove the working directory."""
        if self._closed:
            return
        self._closed = True
        try:
            write_atomically(self.work / "manifest.json", dump_json(self.entries), fsync=False)
            members = ["manifest.json"]
            for entry in self.entries:
                for name in [entry["Config"], *entry["Layers"]]:
                    if name not in members:
                        members.append(name)
            write_tar(self.work, self.path, members)
        finally:
            remove_tree(self.work)

    def abandon(self) -> None:
        self._closed = True
        remove_tree(self.work)


class DockerArchiveDestination(ImageDestination):
    reference: DockerArchiveReference  # (this transport's)
    supported_manifest_types = (mt.DOCKER_MANIFEST,)
    desired_layer_compression = "decompress"

    def __init__(self, reference: DockerArchiveReference) -> None:
        self.reference = reference
        self.owned = reference.writer is None
        self.writer = reference.writer or DockerArchiveWriter(reference.path)
        self.additional_tags: list[str] = []
        self._committed = False
        self._entry: dict | None = None

    def _file_for(self, media_type: str, digest: Digest) -> Path:
        suffix = ".json" if media_type in CONFIG_TYPES else ".tar"
        return self.writer.work / f"{digest.encoded}{suffix}"

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        if descriptor.media_type not in CONFIG_TYPES and compression_of(descriptor) is not None:
            return False  # a compressed layer must be decompressed first
        return has_blob_file(self._file_for(descriptor.media_type, descriptor.digest), descriptor)

    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        return store_blob_file(self.writer.work, lambda d: self._file_for(info.media_type, d), stream, info,
                               on_progress)

    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        if instance is not None:
            raise UnsupportedError("a docker archive holds single images, not manifest lists; copy without --all")
        manifest = parse_manifest(raw, media_type)
        layers = []
        for layer in manifest.layers:
            if compression_of(layer) is not None:
                raise DestinationError("internal error: a compressed layer reached a docker archive")
            layers.append(f"{layer.digest.encoded}.tar")
        tags = [str(self.reference.name)] if self.reference.name is not None else []
        tags += [t for t in self.additional_tags if t not in tags]
        self._entry = {"Config": f"{manifest.config.digest.encoded}.json",
                       "RepoTags": tags, "Layers": layers}

    def commit(self) -> None:
        if self._entry is None:
            raise DestinationError("commit before the manifest was written")
        self.writer.add_entry(self._entry)
        if self.owned:
            self.writer.close()
        self._committed = True

    def close(self) -> None:
        if self.owned and not self._committed:
            self.writer.abandon()


def compression_of(descriptor: Descriptor) -> str | None:
    return mt.LAYER_COMPRESSION.get(descriptor.media_type)


def save_images(store, names: list[str], output: str, ctx: SystemContext, progress=None) -> None:
    """``save`` in the docker-archive format: the store's images ``names`` (each under the name
    it was asked by, as podman's save names them) into one archive at ``output``. The store's own
    images meet no trust policy; their signatures are not written (an archive cannot keep them)."""
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.policy import Policy
    from ketch.image.storage_transport import StorageReference

    records = [(name, store.lookup(name)) for name in names]
    options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything(), remove_signatures=True)
    if progress is not None:
        options.progress = progress
    writer = DockerArchiveWriter(output)
    try:
        for name, record in records:
            tag = next((n for n in store.candidates(name) if n in record.names), None) or (
                record.names[0] if record.names else None)
            copy_image(StorageReference(record.id), writer.reference(tag), options)
    except BaseException:
        writer.abandon()
        raise
    writer.close()
