"""Image signatures, "simple signing" as containers/image makes them (``podman image sign``):
a JSON payload naming the image and its manifest digest, signed with the user's GnuPG key, kept
in a lookaside directory (``DIR/PATH@sha256=HEX/signature-N``, PATH the repository without its
registry: ``library/busybox``), where skopeo and podman
look for it.

GnuPG does the signing: the ``gpg`` program, as the user runs it (their keyring, their agent for
passphrases, ``$GNUPGHOME``), rather than a binding that would reimplement its configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from ketch.errors import InvalidInputError, KetchError, NotFoundError

PAYLOAD_TYPE = "atomic container signature"


class SigningError(KetchError):
    """GnuPG could not sign (no such key, no agent, no gpg)."""


def payload(docker_reference: str, manifest_digest: str, *, creator: str = "ketch",
            timestamp: int | None = None, kind: str = PAYLOAD_TYPE) -> bytes:
    """The signed content: containers/image's "atomic container signature" JSON (``kind``: the
    sigstore payload's "cosign container image signature" has the same fields)."""
    return json.dumps({
        "critical": {"identity": {"docker-reference": docker_reference},
                     "image": {"docker-manifest-digest": manifest_digest}, "type": kind},
        "optional": {"creator": creator, "timestamp": int(time.time()) if timestamp is None else timestamp},
    }, separators=(",", ":"), sort_keys=True).encode()


def gpg_sign(data: bytes, key: str, *, passphrase_file: str | None = None) -> bytes:
    """An OpenPGP signed message of ``data`` (not detached: the payload is inside); the key's
    passphrase from ``passphrase_file`` (else the user's agent asks, as for skopeo)."""
    secret = ["--pinentry-mode", "loopback", "--passphrase-file", passphrase_file] if passphrase_file else []
    try:
        result = subprocess.run(["gpg", "--batch", "--no-tty", *secret, "--local-user", key, "--sign"], input=data,
                                capture_output=True, timeout=120)
    except FileNotFoundError as exc:
        raise SigningError("signing needs GnuPG: the gpg program is not installed") from exc
    if result.returncode != 0:
        lines = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
        raise SigningError(f"signing with key {key!r}: {lines[-1] if lines else 'gpg failed'}")
    return result.stdout


def signature_path(directory: Path, repository: str, manifest_digest: str, index: int) -> Path:
    from ketch.image.registries_d import signature_url  # (the one lookaside layout)

    return Path(signature_url(str(directory), repository, manifest_digest, index))


def store_signature(directory: Path, repository: str, manifest_digest: str, signature: bytes) -> Path:
    """Write the signature as the next free ``signature-N`` of the image."""
    index = 1
    while signature_path(directory, repository, manifest_digest, index).exists():
        index += 1
    path = signature_path(directory, repository, manifest_digest, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(signature)
    os.replace(tmp, path)
    return path


def default_directory(repository: str, registries_d: str | None = None) -> Path:
    """Where signatures of a repository are staged: registries.d's ``lookaside-staging`` (or
    ``lookaside``) for it, which must be a file: URL, else the containers tools' default."""
    from ketch.image.registries_d import RegistriesD

    base = RegistriesD(registries_d).write_base(repository)
    if not base.startswith("file://"):
        raise InvalidInputError(f"registries.d stages signatures of {repository} at {base}: only a file:// "
                                "lookaside-staging can be written (or give --directory)")
    return Path(base[len("file://"):])


def sign_image(name: str, key: str, *, directory: str | None = None, all_instances: bool = False,
               ctx=None) -> list[Path]:
    """``podman image sign``: sign the manifest of a registry image (``docker://`` is implied);
    the signature files written."""
    from ketch.image import inspect as inspection
    from ketch.image.context import SystemContext
    from ketch.image.transports import parse_image_name
    from ketch.oci import Digest, Index, parse_manifest

    ctx = ctx or SystemContext()
    text = name if "://" in name or name.startswith(("docker:", "oci:", "dir:")) else f"docker://{name}"
    ref = parse_image_name(text)
    docker_ref = getattr(ref, "ref", None)
    if docker_ref is None:
        raise InvalidInputError(f"{name}: only docker:// images can be signed (the signature names a registry)")
    full = docker_ref.with_default_tag() if docker_ref.digest is None else docker_ref
    raw = inspection.inspect_raw(text, ctx)
    digests = [str(Digest.of(raw))]
    manifest = parse_manifest(raw)
    if isinstance(manifest, Index) and all_instances:
        digests += [str(entry.digest) for entry in manifest.manifests]
    where = Path(directory) if directory else default_directory(full.name, ctx.registries_d)
    written = []
    for digest in digests:
        signature = gpg_sign(payload(str(full), digest), key)
        # the repository's path within its registry: the lookaside layout containers/image reads
        written.append(store_signature(where, full.path, digest, signature))
    if not written:
        raise NotFoundError(f"{name}: nothing to sign")
    return written
