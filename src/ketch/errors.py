"""One exception tree for all of ketch.

Every error ketch raises on purpose is a :class:`KetchError`. Families say what
kind of thing went wrong so that callers (and the CLI) can branch on them;
lower-level errors (OSError, urllib3, json) are mapped to the most specific
family at the boundary where they are caught, keeping the original as
``__cause__``.
"""

from __future__ import annotations

import errno as _errno


class KetchError(Exception):
    """Base of every error ketch raises on purpose.

    ``exit_code`` is what the command line exits with for this error.
    """

    exit_code = 1

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    def __str__(self) -> str:
        return self.message


class InvalidInputError(KetchError):
    """The user asked for something malformed: a bad reference, flag or file."""


class InvalidReferenceError(InvalidInputError):
    """An image reference or transport name does not parse."""


class NotFoundError(KetchError):
    """A named thing (image, tag, blob, manifest, file) does not exist."""


class ManifestUnknownError(NotFoundError):
    """The registry or layout has no manifest for the reference."""


class BlobUnknownError(NotFoundError):
    """The registry or layout has no blob with that digest."""


class InUseError(KetchError):
    """The thing is in use by something else and cannot be changed now."""


class UnsupportedError(KetchError):
    """A valid request for a feature ketch does not support."""


class ImageFormatError(KetchError):
    """An image's manifest, index or config is malformed or of an unknown kind."""


class DigestMismatchError(ImageFormatError):
    """Content does not match the digest (or size) it was announced with."""


class RegistryError(KetchError):
    """A registry answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, errno: int | None = None) -> None:
        super().__init__(message, errno=errno)
        self.status = status


class AuthenticationError(RegistryError):
    """The registry refused the credentials, or wanted credentials we lack."""


class RegistryUnreachableError(RegistryError):
    """The connection failed (refused, reset, TLS) even after retries."""


class PolicyDeniedError(KetchError):
    """Configuration forbids this: the trust policy rejects the image, or
    registries.conf blocks the registry."""


class DestinationError(KetchError):
    """Writing to an image destination (a path, a layout) failed."""


def from_oserror(exc: OSError, what: str) -> KetchError:
    """Map an OSError to the most specific ketch error, keeping the errno."""
    reason = exc.strerror or str(exc)
    message = f"{what}: {reason}"
    if exc.errno == _errno.ENOENT:
        return NotFoundError(message, errno=exc.errno)
    return DestinationError(message, errno=exc.errno)
