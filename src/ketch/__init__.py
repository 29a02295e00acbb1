"""ketch: a daemonless container toolkit.

The public Python API. Everything the command line does is reachable from
here; the modules behind it are ``ketch.oci`` (the OCI data model) and
``ketch.image`` (transports and the copy engine).
"""

from __future__ import annotations

from ketch.errors import (
    AuthenticationError,
    BlobUnknownError,
    DestinationError,
    DigestMismatchError,
    ImageFormatError,
    InUseError,
    InvalidInputError,
    InvalidReferenceError,
    KetchError,
    ManifestUnknownError,
    NotFoundError,
    RegistryError,
    RegistryUnreachableError,
    UnsupportedError,
)
from ketch.image.copy import CopyOptions, CopyResult, copy_image
from ketch.image.inspect import inspect_image, inspect_config, list_tags
from ketch.image.transports import parse_image_name
from ketch.image.context import SystemContext
from ketch.oci.reference import parse_reference

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BlobUnknownError",
    "CopyOptions",
    "CopyResult",
    "DestinationError",
    "DigestMismatchError",
    "ImageFormatError",
    "InUseError",
    "InvalidInputError",
    "InvalidReferenceError",
    "KetchError",
    "ManifestUnknownError",
    "NotFoundError",
    "RegistryError",
    "RegistryUnreachableError",
    "SystemContext",
    "UnsupportedError",
    "__version__",
    "copy_image",
    "inspect_config",
    "inspect_image",
    "list_tags",
    "parse_image_name",
    "parse_reference",
]
