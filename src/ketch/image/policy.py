"""Trust policy: ``policy.json`` as containers/image reads it.

A policy maps transports and scopes to requirements. ketch honours
``insecureAcceptAnything``, ``reject`` and ``signedBy`` (GPG simple signing,
verified in :mod:`ketch.image.trust` once the manifest and the signatures are
read, before anything is written); ``sigstoreSigned`` is refused with a clear
error, never silently accepted.

Lookup, most specific first: the transport's scopes for the image (for
``docker``: ``host/ns/repo:tag``, ``host/ns/repo``, ``host/ns``, ``host``,
then ``*.domain`` wildcards; for paths: the path and its parents), then the
transport's ``""`` scope, then ``default``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketch.errors import InvalidInputError, PolicyDeniedError, UnsupportedError
from ketch.image.types import ImageReference

SYSTEM_POLICY = Path("/etc/containers/policy.json")
KNOWN_TYPES = {"insecureAcceptAnything", "reject", "signedBy", "sigstoreSigned"}


def user_policy_path() -> Path:
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return config_home / "containers" / "policy.json"


def default_policy_path() -> Path:
    user = user_policy_path()
    return user if user.exists() else SYSTEM_POLICY


def _validate(requirements: Any, where: str) -> list[dict]:
    if not isinstance(requirements, list) or not requirements:
        raise InvalidInputError(f"policy {where}: must be a non-empty list of requirements")
    for requirement in requirements:
        if not isinstance(requirement, dict) or requirement.get("type") not in KNOWN_TYPES:
            kind = requirement.get("type") if isinstance(requirement, dict) else requirement
            raise InvalidInputError(f"policy {where}: unknown requirement type {kind!r}")
    return requirements


def scopes_for(reference: ImageReference) -> list[str]:
    """Policy scopes of a reference, most specific first (as containers/image orders them)."""
    docker_ref = getattr(reference, "ref", None)
    if docker_ref is not None and reference.transport == "docker":
        scopes = [str(docker_ref)]
        name = docker_ref.name
        while True:
            scopes.append(name)
            if "/" not in name:
                break
            name = name.rsplit("/", 1)[0]
        host = docker_ref.domain.split(":")[0]
        labels = host.split(".")
        for i in range(1, len(labels)):
            scopes.append("*." + ".".join(labels[i:]))
        return list(dict.fromkeys(scopes))
    path = getattr(reference, "path", None)
    if path is not None:
        resolved = Path(os.path.abspath(path))
        scopes = []
        image = getattr(reference, "image", "")
        if image:
            scopes.append(f"{resolved}:{image}")
        for candidate in [resolved, *resolved.parents]:
            scopes.append(str(candidate))
        return scopes
    return []


@dataclass
class Policy:
    default: list[dict]
    transports: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    source: str = "(built in)"

    @classmethod
    def insecure_accept_anything(cls) -> Policy:
        return cls(default=[{"type": "insecureAcceptAnything"}], source="--insecure-policy")

    @classmethod
    def from_json(cls, data: Any, source: str) -> Policy:
        if not isinstance(data, dict):
            raise InvalidInputError(f"policy {source} is not a JSON object")
        default = _validate(data.get("default"), f"{source}: default")
        transports = data.get("transports") or {}
        if not isinstance(transports, dict):
            raise InvalidInputError(f"policy {source}: transports must be an object")
        parsed: dict[str, dict[str, list[dict]]] = {}
        for transport, scopes in transports.items():
            if not isinstance(scopes, dict):
                raise InvalidInputError(f"policy {source}: transport {transport!r} must map scopes to requirements")
            parsed[transport] = {scope: _validate(reqs, f"{source}: {transport} {scope!r}")
                                 for scope, reqs in scopes.items()}
        return cls(default=default, transports=parsed, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Policy:
        path = Path(path)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise InvalidInputError(f"no trust policy at {path} (use --policy FILE or --insecure-policy)") from exc
        except OSError as exc:
            raise InvalidInputError(f"reading policy {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise InvalidInputError(f"policy {path} is not valid JSON") from exc
        return cls.from_json(data, str(path))

    @classmethod
    def load_default(cls) -> Policy:
        return cls.load(default_policy_path())

    def requirements_for(self, reference: ImageReference) -> tuple[str, list[dict]]:
        scopes = self.transports.get(reference.transport, {})
        for scope in scopes_for(reference):
            if scope in scopes:
                return scope, scopes[scope]
        if "" in scopes:
            return f"{reference.transport}:", scopes[""]
        return "default", self.default

    def check(self, reference: ImageReference) -> list[dict]:
        """Raise for a ``reject``; the requirements left to verify once the manifest and its
        signatures are read (``signedBy``), for :meth:`verify`."""
        scope, requirements = self.requirements_for(reference)
        pending = []
        for requirement in requirements:
            kind = requirement["type"]
            if kind == "reject":
                raise PolicyDeniedError(f"trust policy {self.source} rejects {reference} (scope {scope})")
            if kind == "sigstoreSigned":
                raise UnsupportedError(
                    f"trust policy {self.source} requires a sigstoreSigned signature for {reference} (scope {scope}); "
                    f"ketch verifies signedBy (GPG) signatures, not sigstore ones yet")
            if kind == "signedBy":
                pending.append(requirement)
        return pending

    def verify(self, reference: ImageReference, requirements: list[dict], manifest: bytes,
               signatures: list[bytes]) -> None:
        """Every requirement must be met by the image's signatures (PolicyDeniedError naming the
        failed requirement and why each signature failed)."""
        from ketch.image.trust import check_simple_signing

        scope, _ = self.requirements_for(reference)
        docker_ref = getattr(reference, "ref", None) if reference.transport == "docker" else None
        policy_dir = Path(self.source).parent if os.path.isabs(self.source) else None
        for requirement in requirements:
            try:
                check_simple_signing(requirement, policy_dir, docker_ref, manifest, signatures)
            except PolicyDeniedError as exc:
                raise PolicyDeniedError(f"{reference} is refused by trust policy {self.source} (scope {scope}, "
                                        f"signedBy): {exc.message}") from exc
