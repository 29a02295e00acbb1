"""The copy engine: moves an image from any source to any destination.

It speaks only to :class:`~ketch.image.types.ImageSource` and
:class:`~ketch.image.types.ImageDestination`. Blobs move in parallel and are
verified against their digests on the way; blobs the destination already has
are skipped; manifests are written after all blobs, then the destination
commits. A manifest is copied byte for byte unless something must change —
the destination cannot store its format, ``--format`` asks for another, or
layers are (de)compressed — so the manifest digest is preserved whenever it
can be.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ketch.errors import DigestMismatchError, ImageFormatError, InvalidInputError, UnsupportedError
from ketch.image import compression
from ketch.image.context import SystemContext
from ketch.image.conversion import convert_manifest, index_type_for, is_layer, layer_media_type
from ketch.image.platform import choose_instance
from ketch.image.progress import CopyProgress, NoProgress
from ketch.image.transports import parse_image_name
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest, Index, Manifest, VerifyingReader, parse_manifest
from ketch.oci import mediatypes as mt

# containers/image copies up to six blobs at once; so do we.
DEFAULT_PARALLEL = 6


@dataclass
class CopyOptions:
    src_ctx: SystemContext = field(default_factory=SystemContext)
    dest_ctx: SystemContext = field(default_factory=SystemContext)
    #: Copy every instance of an index, not just the one for this platform.
    all_images: bool = False
    progress: CopyProgress = field(default_factory=NoProgress)
    max_parallel: int = DEFAULT_PARALLEL
    #: Manifest media type to write (``--format``); None keeps the source's.
    manifest_type: str | None = None
    #: Recompress layers with this algorithm (``--dest-compress-format``).
    compress_format: str | None = None
    compress_level: int | None = None
    #: Store layers uncompressed (``--dest-decompress``, ``save --uncompressed``).
    decompress: bool = False
    #: The trust policy; None reads the system's policy.json.
    policy: object | None = None
    #: More tags for a docker-archive destination.
    additional_tags: list[str] = field(default_factory=list)
    #: Do not copy the source's signatures (``--remove-signatures``).
    remove_signatures: bool = False
    #: Sign the written manifest with this GnuPG key (``--sign-by``), its passphrase in a file.
    sign_by: str | None = None
    sign_passphrase_file: str | None = None
    #: Sign it (also) with this sigstore private key file (``--sign-by-sigstore-private-key``),
    #: opened with the passphrase of ``sign_passphrase_file``.
    sign_by_sigstore_private_key: str | None = None
    #: That key's passphrase itself (asked on the terminal), instead of ``sign_passphrase_file``.
    sign_passphrase: bytes | None = None
    #: The identity the signature names (``--sign-identity``; default: the destination's reference).
    sign_identity: str | None = None


@dataclass
class CopyResult:
    manifest_digest: Digest
    media_type: str
    manifest: bytes = b""
    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0


def _as_reference(ref: ImageReference | str) -> ImageReference:
    return parse_image_name(ref) if isinstance(ref, str) else ref


def copy_image(source: ImageReference | str, destination: ImageReference | str,
               options: CopyOptions | None = None) -> CopyResult:
    """Copy an image between transports; returns the digest written at the destination.

    The source must be allowed by the trust policy (``options.policy``, else
    the system's policy.json) before anything is read from it.
    """
    options = options or CopyOptions()
    src_ref, dst_ref = _as_reference(source), _as_reference(destination)
    from ketch.image.policy import Policy

    policy = options.policy if options.policy is not None else Policy.load_default()
    pending = policy.check(src_ref)  # type: ignore[attr-defined]
    signing = options.sign_by or options.sign_by_sigstore_private_key
    if signing and getattr(dst_ref, "ref", None) is None and not options.sign_identity:
        raise InvalidInputError(f"signing a copy to {dst_ref} needs --sign-identity (the destination names no "
                                "docker reference)")
    with src_ref.new_source(options.src_ctx) as src:
        with dst_ref.new_destination(options.dest_ctx) as dst:
            if options.additional_tags and hasattr(dst, "additional_tags"):
                from ketch.oci.reference import parse_reference

                dst.additional_tags = [str(parse_reference(t).with_default_tag()) for t in options.additional_tags]

            def verify(manifest: bytes, signatures: list[bytes]) -> None:
                policy.verify(src_ref, pending, manifest, signatures)  # type: ignore[attr-defined]

            return _Copier(src, dst, options, verify if pending else None, dst_ref).run()


class _Copier:
    def __init__(self, src: ImageSource, dst: ImageDestination, options: CopyOptions, verify=None,
                 dst_ref: ImageReference | None = None) -> None:
        self.src, self.dst, self.options = src, dst, options
        self.verify = verify
        self.dst_ref = dst_ref
        self.progress = options.progress
        self.counts = {"copied": 0, "skipped": 0, "bytes": 0}
        self._lock = threading.Lock()
        # Blobs already handled in this copy (across instances): source digest -> written descriptor.
        self._done: dict[tuple[Digest, str], Descriptor] = {}
        if options.compress_format:
            compression.check_algorithm(options.compress_format)

    def run(self) -> CopyResult:
        raw, media_type = self.src.get_manifest()
        top = parse_manifest(raw, media_type)
        source_raw = raw
        carry = not self.options.remove_signatures
        signatures = self.src.get_signatures(raw) if self.verify is not None or carry else []
        if self.verify is not None:  # (before anything is written)
            self.verify(raw, signatures)
        if not carry:
            signatures = []
        if signatures and not self.dst.supports_signatures:  # (as containers/image: never dropped silently)
            raise UnsupportedError(f"cannot copy signatures to {self.dst.reference}: it cannot keep them; copy "
                                   "with --remove-signatures")
        if isinstance(top, Index):
            if self.options.all_images:
                raw, media_type = self._copy_index(top)
            else:
                chosen = choose_instance(top, self.options.src_ctx)
                instance_raw = self._instance_manifest(chosen)
                raw, media_type = self._copy_image(self._parse_instance(instance_raw, chosen), None)
        else:
            raw, media_type = self._copy_image(top, None)
        if signatures and raw != source_raw:
            raise UnsupportedError("Would invalidate signatures: the copy changes the manifest (an instance of a "
                                   "list, another format or compression); copy with --remove-signatures")
        if self.options.sign_by:
            signatures = signatures + [self._sign(raw)]
        if self.options.sign_by_sigstore_private_key:
            signatures = signatures + [self._sign_sigstore(raw)]
        self.progress.message("Storing list signatures" if isinstance(top, Index) and self.options.all_images
                              else "Storing signatures")
        if signatures:
            self.dst.put_signatures(raw, signatures)
        self.dst.commit()
        return CopyResult(Digest.of(raw), media_type, raw, self.counts["copied"], self.counts["skipped"],
                          self.counts["bytes"])

    def _identity(self) -> str:
        """What a new signature names: ``--sign-identity``, else the destination's reference."""
        if not self.dst.supports_signatures:
            raise UnsupportedError(f"{self.dst.reference} cannot keep signatures: sign copies to docker://, dir: or "
                                   "the store")
        identity = self.options.sign_identity
        if identity is None:
            ref = getattr(self.dst_ref, "ref", None)
            assert ref is not None  # (checked by copy_image)
            return str(ref.with_default_tag() if ref.digest is None else ref)
        from ketch.oci.reference import parse_reference

        return str(parse_reference(identity))

    def _sign(self, manifest: bytes) -> bytes:
        from ketch.image.signing import gpg_sign, payload

        identity = self._identity()
        self.progress.message("Signing manifest using simple signing")
        assert self.options.sign_by is not None
        return gpg_sign(payload(identity, str(Digest.of(manifest))), self.options.sign_by,
                        passphrase_file=self.options.sign_passphrase_file)

    def _sign_sigstore(self, manifest: bytes) -> bytes:
        from ketch.image import sigstore

        identity = self._identity()
        self.progress.message("Signing manifest using a sigstore signature")
        assert self.options.sign_by_sigstore_private_key is not None
        passphrase = self.options.sign_passphrase
        if passphrase is None:
            passphrase = sigstore.read_passphrase(self.options.sign_passphrase_file)
        return sigstore.sign_with_key_file(self.options.sign_by_sigstore_private_key, passphrase, identity,
                                           str(Digest.of(manifest))).blob()

    @staticmethod
    def _parse_instance(raw: bytes, descriptor: Descriptor) -> Manifest:
        manifest = parse_manifest(raw, descriptor.media_type)
        if not isinstance(manifest, Manifest):
            raise UnsupportedError(f"index entry {descriptor.digest} is itself an index; nested indexes "
                                   f"are not supported")
        return manifest

    def _instance_manifest(self, descriptor: Descriptor) -> bytes:
        raw, _ = self.src.get_manifest(descriptor.digest)
        if Digest.of(raw, descriptor.digest.algorithm) != descriptor.digest:
            raise DigestMismatchError(f"manifest {descriptor.digest} does not match its digest")
        return raw

    # -- manifest types -------------------------------------------------------

    def _target_manifest_type(self, manifest: Manifest) -> str:
        wanted = self.options.manifest_type or manifest.media_type
        if self.options.compress_format == compression.ZSTD and wanted == mt.DOCKER_MANIFEST:
            if self.options.manifest_type == mt.DOCKER_MANIFEST:
                raise UnsupportedError("Docker schema 2 manifests cannot hold zstd layers; use --format oci")
            wanted = mt.OCI_MANIFEST  # zstd needs an OCI manifest, as containers/image decides
        return self._supported(wanted, index=False)

    def _supported(self, wanted: str, *, index: bool) -> str:
        supported = self.dst.supported_manifest_types
        if supported is None or wanted in supported:
            return wanted
        for candidate in supported:
            if mt.is_index(candidate) == index:
                return candidate
        what = "an index" if index else "a manifest"
        raise UnsupportedError(f"{self.dst.reference} cannot store {what} of type {wanted}")

    # -- copying --------------------------------------------------------------

    def _copy_index(self, index: Index) -> tuple[bytes, str]:
        converted: dict[str, tuple[str, int]] = {}
        instance_type = None
        self.progress.message(f"Copying {len(index.manifests)} of {len(index.manifests)} images in list")
        for number, entry in enumerate(index.manifests, 1):
            if not mt.is_image_manifest(entry.media_type):
                raise ImageFormatError(f"index entry {entry.digest} has unsupported media type {entry.media_type}")
            self.progress.message(f"Copying image {entry.digest} ({number}/{len(index.manifests)})")
            raw = self._instance_manifest(entry)
            out, instance_type = self._copy_image(self._parse_instance(raw, entry), entry.digest)
            if out != raw:
                converted[str(entry.digest)] = (str(Digest.of(out)), len(out))
        wanted = index_type_for(instance_type) if instance_type else index.media_type
        target = self._supported(wanted, index=True)
        out = convert_manifest(index.raw, index.media_type, target, converted or None)
        self.progress.message("Writing manifest list to image destination")
        self.dst.put_manifest(out, target, None)
        return out, target

    def _copy_image(self, manifest: Manifest, instance: Digest | None) -> tuple[bytes, str]:
        target = self._target_manifest_type(manifest)
        source_layers = self.src.layer_infos_for_copy(manifest) or manifest.layers
        plans = [(manifest.config, None)] + [(layer, self._layer_plan(layer)) for layer in source_layers]
        # skopeo's report, in its order (the blobs themselves are copied in parallel)
        self.progress.message("Getting image source signatures")
        for layer in source_layers:
            self.progress.message(f"Copying blob {layer.digest}")
        written = self._copy_blobs(plans, target)
        self.progress.message(f"Copying config {manifest.config.digest}")
        layers = written[1:]
        changed = any(new.digest != old.digest for new, old in zip(layers, manifest.layers))
        out = convert_manifest(manifest.raw, manifest.media_type, target, layers=layers if changed else None)
        if instance is not None and out != manifest.raw:
            instance = Digest.of(out)
        self.progress.message("Writing manifest to image destination")
        self.dst.put_manifest(out, target, instance)
        return out, target

    def _layer_plan(self, layer: Descriptor) -> tuple[str | None, str | None] | None:
        """(decompress-from, compress-to) for a layer, or None to copy it as it is."""
        if not is_layer(layer.media_type):
            return None
        current = mt.LAYER_COMPRESSION[layer.media_type]
        wanted = current
        if self.options.compress_format:
            wanted = self.options.compress_format
        elif self.options.decompress:
            wanted = None
        elif self.dst.desired_layer_compression == "compress" and current is None:
            wanted = compression.GZIP
        elif self.dst.desired_layer_compression == "decompress":
            wanted = None
        if wanted == current and not (self.options.compress_level is not None and self.options.compress_format):
            return None
        return (current, wanted)

    def _copy_blobs(self, plans: list[tuple[Descriptor, tuple | None]], target: str) -> list[Descriptor]:
        results: list[Descriptor | None] = [None] * len(plans)
        todo: list[tuple[int, Descriptor, tuple | None]] = []
        for i, (blob, plan) in enumerate(plans):
            key = (blob.digest, repr(plan))
            if key in self._done:
                results[i] = self._done[key]
            else:
                todo.append((i, blob, plan))
        if todo:
            abort = threading.Event()
            workers = max(1, min(self.options.max_parallel, len(todo)))
            # The pool is shut down (all threads joined) before this returns: a
            # process that forks later (a container start) must have no stray threads.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ketch-blob") as pool:
                futures = {pool.submit(self._copy_blob, blob, plan, target, abort): i for i, blob, plan in todo}
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    abort.set()
                    for future in pending:
                        future.cancel()
                    wait(pending)
                    raise failed[0].exception()  # type: ignore[misc]
                for future, i in futures.items():
                    results[i] = future.result()
            for i, blob, plan in todo:
                self._done[(blob.digest, repr(plan))] = results[i]
        return results

    def _copy_blob(self, blob: Descriptor, plan: tuple | None, target: str,
                   abort: threading.Event) -> Descriptor:
        if abort.is_set():
            raise _CopyAborted()
        if plan is None and self.dst.try_reusing_blob(blob, self.src.reference):
            with self._lock:
                self.counts["skipped"] += 1
            self.progress.blob_finished(blob, skipped=True)
            return _retyped(blob, target)
        self.progress.blob_started(blob)
        stream, _ = self.src.get_blob(blob)
        try:
            reader = VerifyingReader(stream, blob.digest, blob.size)
            if plan is None:
                info = BlobInfo(_retyped(blob, target).media_type, blob.digest, blob.size)
                source = reader
            else:
                decompress_from, compress_to = plan
                source = compression.PeekableReader(reader)
                actual = compression.detect(source.peek(4))
                if actual != decompress_from:
                    # Trust the bytes over the media type (some tools label plain tars as gzip).
                    decompress_from = actual
                if decompress_from is not None and decompress_from != compress_to:
                    source = compression.DecompressingReader(source, decompress_from)
                if compress_to is not None and compress_to != decompress_from:
                    source = compression.CompressingReader(source, compress_to, self.options.compress_level)
                info = BlobInfo(layer_media_type(blob.media_type, compress_to, target))
            written = self.dst.put_blob(_AbortableReader(source, abort), info,  # type: ignore[arg-type]
                                        lambda n: self.progress.blob_advanced(blob, n))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        with self._lock:
            self.counts["copied"] += 1
            self.counts["bytes"] += written.size
        self.progress.blob_finished(blob, skipped=False)
        return Descriptor(written.media_type, written.digest, written.size, dict(blob.annotations), blob.urls)


def _retyped(blob: Descriptor, target: str) -> Descriptor:
    """The descriptor with its media type in the target manifest's family."""
    table = mt.OCI_TO_DOCKER if target == mt.DOCKER_MANIFEST else mt.DOCKER_TO_OCI
    return Descriptor(table.get(blob.media_type, blob.media_type), blob.digest, blob.size,
                      dict(blob.annotations), blob.urls)


class _CopyAborted(Exception):
    """Another blob of the same copy failed; this one stops early."""


class _AbortableReader:
    def __init__(self, reader, abort: threading.Event) -> None:
        self._reader, self._abort = reader, abort

    def read(self, size: int = -1) -> bytes:
        if self._abort.is_set():
            raise _CopyAborted()
        return self._reader.read(size)
