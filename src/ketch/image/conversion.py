"""Manifest format conversion between Docker schema 2 and OCI.

Only media types change; blobs keep their bytes, so every blob digest and the
config's diff_ids stay right. (Compression changes are a later step.)
"""

from __future__ import annotations

import json

from ketch.errors import UnsupportedError
from ketch.oci import mediatypes as mt
from ketch.oci.manifest import dump_json

_TABLES = {mt.OCI_MANIFEST: mt.DOCKER_TO_OCI, mt.OCI_INDEX: mt.DOCKER_TO_OCI,
           mt.DOCKER_MANIFEST: mt.OCI_TO_DOCKER, mt.DOCKER_MANIFEST_LIST: mt.OCI_TO_DOCKER}


def convert_manifest(raw: bytes, media_type: str, target: str,
                     instance_digests: dict[str, tuple[str, int]] | None = None) -> bytes:
    """Rewrite a manifest or index to ``target`` media type.

    ``instance_digests`` maps old instance digests of an index to the
    (digest, size) of their converted manifests.
    """
    if media_type == target:
        return raw
    table = _TABLES.get(target)
    if table is None:
        raise UnsupportedError(f"cannot convert a manifest to {target}")
    data = json.loads(raw)

    def mapped(descriptor: dict, what: str) -> dict:
        out = dict(descriptor)
        new = table.get(descriptor.get("mediaType", ""))
        if new is None and descriptor.get("mediaType") not in table.values():
            raise UnsupportedError(f"cannot convert {what} of media type {descriptor.get('mediaType')} to {target}")
        if new:
            out["mediaType"] = new
        return out

    data["mediaType"] = target
    if "config" in data:
        data["config"] = mapped(data["config"], "the config")
        data["layers"] = [mapped(layer, "a layer") for layer in data["layers"]]
        if target == mt.DOCKER_MANIFEST:
            data.pop("annotations", None)  # schema 2 has no annotations
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
