"""ketch: a daemonless container toolkit.

The public Python API. Everything the command line does is reachable from
here; the modules behind it are ``ketch.oci`` (the OCI data model),
``ketch.image`` (transports and the copy engine), ``ketch.storage`` (the store),
``ketch.runtime`` (the OCI runtime) and ``ketch.containers`` (``run`` and the
container commands).
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
    PolicyDeniedError,
    RegistryError,
    RegistryUnreachableError,
    ScanError,
    UnsupportedError,
)

__version__ = "0.1.0"

# The API is imported on first use, so that ``import ketch`` (and every
# command that does not need the image code) starts fast.
_LAZY = {
    "CopyOptions": "ketch.image.copy",
    "CopyResult": "ketch.image.copy",
    "copy_image": "ketch.image.copy",
    "inspect_image": "ketch.image.inspect",
    "inspect_config": "ketch.image.inspect",
    "list_tags": "ketch.image.inspect",
    "parse_image_name": "ketch.image.transports",
    "SystemContext": "ketch.image.context",
    "parse_reference": "ketch.oci.reference",
    "delete_image": "ketch.image.docker.transport",
    "login": "ketch.image.login",
    "logout": "ketch.image.login",
    "DockerArchiveWriter": "ketch.image.docker_archive",
    "Policy": "ketch.image.policy",
    "RegistriesConf": "ketch.image.registries",
    "Engine": "ketch.containers.engine",
    "CreateOptions": "ketch.containers.options",
    "RunResult": "ketch.containers.engine",
    "ContainerError": "ketch.containers.engine",
    "run": "ketch.containers.engine",
    "Builder": "ketch.builder.working",
    "scan": "ketch.scanning.engine",
    "ScanOptions": "ketch.scanning.engine",
    "ScanReport": "ketch.scanning.model",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ketch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

__all__ = [
    "AuthenticationError",
    "Builder",
    "ContainerError",
    "CreateOptions",
    "Engine",
    "RunResult",
    "run",
    "scan",
    "ScanOptions",
    "ScanReport",
    "ScanError",
    "BlobUnknownError",
    "CopyOptions",
    "DockerArchiveWriter",
    "Policy",
    "RegistriesConf",
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
    "PolicyDeniedError",
    "RegistryError",
    "RegistryUnreachableError",
    "SystemContext",
    "UnsupportedError",
    "__version__",
    "copy_image",
    "delete_image",
    "login",
    "logout",
    "inspect_config",
    "inspect_image",
    "list_tags",
    "parse_image_name",
    "parse_reference",
]
