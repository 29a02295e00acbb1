"""``login`` and ``logout``: credentials in auth.json, written as podman writes them.

The file is ``--authfile`` / ``REGISTRY_AUTH_FILE`` or
``${XDG_RUNTIME_DIR}/containers/auth.json`` (``/run/containers/0/auth.json``
for root without XDG_RUNTIME_DIR); entries are ``{"auths": {KEY: {"auth":
base64(user:password)}}}``, KEY a registry or a repository namespace. The
file is replaced atomically, mode 0600.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from ketch.errors import InvalidInputError, NotFoundError
from ketch.image.context import SystemContext
from ketch.image.credentials import Credentials, default_auth_file
from ketch.image.layout import write_atomically
from ketch.oci.reference import DEFAULT_DOMAIN, parse_reference


def auth_file_for_writing(authfile: str | None = None) -> Path:
    explicit = authfile or os.environ.get("REGISTRY_AUTH_FILE")
    return Path(explicit) if explicit else default_auth_file()


def normalize_key(key: str) -> str:
    """``docker.io``, ``quay.io/ns``, ``localhost:5000``: a registry, optionally a namespace."""
    key = key.removeprefix("https://").removeprefix("http://").rstrip("/")
    if not key:
        raise InvalidInputError("login needs a registry")
    if key in ("index.docker.io", "registry-1.docker.io"):
        return DEFAULT_DOMAIN
    if "/" in key:
        ref = parse_reference(key)
        if ref.tag is not None or ref.digest is not None:
            raise InvalidInputError(f"{key!r}: log in to a registry or a repository, not a tag or digest")
        return ref.name
    return key


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes() or b"{}")
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidInputError(f"auth file {path} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"auth file {path} is not a JSON object")
    return data


def _save(path: Path, data: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data, indent="\t").encode() + b"\n")
    os.chmod(path, 0o600)


def login(registry: str, username: str, password: str, ctx: SystemContext | None = None,
          authfile: str | None = None, *, verify: bool = True) -> Path:
    """Check the credentials against the registry, then store them. Returns the file written."""
    ctx = ctx or SystemContext()
    key = normalize_key(registry)
    if verify:
        verify_credentials(key, username, password, ctx)
    elif not username:
        raise InvalidInputError("login needs a username")
    path = auth_file_for_writing(authfile)
    data = _load(path)
    auths = data.setdefault("auths", {})
    auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    _save(path, data)
    return path


def verify_credentials(registry: str, username: str, password: str, ctx: SystemContext | None = None, *,
                       insecure: bool | None = None) -> None:
    """Whether the registry takes these credentials (AuthenticationError if not). ``insecure``:
    plain HTTP allowed (None: as registries.conf says)."""
    from ketch.image.docker.client import RegistryClient
    from ketch.oci.reference import DOCKER_HUB_API_HOST

    if not username:
        raise InvalidInputError("login needs a username")
    ctx = ctx or SystemContext()
    host = normalize_key(registry).split("/", 1)[0]
    api_host = DOCKER_HUB_API_HOST if host == DEFAULT_DOMAIN else host
    if insecure is None:
        insecure = ctx.registries().push_endpoint(parse_reference(f"{host}/x"))[0].insecure
    client = RegistryClient(api_host, ctx, credentials=Credentials(username, password), insecure=insecure)
    try:
        client.check_auth()
    finally:
        client.close()


def logout(registry: str | None, authfile: str | None = None, *, all_registries: bool = False) -> Path:
    path = auth_file_for_writing(authfile)
    data = _load(path)
    auths = data.get("auths") or {}
    if all_registries:
        data["auths"] = {}
    else:
        key = normalize_key(registry or "")
        if key not in auths:
            raise NotFoundError(f"not logged into {key}")
        del auths[key]
    if path.exists() or all_registries:
        _save(path, data)
    return path
