"""Trust policy: ``policy.json`` as containers/image reads it.

A policy maps transports and scopes to requirements. ketch honours
``insecureAcceptAnything``, ``reject``, ``signedBy`` (GPG simple signing, verified in
:mod:`ketch.image.trust`) and ``sigstoreSigned`` with public keys (:mod:`ketch.image.sigstore`;
Fulcio and Rekor are refused, never ignored), all verified once the manifest and the signatures
are read, before anything is written.

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

from ketch.errors import InvalidInputError, PolicyDeniedError
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
        signatures are read (``signedBy``, ``sigstoreSigned``), for :meth:`verify`."""
        scope, requirements = self.requirements_for(reference)
        pending = []
        for requirement in requirements:
            kind = requirement["type"]
            if kind == "reject":
                raise PolicyDeniedError(f"trust policy {self.source} rejects {reference} (scope {scope})")
            if kind in ("signedBy", "sigstoreSigned"):
                pending.append(requirement)
        return pending

    def verify(self, reference: ImageReference, requirements: list[dict], manifest: bytes,
               signatures: list[bytes]) -> None:
        """Every requirement must be met by the image's signatures (PolicyDeniedError naming the
        failed requirement and why each signature failed)."""
        from ketch.image.sigstore import check_sigstore_signed
        from ketch.image.trust import check_simple_signing

        scope, _ = self.requirements_for(reference)
        docker_ref = getattr(reference, "ref", None) if reference.transport == "docker" else None
        policy_dir = Path(self.source).parent if os.path.isabs(self.source) else None
        for requirement in requirements:
            check = check_sigstore_signed if requirement["type"] == "sigstoreSigned" else check_simple_signing
            try:
                check(requirement, policy_dir, docker_ref, manifest, signatures)
            except PolicyDeniedError as exc:
                raise PolicyDeniedError(f"{reference} is refused by trust policy {self.source} (scope {scope}, "
                                        f"{requirement['type']}): {exc.message}") from exc


# -- podman's ``image trust show|set`` -----------------------------------------

_TRUST_NAMES = {"insecureAcceptAnything": "accept", "reject": "reject", "signedBy": "signed",
                "sigstoreSigned": "sigstoreSigned"}


def _key_identities(requirement: dict) -> list[str]:
    """The user ids of a signedBy requirement's keys, as podman finds them (through ``gpg2``; none
    when it is not installed, as podman shows none then)."""
    import shutil
    import subprocess

    if shutil.which("gpg2") is None:
        return []
    paths = [requirement["keyPath"]] if "keyPath" in requirement else list(requirement.get("keyPaths") or [])
    found = []
    for path in paths:
        result = subprocess.run(["gpg2", "--with-colons", path], capture_output=True, text=True, check=False)
        found += [line.split(":")[9] for line in result.stdout.splitlines() if line.startswith(("uid:", "pub:"))
                  and line.split(":")[9]]
    return found


def trust_entries(policy_path: str | os.PathLike, registries_d: str | os.PathLike | None = None) -> list[dict]:
    """``podman image trust show --json``: the default, each docker scope (with the lookaside
    registries.d names for it), then the other transports' requirements."""
    from ketch.image.registries_d import RegistriesD

    policy = Policy.load(policy_path)
    lookasides = RegistriesD(registries_d)
    entries = []
    for requirement in policy.default:
        entries.append({"transport": "all", "name": "* (default)", "repo_name": "default",
                        "type": _TRUST_NAMES[requirement["type"]]})
    for scope, requirements in sorted(policy.transports.get("docker", {}).items()):
        for requirement in requirements:
            entry = {"transport": "repository", "name": scope, "repo_name": scope}
            identities = _key_identities(requirement) if requirement["type"] == "signedBy" else []
            if identities:
                entry["gpg_id"] = ", ".join(identities)
            store = lookasides.scopes.get(scope)
            if store is not None and store.lookaside:
                entry["sigstore"] = store.lookaside
            entry["type"] = _TRUST_NAMES[requirement["type"]]
            entries.append(entry)
    for transport, scopes in policy.transports.items():
        if transport == "docker":
            continue
        for scope, requirements in scopes.items():
            for requirement in requirements:
                entry = {"transport": transport}
                if scope:
                    entry.update(name=scope, repo_name=scope)
                entry["type"] = _TRUST_NAMES[requirement["type"]]
                entries.append(entry)
    return entries


def set_trust(policy_path: str | os.PathLike, scope: str, kind: str, pubkeys: list[str],
              registries_d: str | os.PathLike | None = None) -> None:
    """``podman image trust set``: the requirement of ``scope`` (``default``, or a registry or
    repository of the docker transport) becomes ``kind`` (accept, reject, signedBy, or newer
    podman's sigstoreSigned, which also turns on ``use-sigstore-attachments`` for the scope in
    registries.d, where those signatures are read). Each file is replaced whole (a temporary
    file, then a rename), never left half written."""
    path = Path(policy_path)
    if kind not in ("accept", "reject", "signedBy", "sigstoreSigned"):
        raise InvalidInputError(f"invalid trust type {kind!r}: accept, reject, signedBy or sigstoreSigned")
    signed = kind in ("signedBy", "sigstoreSigned")
    if signed and not pubkeys:
        raise InvalidInputError(f"at least one public key must be defined for type {kind!r}")
    if not signed and pubkeys:
        raise InvalidInputError(f"public keys are only for types 'signedBy' and 'sigstoreSigned', not {kind!r}")
    if kind == "sigstoreSigned" and scope == "default":
        raise InvalidInputError("sigstoreSigned needs a registry or repository scope (registries.d is set per scope)")
    data: dict
    try:
        data = json.loads(path.read_bytes()) if path.exists() else {"default": [{"type": "insecureAcceptAnything"}]}
    except ValueError as exc:
        raise InvalidInputError(f"policy {path} is not valid JSON") from exc
    Policy.from_json(data, str(path))  # (refuse to edit a policy that does not hold)
    if kind == "signedBy":
        requirements = [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key} for key in pubkeys]
    elif kind == "sigstoreSigned":
        requirements = [{"type": "sigstoreSigned", "keyPath": key} for key in pubkeys]
    else:
        requirements = [{"type": "insecureAcceptAnything" if kind == "accept" else "reject"}]
    if kind == "sigstoreSigned":
        from ketch.image.registries_d import enable_sigstore_attachments

        enable_sigstore_attachments(registries_d, scope)
    if scope == "default":
        data["default"] = requirements
    else:
        data.setdefault("transports", {}).setdefault("docker", {})[scope] = requirements
    _replace(path, json.dumps(data, indent=4))


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
