"""Registry credentials, looked up in the files containers/image reads.

Order (first match wins), as containers/image and podman read them:

1. ``--authfile`` or ``REGISTRY_AUTH_FILE``, else
   ``${XDG_RUNTIME_DIR}/containers/auth.json`` (for root without
   XDG_RUNTIME_DIR: ``/run/containers/0/auth.json``);
2. ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``;
3. ``~/.docker/config.json``, then the legacy ``~/.dockercfg``.

Within a file, keys may name a registry or a repository namespace
(``host/ns/repo``); the most specific key wins. Credential helpers
(``credHelpers``, ``credsStore``) are not supported and say so.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ketch.errors import InvalidInputError, UnsupportedError


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token, used instead of a password

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token)


def default_auth_file() -> Path:
    """Where podman writes auth.json for the current user."""
    from ketch.userns import host_uid, is_rootless, runtime_dir

    given = os.environ.get("XDG_RUNTIME_DIR")
    if given:
        return Path(given) / "containers" / "auth.json"
    if is_rootless():  # (the user's private run directory; never root's /run/containers/0 from inside)
        return runtime_dir() / "containers" / "auth.json"
    return Path(f"/run/containers/{host_uid()}/auth.json")


def auth_file_paths(authfile: str | None = None) -> list[tuple[Path, bool]]:
    """Candidate files in lookup order, each with a flag "legacy .dockercfg format"."""
    explicit = authfile or os.environ.get("REGISTRY_AUTH_FILE")
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    paths = [
        (Path(explicit) if explicit else default_auth_file(), False),
        (config_home / "containers" / "auth.json", False),
        (home / ".docker" / "config.json", False),
        (home / ".dockercfg", True),
    ]
    seen: set[Path] = set()
    unique = []
    for path, legacy in paths:
        if path not in seen:
            seen.add(path)
            unique.append((path, legacy))
    return unique


def _normalize_key(key: str) -> str:
    """Docker writes keys like ``https://index.docker.io/v1/``; strip to a host/path."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            key = key.split("/", 1)[0]  # a URL key names a registry, never a repository
            break
    if key in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return key.rstrip("/")


def _decode(entry: dict, path: Path, key: str) -> Credentials:
    if not isinstance(entry, dict):
        raise InvalidInputError(f"{path}: entry for {key!r} is not an object")
    token = entry.get("identitytoken") or ""
    encoded = entry.get("auth") or ""
    if not encoded:
        return Credentials(identity_token=token)
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: the auth entry for {key!r} is not valid base64") from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidInputError(f"{path}: the auth entry for {key!r} has no ':' between user and password")
    return Credentials(user, password, token)


def _candidate_keys(registry: str, repository: str | None) -> list[str]:
    keys = []
    if repository:
        parts = repository.split("/")
        for i in range(len(parts), 0, -1):
            keys.append(registry + "/" + "/".join(parts[:i]))
    keys.append(registry)
    return keys


def _read_file(path: Path, legacy: bool) -> dict | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInputError(f"reading auth file {path}: {exc.strerror}") from exc
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f"auth file {path} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"auth file {path} is not a JSON object")
    if legacy:
        return {"auths": data}
    return data


def lookup_credentials(registry: str, repository: str | None = None, authfile: str | None = None) -> Credentials:
    """Find credentials for ``registry`` (and optionally a repository path in it)."""
    for path, legacy in auth_file_paths(authfile):
        data = _read_file(path, legacy)
        if data is None:
            continue
        auths = data.get("auths") or {}
        if not isinstance(auths, dict):
            raise InvalidInputError(f"auth file {path}: auths is not an object")
        normalized = {_normalize_key(k): (k, v) for k, v in auths.items()}
        for key in _candidate_keys(registry, repository):
            if key in normalized:
                original, entry = normalized[key]
                creds = _decode(entry, path, original)
                if creds:
                    return creds
        helpers = data.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for key, helper in helpers.items():
                if _normalize_key(key) == registry:
                    raise UnsupportedError(
                        f"credential helper {helper!r} for {registry} (in {path}) is not supported; "
                        f"use an auth.json entry or --creds"
                    )
        store = data.get("credsStore")
        if store:
            raise UnsupportedError(
                f"credential store {store!r} (credsStore in {path}) is not supported; "
                f"use an auth.json entry or --creds"
            )
    return Credentials()
