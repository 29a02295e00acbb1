"""The OCI data model: digests, media types, manifests, configs, references.

Depends on nothing else in ketch but its errors. The names below are imported on first use, so
that a command needing only references (``ketch run``) does not load the manifest code.
"""

from __future__ import annotations

_LAZY = {
    "ImageConfig": "ketch.oci.config",
    "Digest": "ketch.oci.digest", "VerifyingReader": "ketch.oci.digest", "copy_verified": "ketch.oci.digest",
    "MAX_MANIFEST_SIZE": "ketch.oci.manifest", "AnyManifest": "ketch.oci.manifest",
    "Descriptor": "ketch.oci.manifest", "Index": "ketch.oci.manifest", "Manifest": "ketch.oci.manifest",
    "Platform": "ketch.oci.manifest", "parse_manifest": "ketch.oci.manifest",
    "Reference": "ketch.oci.reference", "parse_reference": "ketch.oci.reference",
}

__all__ = [
    "AnyManifest", "Descriptor", "Digest", "ImageConfig", "Index", "MAX_MANIFEST_SIZE", "Manifest",
    "Platform", "Reference", "VerifyingReader", "copy_verified", "parse_manifest", "parse_reference",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ketch.oci' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
