"""Image references (``[HOST[:PORT]/]PATH[:TAG][@DIGEST]``), normalized as the
containers tools do: ``busybox`` is ``docker.io/library/busybox:latest``.

The grammar follows distribution's reference package, which containers/image,
podman and skopeo all use, so a name means the same thing to ketch as to them.
"""

from __future__ import annotations

import re

from ketch.errors import InvalidInputError, InvalidReferenceError
from ketch.oci.digest import Digest
from ketch.records import Record

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")


class Reference(Record, frozen=True):
    """A normalized image reference. ``tag`` and ``digest`` may both be set."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The repository with its domain: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """The host to talk to: Docker Hub's API lives on another name than its references."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    def with_default_tag(self) -> Reference:
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    @property
    def familiar_name(self) -> str:
        """The short form docker prints (``busybox`` for ``docker.io/library/busybox``)."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
                path = path[len(OFFICIAL_REPO_PREFIX):]
            return path
        return self.name

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and (("." in first or ":" in first) or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def parse_reference(text: str) -> Reference:
    """Parse and normalize a reference; tag and digest are left as given (may be None)."""
    if not text:
        raise InvalidReferenceError("invalid image reference: empty")
    if text != text.strip():
        raise InvalidReferenceError(f"invalid image reference {text!r}: surrounding whitespace")
    remainder = text
    digest = None
    if "@" in remainder:
        remainder, _, digest_text = remainder.partition("@")
        if not _DIGEST_RE.match(digest_text):
            raise InvalidReferenceError(f"invalid image reference {text!r}: bad digest {digest_text!r}")
        try:
            digest = Digest.parse(digest_text)
        except InvalidInputError as exc:
            raise InvalidReferenceError(f"invalid image reference {text!r}: {exc}") from exc
    tag = None
    # A tag follows the last colon after the last slash (a colon before it is a port).
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(f"invalid image reference {text!r}: bad tag {tag!r}")
    if not remainder:
        raise InvalidReferenceError(f"invalid image reference {text!r}: no repository name")
    domain, path = _split_domain(remainder)
    if not _DOMAIN_RE.match(domain):
        raise InvalidReferenceError(f"invalid image reference {text!r}: bad registry host {domain!r}")
    if path != path.lower():
        raise InvalidReferenceError(f"invalid image reference {text!r}: repository name must be lowercase")
    if not _PATH_RE.match(path):
        raise InvalidReferenceError(f"invalid image reference {text!r}: bad repository name {path!r}")
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise InvalidReferenceError(f"invalid image reference {text!r}: name longer than {MAX_NAME_LENGTH}")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)
