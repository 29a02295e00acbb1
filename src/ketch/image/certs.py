"""TLS settings per registry host from ``certs.d`` directories, as podman reads them.

For ``HOST[:PORT]`` the directory is ``--cert-dir`` when given, else the
first of ``/etc/containers/certs.d/HOST[:PORT]``,
``/etc/docker/certs.d/HOST[:PORT]`` (and for non-root users
``~/.config/containers/certs.d/HOST[:PORT]``) that exists. In it, ``*.crt``
files are extra CA certificates and each ``NAME.cert`` with ``NAME.key`` is a
client certificate.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from ketch.errors import InvalidInputError

SYSTEM_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


def cert_dir_for(host: str, explicit: str | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    candidates = []
    from ketch.userns import is_rootless

    if is_rootless():
        home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
        candidates.append(Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "certs.d")
    candidates += SYSTEM_DIRS
    for base in candidates:
        path = base / host
        if path.is_dir():
            return path
    return None


_SHARED_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def shared_context(verify: bool) -> ssl.SSLContext:
    """One TLS context per process for hosts without a certificate directory: verifying with the
    system's CAs, or not verifying at all. Left to urllib3, each new connection made a context of
    its own and loaded the system's CAs into it (≈ 20 ms of CPU per connection, and a pull opens
    several); a context is safe to share between connections and threads."""
    context = _SHARED_CONTEXTS.get(verify)
    if context is None:
        if verify:
            context = ssl.create_default_context()
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context = _SHARED_CONTEXTS.setdefault(verify, context)
    return context


def ssl_context_for(host: str, explicit_dir: str | None = None) -> ssl.SSLContext | None:
    """An SSL context with the host's extra CAs and client certificate, or None if it has none."""
    directory = cert_dir_for(host, explicit_dir)
    if directory is None:
        return None
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        raise InvalidInputError(f"reading certificate directory {directory}: {exc.strerror}") from exc
    context = ssl.create_default_context()
    for name in entries:
        path = directory / name
        try:
            if name.endswith(".crt"):
                context.load_verify_locations(cafile=str(path))
            elif name.endswith(".cert"):
                key = directory / (name[: -len(".cert")] + ".key")
                if not key.exists():
                    raise InvalidInputError(f"client certificate {path} has no matching key {key.name}")
                context.load_cert_chain(str(path), str(key))
            elif name.endswith(".key"):
                cert = directory / (name[: -len(".key")] + ".cert")
                if not cert.exists():
                    raise InvalidInputError(f"client key {path} has no matching certificate {cert.name}")
        except ssl.SSLError as exc:
            raise InvalidInputError(f"loading {path}: {exc.reason or exc}") from exc
    return context
