"""The OCI data model: digests, media types, manifests, configs, references.

Depends on nothing else in ketch but its errors.
"""

from ketch.oci.config import ImageConfig
from ketch.oci.digest import Digest, VerifyingReader, copy_verified
from ketch.oci.manifest import (
    MAX_MANIFEST_SIZE,
    AnyManifest,
    Descriptor,
    Index,
    Manifest,
    Platform,
    parse_manifest,
)
from ketch.oci.reference import Reference, parse_reference

__all__ = [
    "AnyManifest", "Descriptor", "Digest", "ImageConfig", "Index", "MAX_MANIFEST_SIZE", "Manifest",
    "Platform", "Reference", "VerifyingReader", "copy_verified", "parse_manifest", "parse_reference",
]
