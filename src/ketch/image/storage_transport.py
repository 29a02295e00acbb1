"""The ``ketch-storage:NAME`` transport: images in ketch's local store.

As containers/image's storage transport is to containers/storage: pulling is
a copy to ``ketch-storage:``, pushing and saving are copies from it. Layers
are unpacked as they arrive (in parallel, overlay driver) and the compressed
blobs are kept, so a push of an unchanged image serves the very blobs it was
pulled as (and the registry, which has them, is sent no layer bytes).
"""

from __future__ import annotations

import io
from typing import BinaryIO

from ketch.errors import InvalidReferenceError, NotFoundError
from ketch.image import compression
from ketch.image.context import SystemContext
from ketch.image.conversion import is_layer
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest, parse_manifest
from ketch.storage.db import TableSet

TRANSPORT = "ketch-storage"

# The signatures an image was pulled with (as containers/storage keeps them beside the image),
# so a push carries them on, as podman's does. Blobs as containers/image stores them (simple
# signatures raw, sigstore ones in its sigstore-json form). Rows of removed images are dropped
# when the next image's signatures are written.
TABLES = TableSet("image", 1, """
CREATE TABLE IF NOT EXISTS image_signatures (
    image TEXT NOT NULL,              -- image id (config digest, hex)
    manifest_digest TEXT NOT NULL,    -- what they sign
    position INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (image, position)
);
""")


def image_signatures(store, image_id: str, manifest_digest: str) -> list[bytes]:
    store.db.ensure(TABLES)
    return [row["blob"] for row in store.db.query(
        "SELECT blob FROM image_signatures WHERE image = ? AND manifest_digest = ? ORDER BY position",
        (image_id, manifest_digest))]


def open_store(ctx: SystemContext):
    from ketch.storage.store import Store

    store = getattr(ctx, "store", None)
    if store is None:
        store = Store(ctx.storage_root, ctx.storage_runroot, ctx.storage_driver)
        ctx.store = store  # type: ignore[attr-defined]
    return store


class StorageReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, name: str) -> None:
        self.name = name  # empty: an unnamed destination (a loaded image without tags)

    @classmethod
    def parse(cls, text: str) -> StorageReference:
        if not text:
            raise InvalidReferenceError("ketch-storage: needs an image name or id")
        return cls(text)

    def string_within_transport(self) -> str:
        return self.name

    def new_source(self, ctx: SystemContext) -> StorageSource:
        return StorageSource(self, open_store(ctx))

    def new_destination(self, ctx: SystemContext) -> StorageDestination:
        return StorageDestination(self, open_store(ctx))


class StorageSource(ImageSource):
    def __init__(self, reference: StorageReference, store) -> None:
        if not reference.name:
            raise InvalidReferenceError("ketch-storage: needs an image name or id")
        self.reference = reference
        self.store = store
        self.image = store.lookup(reference.name)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        if instance is not None:
            raise NotFoundError("the store keeps single images, not indexes")
        return self.image.manifest, self.image.manifest_type

    def get_signatures(self, manifest: bytes) -> list[bytes]:
        return image_signatures(self.store, self.image.id, str(Digest.of(manifest)))

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        if Digest.of(self.image.config, descriptor.digest.algorithm) == descriptor.digest:
            return io.BytesIO(self.image.config), len(self.image.config)
        path = self.store.blob_path(str(descriptor.digest))
        try:
            stream = open(path, "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {descriptor.digest} of image {self.image.id[:12]} is not in the store "
                                f"(run 'ketch storage check')") from exc
        return stream, path.stat().st_size


class StorageDestination(ImageDestination):
    supported_manifest_types = None
    desired_layer_compression = "preserve"
    supports_signatures = True
    _signatures: list[bytes] = []

    def put_signatures(self, manifest: bytes, signatures: list[bytes]) -> None:
        self._signatures = list(signatures)  # (kept at commit, with the image)

    def __init__(self, reference: StorageReference, store) -> None:
        self.reference = reference
        self.store = store
        self.name = store.normalize_name(reference.name) if reference.name else None
        self._config: bytes | None = None
        self._manifest: tuple[bytes, str] | None = None
        # Blobs stored here belong to no image until commit: a concurrent gc must not take them
        # meanwhile, so the destination holds the gc lock shared from its first blob to close().
        self._gc_hold = store.gc_lock(shared=True)
        self._gc_hold.__enter__()

    def close(self) -> None:
        if self._gc_hold is not None:
            hold, self._gc_hold = self._gc_hold, None
            hold.__exit__(None, None, None)

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        return is_layer(descriptor.media_type) and self.store.blob_info(str(descriptor.digest)) is not None

    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        counted = _Counting(stream, on_progress)
        if not is_layer(info.media_type):
            data = b""
            while chunk := counted.read(1 << 20):
                data += chunk
            self._config = data
            return Descriptor(info.media_type, info.digest or Digest.of(data), len(data))

        def decompressor(raw):
            peek = compression.PeekableReader(raw)
            kind = compression.detect(peek.peek(4))
            return compression.DecompressingReader(peek, kind) if kind else peek

        digest, _, _ = self.store.add_layer_blob(counted, str(info.digest) if info.digest else None,
                                                 info.media_type, decompressor)
        size = self.store.blob_path(digest).stat().st_size
        return Descriptor(info.media_type, Digest.parse(digest), size)

    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        if instance is None:
            self._manifest = (raw, media_type)

    def commit(self) -> None:
        if self._manifest is None:
            raise NotFoundError("commit before the manifest was written")
        raw, media_type = self._manifest
        manifest = parse_manifest(raw, media_type)
        if not hasattr(manifest, "layers"):
            raise InvalidReferenceError("the store keeps single images; pull one platform, not --all")
        config = self._config
        if config is None:  # the config was already there (a reused image): read it back
            config = self.store.image_config(manifest.config.digest.encoded)
            if config is None:
                raise NotFoundError("the image config never arrived")
        from ketch.image.compression import decompressed

        self.image_id = self.store.create_image(raw, media_type, config,
                                                [str(layer.digest) for layer in manifest.layers],
                                                [self.name] if self.name else [], decompress=decompressed)
        self.store.db.ensure(TABLES)
        gone = []  # (signatures of images removed since: the store's rmi does not know this table)
        for row in self.store.db.query("SELECT DISTINCT image FROM image_signatures WHERE image != ?",
                                       (self.image_id,)):
            try:
                self.store.lookup(row["image"])
            except NotFoundError:
                gone.append(row["image"])
        with self.store.db.write() as conn:
            conn.executemany("DELETE FROM image_signatures WHERE image = ?", [(i,) for i in [self.image_id, *gone]])
            conn.executemany("INSERT INTO image_signatures VALUES (?, ?, ?, ?)",
                             [(self.image_id, str(Digest.of(raw)), position, blob)
                              for position, blob in enumerate(self._signatures)])


class _Counting:
    def __init__(self, stream, on_progress) -> None:
        self._stream, self._on_progress = stream, on_progress

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data and self._on_progress is not None:
            self._on_progress(len(data))
        return data


def pull(store, name: str, ctx, policy, progress=None) -> str:
    """Pull ``name`` from a registry into ``store`` (a short name tries registries.conf's
    candidates in order, as podman does); returns the image id."""
    from ketch.errors import KetchError, NotFoundError
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.docker.transport import DockerReference

    ctx.store = store
    if name.startswith("docker://"):
        name = name[len("docker://"):]
    elif ":" in name and name.split(":", 1)[0] in ("oci", "oci-archive", "dir", "docker-archive",
                                                     "containers-storage"):
        return _pull_from_transport(store, name, ctx, policy, progress)
    candidates = ctx.registries().resolve_short_name(name)
    errors = []
    for ref in candidates:
        full = ref.with_default_tag()
        options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=policy,
                              **({"progress": progress} if progress is not None else {}))
        if progress is not None:
            progress.message(f"Trying to pull {full}...")
        try:
            copy_image(DockerReference(full, str(full)), StorageReference(str(full)), options)
            return store.lookup(str(full)).id
        except KetchError as exc:
            if len(candidates) == 1:
                raise
            errors.append(f"{full}: {exc}")
    raise NotFoundError(f"pulling {name}: no candidate worked ({'; '.join(errors)})")


def _pull_from_transport(store, name: str, ctx, policy, progress=None) -> str:
    """``pull oci:PATH``, ``dir:PATH``, ``oci-archive:PATH``, ``docker-archive:PATH``: named as
    podman names them (``localhost/PATH`` for a layout or directory; an archive's own names)."""
    from ketch.image.copy import CopyOptions, copy_image
    from ketch.image.transports import parse_image_name

    transport, _, within = name.partition(":")
    source = parse_image_name(name)
    options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=policy,
                          **({"progress": progress} if progress is not None else {}))
    path = within.split(":", 1)[0]
    if transport == "docker-archive" and within == path:
        from ketch.image.load import load_archive

        names = load_archive(store, path, ctx, progress, policy)
        return store.lookup(names[0].removeprefix("sha256:")).id
    storage_name = ""
    if transport == "containers-storage":
        storage_name = source.name or ""  # type: ignore[attr-defined]  # podman's name for it
    elif transport == "oci-archive":
        from ketch.image.load import _name_from_annotation

        storage_name = _name_from_annotation(within.split(":", 1)[1] if ":" in within else "") or ""
    if not storage_name and transport not in ("docker-archive", "containers-storage"):
        storage_name = "localhost/" + path.lstrip("/").lower()
    result = copy_image(source, StorageReference(storage_name), options)
    from ketch.oci import parse_manifest

    return parse_manifest(result.manifest).config.digest.encoded
