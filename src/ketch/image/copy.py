"""The copy engine: moves an image from any source to any destination.

It speaks only to :class:`~ketch.image.types.ImageSource` and
:class:`~ketch.image.types.ImageDestination`. Blobs move in parallel and are
verified against their digests on the way; blobs the destination already has
are skipped; manifests are written after all blobs, then the destination
commits. A manifest is copied byte for byte unless the destination cannot
store its format, so the manifest digest is preserved.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ketch.errors import ImageFormatError, DigestMismatchError
from ketch.image.context import SystemContext
from ketch.image.conversion import convert_manifest
from ketch.image.platform import choose_instance
from ketch.image.progress import CopyProgress, NoProgress
from ketch.image.transports import parse_image_name
from ketch.image.types import ImageDestination, ImageReference, ImageSource
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


@dataclass
class CopyResult:
    manifest_digest: Digest
    media_type: str
    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0


def _as_reference(ref: ImageReference | str) -> ImageReference:
    return parse_image_name(ref) if isinstance(ref, str) else ref


def copy_image(source: ImageReference | str, destination: ImageReference | str,
               options: CopyOptions | None = None) -> CopyResult:
    """Copy an image between transports; returns the digest written at the destination."""
    options = options or CopyOptions()
    src_ref, dst_ref = _as_reference(source), _as_reference(destination)
    with src_ref.new_source(options.src_ctx) as src:
        with dst_ref.new_destination(options.dest_ctx) as dst:
            return _Copier(src, dst, options).run()


class _Copier:
    def __init__(self, src: ImageSource, dst: ImageDestination, options: CopyOptions) -> None:
        self.src, self.dst, self.options = src, dst, options
        self.progress = options.progress
        self.result_counts = {"copied": 0, "skipped": 0, "bytes": 0}
        self._lock = threading.Lock()
        self._done: set[Digest] = set()  # blobs already handled in this copy (across instances)

    def run(self) -> CopyResult:
        raw, media_type = self.src.get_manifest()
        top = parse_manifest(raw, media_type)
        if isinstance(top, Index):
            if self.options.all_images:
                raw, media_type = self._copy_index(top)
            else:
                chosen = choose_instance(top, self.options.src_ctx)
                instance_raw = self._instance_manifest(chosen)
                raw, media_type = self._copy_image(parse_manifest(instance_raw, chosen.media_type), None)
        else:
            raw, media_type = self._copy_image(top, None)
        self.dst.commit()
        return CopyResult(Digest.of(raw), media_type, self.result_counts["copied"],
                          self.result_counts["skipped"], self.result_counts["bytes"])

    def _instance_manifest(self, descriptor: Descriptor) -> bytes:
        raw, _ = self.src.get_manifest(descriptor.digest)
        if Digest.of(raw, descriptor.digest.algorithm) != descriptor.digest:
            raise DigestMismatchError(f"manifest {descriptor.digest} does not match its digest")
        return raw

    def _target_type(self, media_type: str) -> str:
        supported = self.dst.supported_manifest_types
        if supported is None or media_type in supported:
            return media_type
        want_index = mt.is_index(media_type)
        for candidate in supported:
            if mt.is_index(candidate) == want_index:
                return candidate
        raise ImageFormatError(f"{self.dst.reference} cannot store a manifest of type {media_type}")

    def _copy_index(self, index: Index) -> tuple[bytes, str]:
        converted: dict[str, tuple[str, int]] = {}
        for entry in index.manifests:
            if not mt.is_image_manifest(entry.media_type):
                raise ImageFormatError(f"index entry {entry.digest} has unsupported media type {entry.media_type}")
            raw = self._instance_manifest(entry)
            out, _ = self._copy_image(parse_manifest(raw, entry.media_type), entry.digest)
            if out != raw:
                converted[str(entry.digest)] = (str(Digest.of(out)), len(out))
        target = self._target_type(index.media_type)
        out = convert_manifest(index.raw, index.media_type, target, converted) if converted or \
            target != index.media_type else index.raw
        self.dst.put_manifest(out, target, None)
        return out, target

    def _copy_image(self, manifest: Manifest, instance: Digest | None) -> tuple[bytes, str]:
        self._copy_blobs(manifest.blobs())
        target = self._target_type(manifest.media_type)
        out = convert_manifest(manifest.raw, manifest.media_type, target)
        if instance is not None and out != manifest.raw:
            instance = Digest.of(out)
        self.dst.put_manifest(out, target, instance)
        return out, target

    def _copy_blobs(self, blobs: list[Descriptor]) -> None:
        todo: list[Descriptor] = []
        for blob in blobs:
            if blob.digest not in self._done:
                self._done.add(blob.digest)
                todo.append(blob)
        if not todo:
            return
        abort = threading.Event()
        workers = max(1, min(self.options.max_parallel, len(todo)))
        # The pool is shut down (all threads joined) before this returns: a
        # process that forks later (a container start) must have no stray threads.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ketch-blob") as pool:
            futures = [pool.submit(self._copy_blob, blob, abort) for blob in todo]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                abort.set()
                for future in pending:
                    future.cancel()
                wait(pending)
                raise failed[0].exception()  # type: ignore[misc]

    def _copy_blob(self, blob: Descriptor, abort: threading.Event) -> None:
        if abort.is_set():
            return
        if self.dst.has_blob(blob):
            with self._lock:
                self.result_counts["skipped"] += 1
            self.progress.blob_finished(blob, skipped=True)
            return
        self.progress.blob_started(blob)
        stream, _ = self.src.get_blob(blob)
        try:
            reader = _AbortableReader(VerifyingReader(stream, blob.digest, blob.size), abort)

            def advanced(n: int) -> None:
                self.progress.blob_advanced(blob, n)

            self.dst.put_blob(reader, blob, advanced)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        with self._lock:
            self.result_counts["copied"] += 1
            self.result_counts["bytes"] += blob.size
        self.progress.blob_finished(blob, skipped=False)


class _CopyAborted(Exception):
    """Another blob of the same copy failed; this one stops early."""


class _AbortableReader:
    def __init__(self, reader: VerifyingReader, abort: threading.Event) -> None:
        self._reader, self._abort = reader, abort

    def read(self, size: int = -1) -> bytes:
        if self._abort.is_set():
            raise _CopyAborted()
        return self._reader.read(size)
