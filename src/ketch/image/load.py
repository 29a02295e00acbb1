"""``load``: images from a docker or OCI archive into the store, named as
podman names them (the docker archive's RepoTags; the OCI layout's
``org.opencontainers.image.ref.name`` annotation, normalized)."""

from __future__ import annotations

import json
from pathlib import Path

from ketch.errors import ImageFormatError, InvalidInputError
from ketch.image.archive import TarReader
from ketch.image.context import SystemContext
from ketch.image.copy import CopyOptions, copy_image
from ketch.image.docker_archive import DockerArchiveReference
from ketch.image.oci_archive import OCIArchiveReference
from ketch.image.policy import Policy
from ketch.image.storage_transport import StorageReference
from ketch.oci.reference import parse_reference


def load_archive(store, path: str, ctx: SystemContext, progress=None, policy: Policy | None = None) -> list[str]:
    """Load every image of the archive; returns the names (or ids) loaded. ``progress``: the
    copy's report (ketch.image.progress). The trust policy (``policy``, else the system's) is
    checked for each image, as podman's load does (the ``docker-archive``/``oci-archive``
    transports' scopes)."""
    tar = TarReader(Path(path))
    options = CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=policy if policy is not None else Policy.load_default())
    if progress is not None:
        options.progress = progress
    loaded: list[str] = []
    if "manifest.json" in tar:
        entries = json.loads(tar.read("manifest.json"))
        if not isinstance(entries, list):
            raise ImageFormatError(f"{path}: manifest.json is not a list")
        for i, entry in enumerate(entries):
            tags = entry.get("RepoTags") or []
            names = [str(parse_reference(t).with_default_tag()) for t in tags]
            image_id = _copy(DockerArchiveReference(path, index=i), StorageReference(names[0] if names else ""),
                             options)
            for extra in names[1:]:
                store.tag(image_id, extra)
            loaded += names or [f"sha256:{image_id}"]
        return loaded
    if "index.json" in tar:
        index = json.loads(tar.read("index.json"))
        for entry in index.get("manifests", []):
            ref_name = (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
            name = _name_from_annotation(ref_name)
            source = OCIArchiveReference(path, ref_name) if ref_name else OCIArchiveReference(path)
            image_id = _copy(source, StorageReference(name or ""), options)
            loaded.append(name or f"sha256:{image_id}")
        return loaded
    raise ImageFormatError(f"{path} is neither a docker archive nor an OCI archive")


def _name_from_annotation(ref_name: str) -> str | None:
    """podman: a full reference is a name; a bare tag names nothing."""
    if not ref_name or "/" not in ref_name and ":" not in ref_name:
        return None
    try:
        return str(parse_reference(ref_name).with_default_tag())
    except InvalidInputError:
        return None


def _copy(source, dest: StorageReference, options: CopyOptions) -> str:
    """Copy into the store; returns the image id (the config digest)."""
    from ketch.oci import parse_manifest

    result = copy_image(source, dest, options)
    return parse_manifest(result.manifest).config.digest.encoded
