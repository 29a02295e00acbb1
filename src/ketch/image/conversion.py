"""Manifest and layer-format conversion between Docker schema 2 and OCI.

Format conversion changes media types only: blobs keep their bytes, so the
config (and with it the image ID) survives, and its diff_ids stay right.
Compression changes produce new layer descriptors; the config still stays
the same, because diff_ids are digests of the *uncompressed* layers.
"""

from __future__ import annotations

import json

from ketch.errors import InvalidInputError, UnsupportedError
from ketch.image import compression
from ketch.oci import Descriptor
from ketch.oci import mediatypes as mt
from ketch.oci.manifest import dump_json

_TABLES = {mt.OCI_MANIFEST: mt.DOCKER_TO_OCI, mt.OCI_INDEX: mt.DOCKER_TO_OCI,
           mt.DOCKER_MANIFEST: mt.OCI_TO_DOCKER, mt.DOCKER_MANIFEST_LIST: mt.OCI_TO_DOCKER}

#: ``--format`` names, as skopeo spells them.
FORMATS = {"oci": mt.OCI_MANIFEST, "v2s2": mt.DOCKER_MANIFEST}


def manifest_type_for_format(name: str) -> str:
    if name == "v2s1":
        raise UnsupportedError("Docker schema 1 (v2s1) is deprecated and not supported; use oci or v2s2")
    try:
        return FORMATS[name]
    except KeyError as exc:
        raise InvalidInputError(f"unknown manifest format {name!r} (use oci or v2s2)") from exc


def index_type_for(manifest_type: str) -> str:
    return mt.OCI_INDEX if manifest_type == mt.OCI_MANIFEST else mt.DOCKER_MANIFEST_LIST


def is_layer(media_type: str) -> bool:
    return media_type in mt.LAYER_COMPRESSION


def layer_media_type(source_type: str, algorithm: str | None, target_manifest: str) -> str:
    """The media type of a layer with ``algorithm`` compression in a manifest of ``target_manifest``."""
    oci = mt.DOCKER_TO_OCI.get(source_type, source_type)
    nondistributable = "nondistributable" in oci
    base = mt.OCI_LAYER_NONDISTRIBUTABLE if nondistributable else mt.OCI_LAYER
    oci = base if algorithm is None else f"{base}+{algorithm}"
    if target_manifest == mt.DOCKER_MANIFEST:
        if algorithm == compression.ZSTD:
            raise UnsupportedError("Docker schema 2 manifests cannot hold zstd layers; use --format oci")
        return mt.OCI_TO_DOCKER[oci]
    return oci


def convert_manifest(raw: bytes, media_type: str, target: str,
                     instance_digests: dict[str, tuple[str, int]] | None = None,
                     layers: list[Descriptor] | None = None) -> bytes:
    """Rewrite a manifest or index to ``target`` media type.

    ``instance_digests`` maps old instance digests of an index to the
    (digest, size) of their converted manifests; ``layers`` replaces the
    layer descriptors of an image manifest (after compression changes).
    Returns ``raw`` itself when nothing changes.
    """
    if media_type == target and not layers and not instance_digests:
        return raw
    table = _TABLES.get(target)
    if table is None:
        raise UnsupportedError(f"cannot convert a manifest to {target}")
    data = json.loads(raw)

    def mapped(descriptor: dict, what: str) -> dict:
        out = dict(descriptor)
        current = descriptor.get("mediaType", "")
        new = table.get(current)
        if new is None and current not in table.values():
            raise UnsupportedError(f"cannot convert {what} of media type {current} to {target}")
        if new:
            out["mediaType"] = new
        return out

    data["mediaType"] = target
    if "config" in data:
        data["config"] = mapped(data["config"], "the config")
        if layers is not None:
            old = data["layers"]
            data["layers"] = []
            for original, new in zip(old, layers):
                entry = dict(original, mediaType=new.media_type, digest=str(new.digest), size=new.size)
                data["layers"].append(entry)
        else:
            data["layers"] = [mapped(layer, "a layer") for layer in data["layers"]]
        if target == mt.DOCKER_MANIFEST:
            data.pop("annotations", None)  # schema 2 has no annotations
            for layer in data["layers"]:
                layer.pop("annotations", None)
    else:
        entries = []
        for entry in data["manifests"]:
            entry = mapped(entry, "an index entry")
            if instance_digests and entry["digest"] in instance_digests:
                entry["digest"], entry["size"] = instance_digests[entry["digest"]]
            entries.append(entry)
        data["manifests"] = entries
        if target == mt.DOCKER_MANIFEST_LIST:
            data.pop("annotations", None)
    return dump_json(data)
