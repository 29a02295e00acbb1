"""The registry of transports and the parser for ``TRANSPORT:REFERENCE`` names."""

from __future__ import annotations

import importlib

from ketch.errors import InvalidReferenceError
from ketch.image.types import ImageReference

# name -> (module, class); modules are imported only when their transport is used.
_TRANSPORTS = {
    "docker": ("ketch.image.docker.transport", "DockerReference"),
    "oci": ("ketch.image.oci_layout", "OCILayoutReference"),
    "dir": ("ketch.image.directory", "DirectoryReference"),
    "oci-archive": ("ketch.image.oci_archive", "OCIArchiveReference"),
    "docker-archive": ("ketch.image.docker_archive", "DockerArchiveReference"),
    "ketch-storage": ("ketch.image.storage_transport", "StorageReference"),
    "containers-storage": ("ketch.image.containers_storage", "ContainersStorageReference"),
}

# Transports skopeo knows that ketch does not handle yet, so the error says so.
_PLANNED = {"docker-daemon"}


def transport_names() -> list[str]:
    return sorted(_TRANSPORTS)


def parse_image_name(name: str) -> ImageReference:
    """Parse ``TRANSPORT:REFERENCE`` (``docker://busybox``, ``oci:/tmp/l:tag``, ``dir:/tmp/d``)."""
    transport, sep, rest = name.partition(":")
    if not sep or not transport:
        raise InvalidReferenceError(
            f"invalid image name {name!r}: expected TRANSPORT:REFERENCE (transports: {', '.join(transport_names())})")
    if transport not in _TRANSPORTS:
        if transport in _PLANNED:
            raise InvalidReferenceError(f"transport {transport!r} is not supported yet")
        raise InvalidReferenceError(f"unknown transport {transport!r} in {name!r} "
                                    f"(transports: {', '.join(transport_names())})")
    module_name, class_name = _TRANSPORTS[transport]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.parse(rest)
