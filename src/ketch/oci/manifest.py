"""Image manifests, indexes and descriptors (OCI image-spec and Docker schema 2).

Parsing validates structure and keeps the raw bytes: the digest of a manifest
is the digest of the exact bytes it was served as, so ketch never re-serialises
a manifest it only copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ketch.errors import ImageFormatError, InvalidInputError, UnsupportedError
from ketch.oci import mediatypes as mt
from ketch.oci.digest import Digest

MAX_MANIFEST_SIZE = 4 * 1024 * 1024  # what the distribution spec lets registries refuse above


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> Platform:
        if not isinstance(data, dict) or not isinstance(data.get("architecture"), str) \
                or not isinstance(data.get("os"), str):
            raise ImageFormatError("invalid platform in index: needs architecture and os")
        return cls(
            architecture=data["architecture"],
            os=data["os"],
            variant=data.get("variant", "") or "",
            os_version=data.get("os.version", "") or "",
            os_features=tuple(data.get("os.features") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A reference to content: media type, digest, size and optional extras."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: Platform | None = None
    artifact_type: str = ""

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise ImageFormatError(f"invalid {where}: not an object")
        media_type = data.get("mediaType")
        digest = data.get("digest")
        size = data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ImageFormatError(f"invalid {where}: missing mediaType")
        if not isinstance(digest, str):
            raise ImageFormatError(f"invalid {where}: missing digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageFormatError(f"invalid {where}: size must be a non-negative integer")
        try:
            parsed = Digest.parse(digest)
        except InvalidInputError as exc:
            raise ImageFormatError(f"invalid {where}: {exc}") from exc
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ImageFormatError(f"invalid {where}: annotations must be an object")
        platform = data.get("platform")
        return cls(
            media_type=media_type,
            digest=parsed,
            size=size,
            annotations=dict(annotations),
            urls=tuple(data.get("urls") or ()),
            platform=Platform.from_dict(platform) if platform is not None else None,
            artifact_type=data.get("artifactType", "") or "",
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest: a config and its layers (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]
    raw: bytes

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)

    def blobs(self) -> list[Descriptor]:
        """Every blob the manifest references, config first."""
        return [self.config, *self.layers]


@dataclass(frozen=True)
class Index:
    """An image index / manifest list: manifests for several platforms."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str]
    raw: bytes

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)


AnyManifest = Manifest | Index

_GENERIC_CONTENT_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}


def guess_media_type(data: dict[str, Any], hint: str | None = None) -> str:
    """The media type of a parsed manifest: its own field, else the hint, else its shape."""
    declared = data.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if data.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if "signatures" in data else mt.DOCKER_SCHEMA1
    hint = (hint or "").split(";")[0].strip()
    if hint and hint not in _GENERIC_CONTENT_TYPES:
        return hint
    if "manifests" in data:
        return mt.OCI_INDEX
    if "config" in data and "layers" in data:
        return mt.OCI_MANIFEST
    return hint or ""


def parse_manifest(raw: bytes, media_type_hint: str | None = None) -> AnyManifest:
    """Parse and validate a manifest or index from its exact bytes."""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ImageFormatError(f"manifest is {len(raw)} bytes, over the {MAX_MANIFEST_SIZE}-byte limit")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageFormatError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ImageFormatError("manifest is not a JSON object")
    media_type = guess_media_type(data, media_type_hint)
    if media_type in mt.SCHEMA1:
        raise UnsupportedError(
            "Docker schema 1 manifests are not supported (deprecated); "
            "push the image again with a current tool"
        )
    if data.get("schemaVersion") != 2:
        raise ImageFormatError(f"unsupported manifest schemaVersion {data.get('schemaVersion')!r}")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ImageFormatError("manifest annotations must be an object")
    if media_type in mt.IMAGE_MANIFESTS:
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise ImageFormatError("manifest has no layers list")
        return Manifest(
            media_type=media_type,
            config=Descriptor.from_dict(data.get("config"), where="config descriptor"),
            layers=tuple(Descriptor.from_dict(d, where=f"layer {i}") for i, d in enumerate(layers)),
            annotations=dict(annotations),
            raw=raw,
        )
    if media_type in mt.INDEXES:
        manifests = data.get("manifests")
        if not isinstance(manifests, list):
            raise ImageFormatError("index has no manifests list")
        return Index(
            media_type=media_type,
            manifests=tuple(Descriptor.from_dict(d, where=f"index entry {i}") for i, d in enumerate(manifests)),
            annotations=dict(annotations),
            raw=raw,
        )
    raise ImageFormatError(f"unsupported manifest media type {media_type or '(none)'!r}")


def dump_json(data: Any) -> bytes:
    """Serialise a document ketch writes itself (compact, as containers/image does)."""
    return json.dumps(data, separators=(",", ":")).encode()
