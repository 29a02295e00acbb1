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
    """The connection failed (refused, reset, TLS) even after retries. ``retryable``: whether
    waiting may help (a reset or time-out may heal; a TLS failure does not)."""

    def __init__(self, message: str, *, retryable: bool = True, errno: int | None = None) -> None:
        super().__init__(message, errno=errno)
        self.retryable = retryable


class PolicyDeniedError(KetchError):
    """Configuration forbids this: the trust policy rejects the image, or
    registries.conf blocks the registry."""


class DestinationError(KetchError):
    """Writing to an image destination (a path, a layout) failed."""


# -- one family per layer: the store, the OCI runtime, containers, networks, builds ----------------
# The command line's exit status is the class's (``exit_code``); nothing sets it on an instance.


class StoreError(KetchError):
    """The local store (its database, layer content, mounts) failed or is damaged."""


class ScanError(KetchError):
    """A scan could not be made: a database in the wrong format, a scanner that failed."""


class DuplicateNameError(InUseError):
    """A name (image tag, container, secret, network, volume) is taken: the database's UNIQUE
    constraint said so (mapped once, in :mod:`ketch.storage.db`)."""


class OCIRuntimeError(KetchError):
    """The OCI runtime could not set up or manage a container."""


class CannotExecuteError(OCIRuntimeError):
    """The container's program cannot be run: not found (127) or not executable (126)."""

    exit_code = 126

    @property
    def exit_status(self) -> int:  # the status a shell gives for the same failure
        return self.exit_code


class ExecutableNotFoundError(CannotExecuteError):
    exit_code = 127


class ContainerError(KetchError):
    """A container operation failed; 125, as podman's."""

    exit_code = 125


class ContainerStateError(ContainerError):
    """The container is not in a state the operation can act on (podman's "container state
    improper", which scripts look for)."""


class ExecNotStartedError(ContainerStateError):
    """``exec`` in a container that does not run: podman 4.3 exits 255 (125 with ``--detach``)."""

    exit_code = 255


class ContainerCommandError(ContainerError):
    """The container's command cannot be run (126); :class:`ContainerCommandNotFoundError` 127."""

    exit_code = 126


class ContainerCommandNotFoundError(ContainerCommandError):
    exit_code = 127


class NoSuchContainerError(NotFoundError):
    """No container has that name or id (podman's words, which scripts look for)."""

    def __init__(self, name_or_id: str) -> None:
        super().__init__(f'no container with name or ID "{name_or_id}" found: no such container')
        self.name = name_or_id


class ContainerRunningError(InUseError):
    """The container runs (or is paused), and the operation needs it stopped."""

    exit_code = 2  # podman rm's status for a running container


class NetworkError(KetchError):
    """A network could not be set up or removed."""


class BuilderError(KetchError):
    """A builder primitive or a build failed; 125, as buildah's."""

    exit_code = 125


class BuildError(BuilderError):
    """A build step failed; the message names the step."""


class BuildStepFailedError(BuildError):
    """A RUN step's command exited non-zero: podman build exits with the step's own status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.status


class BuilderCommandError(BuilderError):
    """A ``builder run`` command cannot be run (126); :class:`BuilderCommandNotFoundError` 127."""

    exit_code = 126


class BuilderCommandNotFoundError(BuilderCommandError):
    exit_code = 127


def command_error(exc: CannotExecuteError, layer: str) -> KetchError:
    """The runtime's "cannot execute" as the calling layer's (``container`` or ``builder``) error
    of the same status; raise it ``from exc``."""
    not_found = isinstance(exc, ExecutableNotFoundError)
    if layer == "builder":
        return (BuilderCommandNotFoundError if not_found else BuilderCommandError)(str(exc))
    return (ContainerCommandNotFoundError if not_found else ContainerCommandError)(str(exc))


def log_cleanup_failure(logger: str, what: str, exc: BaseException) -> None:
    """A clean-up step failed and the work goes on: say so on the log (``--log-level``), never
    silently. Something already gone (NotFoundError) is a debug message; anything else a
    warning. ``logging`` is imported only then: it is not on a container's start path."""
    import logging

    level = logging.DEBUG if isinstance(exc, NotFoundError) else logging.WARNING
    logging.getLogger(logger).log(level, "%s: %s", what, exc)


def from_oserror(exc: OSError, what: str) -> KetchError:
    """Map an OSError to the most specific ketch error, keeping the errno."""
    reason = exc.strerror or str(exc)
    message = f"{what}: {reason}"
    if exc.errno == _errno.ENOENT:
        return NotFoundError(message, errno=exc.errno)
    return DestinationError(message, errno=exc.errno)
