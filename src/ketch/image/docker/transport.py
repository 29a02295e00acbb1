"""The ``docker://`` transport: images in a registry (distribution spec)."""

from __future__ import annotations

from typing import BinaryIO

from ketch.errors import InvalidReferenceError, UnsupportedError
from ketch.image.context import SystemContext
from ketch.image.types import ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest
from ketch.oci.reference import Reference, parse_reference

TRANSPORT = "docker"


class DockerReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, ref: Reference, typed: str) -> None:
        self.ref = ref
        self.typed = typed

    @classmethod
    def parse(cls, text: str) -> "DockerReference":
        if not text.startswith("//"):
            raise InvalidReferenceError(f"invalid docker reference {text!r}: expected docker://NAME[:TAG|@DIGEST]")
        typed = text[2:]
        return cls(parse_reference(typed).with_default_tag(), typed)

    def string_within_transport(self) -> str:
        return f"//{self.ref}"

    @property
    def manifest_reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag."""
        return str(self.ref.digest) if self.ref.digest else str(self.ref.tag)

    def client(self, ctx: SystemContext):
        from ketch.image.docker.client import RegistryClient  # urllib3 only when a registry is used

        return RegistryClient(self.ref.api_host, ctx, repository=self.ref.path, registry_name=self.ref.domain)

    def new_source(self, ctx: SystemContext) -> "DockerImageSource":
        return DockerImageSource(self, ctx)

    def new_destination(self, ctx: SystemContext) -> ImageDestination:
        raise UnsupportedError("pushing to a registry (docker:// as a destination) is not implemented yet")


class DockerImageSource(ImageSource):
    def __init__(self, reference: DockerReference, ctx: SystemContext) -> None:
        self.reference = reference
        self.client = reference.client(ctx)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        ref = str(instance) if instance is not None else self.reference.manifest_reference
        return self.client.get_manifest(ref)

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        stream = self.client.open_blob(descriptor.digest, descriptor.size)
        return stream, descriptor.size  # type: ignore[return-value]

    def list_tags(self) -> list[str]:
        return self.client.list_tags()

    def close(self) -> None:
        self.client.close()
