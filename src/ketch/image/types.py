"""The seams of the copy engine: a transport-specific reference, an image
source and an image destination (after containers/image's types).

The copy engine speaks only to these interfaces; each transport (``docker``,
``oci``, ``dir``...) implements them in its own module.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ketch.oci import Descriptor, Digest

if TYPE_CHECKING:
    from ketch.image.context import SystemContext


@dataclass(frozen=True)
class BlobInfo:
    """What is known about a blob before it is written.

    ``digest`` and ``size`` are None when the copy engine transforms the
    blob on the way (compression changes): the destination then computes
    them from what it writes.
    """

    media_type: str
    digest: Digest | None = None
    size: int | None = None

    @classmethod
    def of(cls, descriptor: Descriptor) -> BlobInfo:
        return cls(descriptor.media_type, descriptor.digest, descriptor.size)


class ImageReference(abc.ABC):
    """A reference within one transport, remembering what the user typed."""

    transport: str

    @abc.abstractmethod
    def string_within_transport(self) -> str:
        """The reference as written after ``transport:``."""

    def __str__(self) -> str:
        return f"{self.transport}:{self.string_within_transport()}"

    @abc.abstractmethod
    def new_source(self, ctx: SystemContext) -> ImageSource:
        """Open the image for reading."""

    @abc.abstractmethod
    def new_destination(self, ctx: SystemContext) -> ImageDestination:
        """Open the location for writing an image."""


class ImageSource(abc.ABC):
    """Reads one image (or index) from a transport.

    Contract:
    - ``get_manifest(None)`` returns the top-level manifest as the exact bytes
      stored, with its media type (possibly an index);
      ``get_manifest(digest)`` returns an instance of that index.
    - ``get_blob`` returns a stream and the size if known. The stream is
      *not* verified by the source: callers wrap it in a
      :class:`~ketch.oci.VerifyingReader`.
    - ``close`` releases connections; it is safe to call twice. Sources are
      context managers.
    """

    reference: ImageReference

    @abc.abstractmethod
    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        """Return ``(raw_manifest, media_type)``."""

    @abc.abstractmethod
    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        """Open a blob for reading; returns the stream and its size (or None)."""

    def layer_infos_for_copy(self, manifest) -> list[Descriptor] | None:
        """Optional capability: the layers as this source serves them when they differ from what
        the manifest says (a local store gives them back uncompressed); None when they do not.
        The copy engine then copies these and rewrites the manifest to match."""
        return None

    def get_signatures(self, manifest: bytes) -> list[bytes]:
        """The image's simple signatures (of the top-level ``manifest``); none by default."""
        return []

    def close(self) -> None:  # noqa: B027 - optional: most have nothing to release
        pass

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageDestination(abc.ABC):
    """Writes one image (or index) to a transport.

    Order of calls: ``put_blob`` for every blob (in any order, possibly from
    several threads at once), then ``put_manifest`` for every instance and for
    the top level, then ``commit``. Nothing the destination holds may look
    like a complete image before ``commit`` returns; ``close`` without
    ``commit`` abandons what was written (as far as the transport can).
    """

    reference: ImageReference

    #: Manifest media types this destination stores; the copy engine converts
    #: others to the first entry of the same kind. None means "stores any".
    supported_manifest_types: tuple[str, ...] | None = None

    #: What the destination wants done to layers: "preserve" them as they
    #: are, "compress" uncompressed ones (a registry), or "decompress" them
    #: (a docker archive stores plain tars).
    desired_layer_compression: str = "preserve"
    #: Whether the destination keeps simple signatures (``put_signatures``): dir: and docker://.
    supports_signatures: bool = False

    def put_signatures(self, manifest: bytes, signatures: list[bytes]) -> None:
        """Keep ``signatures`` of the top-level ``manifest`` (before ``commit``)."""
        from ketch.errors import UnsupportedError

        if signatures:
            raise UnsupportedError(f"{self.reference} cannot keep signatures (use --remove-signatures)")

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        """Optional capability: True if the blob is already at the destination (or
        was made available there, e.g. by a registry's cross-repository mount)
        and need not be copied. May say False whenever it cannot tell cheaply."""
        return False

    @abc.abstractmethod
    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        """Store a blob read from ``stream`` to its end and return its descriptor.

        When ``info.digest`` is set the stream verifies itself (it raises at
        EOF if the content is wrong, and then nothing may be kept); when it is
        None, the destination computes digest and size from what it writes.
        """

    @abc.abstractmethod
    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        """Store a manifest: the top level (``instance`` None) or an index instance."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the image visible, atomically."""

    def close(self) -> None:  # noqa: B027 - optional: most have nothing to release
        pass

    def __enter__(self) -> ImageDestination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
