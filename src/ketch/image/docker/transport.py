"""The ``docker://`` transport: images in a registry (distribution spec).

registries.conf decides where a reference is fetched from (mirrors first,
then the primary location, each with its own TLS setting) and whether the
registry is blocked; pushes go to the primary location only.
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from ketch.errors import (
    ImageFormatError,
    InvalidReferenceError,
    KetchError,
    NotFoundError,
    RegistryError,
    UnsupportedError,
)
from ketch.image.context import SystemContext
from ketch.image.registries import Endpoint
from ketch.image.types import BlobInfo, ImageDestination, ImageReference, ImageSource
from ketch.oci import Descriptor, Digest
from ketch.oci.reference import DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, Reference, parse_reference

TRANSPORT = "docker"
log = logging.getLogger(__name__)


def api_host(host: str) -> str:
    return DOCKER_HUB_API_HOST if host == DEFAULT_DOMAIN else host


class DockerReference(ImageReference):
    transport = TRANSPORT

    def __init__(self, ref: Reference, typed: str) -> None:
        self.ref = ref
        self.typed = typed

    @classmethod
    def parse(cls, text: str) -> DockerReference:
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

    def client(self, ctx: SystemContext, endpoint: Endpoint | None = None, ref: Reference | None = None):
        """A registry client for one endpoint (default: the primary location)."""
        from ketch.image.docker.client import RegistryClient  # urllib3 only when a registry is used

        if endpoint is None:
            endpoint, ref = ctx.registries().push_endpoint(self.ref)
        ref = ref or self.ref
        return RegistryClient(api_host(ref.domain), ctx, repository=ref.path, registry_name=ref.domain,
                              insecure=endpoint.insecure)

    def new_source(self, ctx: SystemContext) -> DockerImageSource:
        return DockerImageSource(self, ctx)

    def new_destination(self, ctx: SystemContext) -> DockerImageDestination:
        return DockerImageDestination(self, ctx)


class DockerImageSource(ImageSource):
    """Reads from the first endpoint (mirror or primary) that has the manifest."""
    reference: DockerReference  # (this transport's)

    def __init__(self, reference: DockerReference, ctx: SystemContext) -> None:
        self.reference = reference
        self.ctx = ctx
        self.endpoints = ctx.registries().pull_endpoints(reference.ref)
        self.client = None
        self._bound_ref: Reference | None = None

    def _manifest_ref(self, ref: Reference) -> str:
        return str(ref.digest) if ref.digest else str(ref.tag)

    def get_manifest(self, instance: Digest | None = None) -> tuple[bytes, str]:
        if self.client is None:
            errors: list[str] = []
            for i, (endpoint, ref) in enumerate(self.endpoints):
                client = self.reference.client(self.ctx, endpoint, ref)
                try:
                    result = client.get_manifest(str(instance) if instance else self._manifest_ref(ref))
                except KetchError as exc:
                    client.close()
                    if i == len(self.endpoints) - 1:
                        if errors:
                            raise type(exc)(f"{exc.message} (mirrors tried first: {'; '.join(errors)})") from exc
                        raise
                    log.info("mirror %s failed (%s); trying the next location", endpoint.location, exc)
                    errors.append(f"{endpoint.location}: {exc.message}")
                    continue
                self.client, self._bound_ref = client, ref
                return result
        assert self.client is not None and self._bound_ref is not None
        return self.client.get_manifest(str(instance) if instance else self._manifest_ref(self._bound_ref))

    def get_blob(self, descriptor: Descriptor) -> tuple[BinaryIO, int | None]:
        if self.client is None:
            self.get_manifest()
        assert self.client is not None  # (bound by get_manifest)
        stream = self.client.open_blob(descriptor.digest, descriptor.size)
        return stream, descriptor.size

    def get_signatures(self, manifest: bytes) -> list[bytes]:
        """Simple signatures from the lookaside registries.d names for the repository, then the
        sigstore attachment when registries.d says ``use-sigstore-attachments`` (as containers/image
        reads them; none when it names neither)."""
        from ketch.image.registries_d import RegistriesD, read_signatures

        ref = self.reference.ref
        config = RegistriesD(self.ctx.registries_d).config_for(ref.name)
        digest = str(Digest.of(manifest))
        signatures = read_signatures(config.lookaside, ref.path, digest, self.ctx) if config.lookaside else []
        if config.use_sigstore_attachments:
            if self.client is None:
                self.get_manifest()
            signatures += read_attachment(self.client, digest)
        return signatures

    def list_tags(self) -> list[str]:
        client = self.reference.client(self.ctx)
        try:
            return client.list_tags()
        finally:
            client.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class DockerImageDestination(ImageDestination):
    """Pushes to the primary location. Blobs first (checked with HEAD, mounted from
    another repository of the same registry when possible), the manifest last:
    until the manifest is written, the registry shows no new image."""
    reference: DockerReference  # (this transport's)

    supported_manifest_types = None
    desired_layer_compression = "compress"
    supports_signatures = True

    def put_signatures(self, manifest: bytes, signatures: list[bytes]) -> None:
        """Simple signatures into the lookaside staging registries.d names (containers/image's
        default directory when it names none); sigstore ones into the registry's attachment,
        which registries.d must enable (``use-sigstore-attachments``), as containers/image
        decides."""
        from ketch.image.registries_d import RegistriesD, store_signatures
        from ketch.image.sigstore import is_sigstore

        ref = self.reference.ref
        config = RegistriesD(self.ctx.registries_d)
        digest = str(Digest.of(manifest))
        sigstore = [blob for blob in signatures if is_sigstore(blob)]
        simple = [blob for blob in signatures if not is_sigstore(blob)]
        if sigstore:
            if not config.config_for(ref.name).use_sigstore_attachments:
                raise UnsupportedError(f"writing sigstore signatures of {self.reference} needs "
                                       f"use-sigstore-attachments: true in registries.d for {ref.name}")
            write_attachment(self.client, digest, sigstore)
        if simple:
            store_signatures(config.write_base(ref.name), ref.path, digest, simple)

    def __init__(self, reference: DockerReference, ctx: SystemContext) -> None:
        self.reference = reference
        self.ctx = ctx
        endpoint, self.ref = ctx.registries().push_endpoint(reference.ref)
        self.client = reference.client(ctx, endpoint, self.ref)

    def try_reusing_blob(self, descriptor: Descriptor, source: ImageReference | None = None) -> bool:
        from ketch.image.docker import push

        if push.blob_exists(self.client, descriptor.digest):
            return True
        source_ref = getattr(source, "ref", None) if getattr(source, "transport", "") == TRANSPORT else None
        if source_ref is not None and api_host(source_ref.domain) == self.client.host \
                and source_ref.path != self.ref.path:
            try:
                return push.mount_blob(self.client, descriptor.digest, source_ref.path)
            except RegistryError as exc:
                log.info("mount of %s refused (%s); uploading", descriptor.digest, exc)
        return False

    def put_blob(self, stream: BinaryIO, info: BlobInfo, on_progress=None) -> Descriptor:
        from ketch.image.docker import push

        digest, size = push.upload_blob(self.client, stream, info.digest, info.size, on_progress)
        return Descriptor(info.media_type, digest, size)

    def put_manifest(self, raw: bytes, media_type: str, instance: Digest | None = None) -> None:
        from ketch.image.docker import push

        if instance is not None:
            reference = str(instance)
        elif self.ref.tag is not None:
            reference = self.ref.tag
        else:
            reference = str(self.ref.digest)
            if Digest.of(raw, self.ref.digest.algorithm) != self.ref.digest:
                raise InvalidReferenceError(
                    f"cannot push to {self.reference}: the manifest written has digest {Digest.of(raw)}")
        push.put_manifest(self.client, reference, raw, media_type)

    def commit(self) -> None:
        pass  # the manifest PUT, done last, is what makes the image visible

    def close(self) -> None:
        self.client.close()


def delete_image(reference: DockerReference | str, ctx: SystemContext | None = None) -> Digest:
    """Delete the manifest a reference names (``skopeo delete``); returns its digest."""
    from ketch.image.docker import push

    ctx = ctx or SystemContext()
    if isinstance(reference, str):
        from ketch.image.transports import parse_image_name

        reference = parse_image_name(reference)  # type: ignore[assignment]
        if not isinstance(reference, DockerReference):
            raise InvalidReferenceError(f"only docker:// images can be deleted, not {reference}")
    client = reference.client(ctx)
    try:
        digest = push.resolve_digest(client, reference.manifest_reference)
        push.delete_manifest(client, digest)
        return digest
    finally:
        client.close()


# -- sigstore attachments -----------------------------------------------------

def read_attachment(client, manifest_digest: str) -> list[bytes]:
    """The sigstore signatures in the OCI manifest tagged ``sha256-HEX.sig`` (none when there is
    no such tag), each as a signature blob; every layer is read (bounded), whatever its type, as
    containers/image reads them (the policy counts non-signature attachments apart)."""
    import json

    from ketch.image.registries_d import MAX_SIGNATURES
    from ketch.image.sigstore import MAX_PAYLOAD_SIZE, SigstoreSignature, attachment_tag
    from ketch.oci import VerifyingReader

    tag = attachment_tag(manifest_digest)
    try:
        raw, _ = client.get_manifest(tag)
    except NotFoundError:
        return []
    try:
        document = json.loads(raw)
        layers = document.get("layers") or []
        if not isinstance(layers, list):
            raise ValueError("layers is not a list")
    except (ValueError, AttributeError) as exc:
        raise ImageFormatError(f"the sigstore attachment {tag} is not an OCI manifest ({exc})") from exc
    if len(layers) > MAX_SIGNATURES:
        raise ImageFormatError(f"the sigstore attachment {tag} has {len(layers)} layers, over {MAX_SIGNATURES}")
    blobs = []
    for layer in layers:
        descriptor = Descriptor.from_dict(layer, where=f"layer of the sigstore attachment {tag}")
        if descriptor.size > MAX_PAYLOAD_SIZE:
            raise ImageFormatError(f"a signature in {tag} is {descriptor.size} bytes, over {MAX_PAYLOAD_SIZE >> 20} MiB")
        stream = client.open_blob(descriptor.digest, descriptor.size)
        try:
            reader = VerifyingReader(stream, descriptor.digest, descriptor.size, what="signature")
            chunks = []
            while chunk := reader.read(1 << 16):
                chunks.append(chunk)
            payload = b"".join(chunks)
        finally:
            stream.close()
        annotations = {str(k): str(v) for k, v in (descriptor.annotations or {}).items()}
        blobs.append(SigstoreSignature(descriptor.media_type, payload, annotations).blob())
    return blobs


def write_attachment(client, manifest_digest: str, blobs: list[bytes]) -> None:
    """Add sigstore signatures to the image's attachment (made when there is none; a signature
    already there is not added twice), as containers/image writes it: payload blobs as layers
    with their annotations, a config listing them as diff_ids, the manifest tagged
    ``sha256-HEX.sig``."""
    import io
    import json

    from ketch.image.docker import push
    from ketch.image.sigstore import SigstoreSignature, attachment_tag
    from ketch.oci import mediatypes as mt

    tag = attachment_tag(manifest_digest)
    existing = read_attachment(client, manifest_digest)
    manifest: dict = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {}, "layers": []}
    config: dict = {"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
    if existing:
        raw, _ = client.get_manifest(tag)
        manifest = json.loads(raw)
        old_config = manifest.get("config") or {}
        stream = client.open_blob(Digest.parse(old_config["digest"]), old_config.get("size"))
        try:
            config = json.loads(stream.read(1 << 20))
        finally:
            stream.close()
    changed = False
    for blob in blobs:
        if blob in existing:
            continue
        signature = SigstoreSignature.from_blob(blob)
        digest, size = push.upload_blob(client, io.BytesIO(signature.payload), Digest.of(signature.payload),
                                        len(signature.payload), None)
        manifest.setdefault("layers", []).append({"mediaType": signature.mime_type, "digest": str(digest),
                                                  "size": size, "annotations": signature.annotations})
        config.setdefault("rootfs", {"type": "layers"}).setdefault("diff_ids", []).append(str(digest))
        changed = True
    if not changed:
        return
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    digest, size = push.upload_blob(client, io.BytesIO(config_raw), Digest.of(config_raw), len(config_raw), None)
    manifest["config"] = {"mediaType": mt.OCI_CONFIG, "digest": str(digest), "size": size}
    push.put_manifest(client, tag, json.dumps(manifest, separators=(",", ":")).encode(), mt.OCI_MANIFEST)
