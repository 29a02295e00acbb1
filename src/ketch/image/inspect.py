"""Inspect an image without pulling its layers: the manifest and the config
only, as ``skopeo inspect`` does, printed in skopeo's JSON shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ketch.errors import DigestMismatchError, InvalidInputError
from ketch.image.context import SystemContext
from ketch.image.platform import choose_instance
from ketch.image.transports import parse_image_name
from ketch.image.types import ImageReference
from ketch.oci import Descriptor, Digest, ImageConfig, Index, Manifest, parse_manifest
from ketch.oci.reference import parse_reference

MAX_CONFIG_SIZE = 16 * 1024 * 1024


@dataclass
class InspectedImage:
    """What inspection found: the top-level manifest, the chosen image, its config."""

    reference: ImageReference
    raw_manifest: bytes
    media_type: str
    manifest: Manifest
    config: ImageConfig
    repo_tags: list[str]

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw_manifest)

    def skopeo_json(self) -> dict[str, Any]:
        """The object ``skopeo inspect`` prints, key for key."""
        out: dict[str, Any] = {}
        docker_ref = getattr(self.reference, "ref", None)
        if docker_ref is not None:
            out["Name"] = docker_ref.name
        elif self.reference.transport == "containers-storage" and getattr(self.reference, "name", None):
            out["Name"] = parse_reference(self.reference.name).name  # type: ignore[attr-defined]  # skopeo: the store's name, tag dropped
        out["Digest"] = str(self.digest)
        out["RepoTags"] = self.repo_tags
        out["Created"] = self.config.created
        out["DockerVersion"] = self.config.data.get("docker_version", "")
        out["Labels"] = self.config.labels
        out["Architecture"] = self.config.architecture
        if self.config.variant:
            out["Variant"] = self.config.variant
        out["Os"] = self.config.os
        out["Layers"] = [str(layer.digest) for layer in self.manifest.layers]
        out["LayersData"] = [
            {"MIMEType": layer.media_type, "Digest": str(layer.digest), "Size": layer.size,
             "Annotations": layer.annotations or None}
            for layer in self.manifest.layers
        ]
        out["Env"] = self.config.env or None
        return out


def _read_config(src, descriptor: Descriptor) -> ImageConfig:
    if descriptor.size > MAX_CONFIG_SIZE:
        raise InvalidInputError(f"image config is {descriptor.size} bytes, over the {MAX_CONFIG_SIZE}-byte limit")
    stream, _ = src.get_blob(descriptor)
    try:
        data = bytearray()
        while chunk := stream.read(1 << 20):
            data += chunk
            if len(data) > descriptor.size:
                break
    finally:
        stream.close()
    raw = bytes(data)
    if len(raw) != descriptor.size or Digest.of(raw, descriptor.digest.algorithm) != descriptor.digest:
        raise DigestMismatchError(f"image config {descriptor.digest} does not match its digest or size")
    return ImageConfig.parse(raw)


def _resolve(src, ctx: SystemContext) -> tuple[bytes, str, Manifest]:
    raw, media_type = src.get_manifest()
    top = parse_manifest(raw, media_type)
    if isinstance(top, Index):
        chosen = choose_instance(top, ctx)
        instance_raw, _ = src.get_manifest(chosen.digest)
        if Digest.of(instance_raw, chosen.digest.algorithm) != chosen.digest:
            raise DigestMismatchError(f"manifest {chosen.digest} does not match its digest")
        manifest = parse_manifest(instance_raw, chosen.media_type)
        if not isinstance(manifest, Manifest):
            raise InvalidInputError("nested indexes are not supported")
        return raw, media_type or top.media_type, manifest
    return raw, media_type or top.media_type, top


def inspect_image(name: ImageReference | str, ctx: SystemContext | None = None, *,
                  tags: bool = True) -> InspectedImage:
    """Read an image's manifest and config (never its layers)."""
    ctx = ctx or SystemContext()
    ref = parse_image_name(name) if isinstance(name, str) else name
    with ref.new_source(ctx) as src:
        raw, media_type, manifest = _resolve(src, ctx)
        config = _read_config(src, manifest.config)
        repo_tags: list[str] = []
        if tags and hasattr(src, "list_tags"):
            repo_tags = src.list_tags()
    return InspectedImage(ref, raw, media_type, manifest, config, repo_tags)


def inspect_raw(name: ImageReference | str, ctx: SystemContext | None = None) -> bytes:
    """The top-level manifest exactly as stored (``skopeo inspect --raw``)."""
    ctx = ctx or SystemContext()
    ref = parse_image_name(name) if isinstance(name, str) else name
    with ref.new_source(ctx) as src:
        raw, media_type = src.get_manifest()
        parse_manifest(raw, media_type)  # refuse what is not a manifest
        return raw


def inspect_config(name: ImageReference | str, ctx: SystemContext | None = None) -> ImageConfig:
    """The image config of the image for this platform (``skopeo inspect --config``)."""
    ctx = ctx or SystemContext()
    ref = parse_image_name(name) if isinstance(name, str) else name
    with ref.new_source(ctx) as src:
        _, _, manifest = _resolve(src, ctx)
        return _read_config(src, manifest.config)


def list_tags(name: ImageReference | str, ctx: SystemContext | None = None) -> dict[str, Any]:
    """``{"Repository": ..., "Tags": [...]}`` as ``skopeo list-tags`` prints it."""
    ctx = ctx or SystemContext()
    ref = parse_image_name(name) if isinstance(name, str) else name
    if ref.transport == "docker-archive":
        return {"Tags": _archive_tags(ref)}
    docker_ref = getattr(ref, "ref", None)
    if docker_ref is None:
        raise InvalidInputError(f"Unsupported transport '{ref.transport}' for tag listing. Only supported: "
                                "docker, docker-archive")
    typed = parse_reference(ref.typed)  # type: ignore[attr-defined]
    if typed.tag is not None or typed.digest is not None:
        raise InvalidInputError(f"tags are listed for a repository; drop the tag or digest from {ref}")
    with ref.new_source(ctx) as src:
        return {"Repository": docker_ref.name, "Tags": src.list_tags()}  # type: ignore[attr-defined]


def to_json(data: Any) -> str:
    """Indented as skopeo prints (four spaces)."""
    return json.dumps(data, indent=4)


def _archive_tags(ref) -> list[str]:
    """Every name a docker archive's images carry (skopeo list-tags docker-archive:)."""
    from ketch.errors import ImageFormatError
    from ketch.image.archive import TarReader

    if getattr(ref, "name", None) is not None or getattr(ref, "index", None) is not None:
        raise InvalidInputError("listing tags of a docker archive takes the archive's path alone")
    tar = TarReader(ref.path)
    try:
        entries = json.loads(tar.read("manifest.json"))
    except ValueError as exc:
        raise ImageFormatError(f"{ref.path}: manifest.json is not JSON: {exc}") from exc
    tags: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        for tag in entry.get("RepoTags") or []:
            normalized = str(parse_reference(tag).with_default_tag())
            if normalized not in tags:
                tags.append(normalized)
    return tags
