"""Verification of simple signatures against a trust policy's ``signedBy`` requirement, as
containers/image does it: the OpenPGP signature must be good and made by one of the
requirement's keys, its payload must be an "atomic container signature" naming the manifest's
digest, and the identity it names must match the image as ``signedIdentity`` says.

GnuPG does the cryptography (the ``gpg`` program, as for signing): the requirement's keys are
imported into a GnuPG home of ketch's own, made for those keys and removed at exit — never the
user's keyring, so a key the user trusts for mail does not become a key that admits images.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ketch.errors import InvalidInputError, PolicyDeniedError
from ketch.oci import Digest


class GPGKeyring:
    """A private GnuPG home holding some public keys, to verify signatures with; removed when the
    ``with`` block ends (not at exit: commands that end with ``os._exit`` run no exit handlers)."""

    def __init__(self, keys: list[bytes]) -> None:
        self.home = tempfile.mkdtemp(prefix="ketch-gpg-")
        try:
            self._import(keys)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> GPGKeyring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def _import(self, keys: list[bytes]) -> None:
        self.fingerprints: set[str] = set()
        for key in keys:
            result = _gpg(self.home, ["--import", "--import-options", "import-show", "--with-colons"], key)
            imported = {line.split(":")[9] for line in result.stdout.decode(errors="replace").splitlines()
                        if line.startswith("fpr:")}
            # (gpg also exits 2 when it merely cannot reach an agent, which importing public keys
            # does not need: under a long TMPDIR its socket path is too long. The keys it shows
            # as imported are what counts.)
            if result.returncode != 0 and not imported:
                raise InvalidInputError(f"trust policy: a GPG key does not import: {_last_line(result.stderr)}")
            self.fingerprints |= imported
        if not self.fingerprints:
            raise InvalidInputError("trust policy: signedBy names no usable GPG key")

    def verify(self, signature: bytes) -> tuple[bytes, str]:
        """The signed payload and the signing key's fingerprint; PolicyDeniedError if the
        signature is not good (bad, expired or revoked key, a key not in this keyring)."""
        payload, fingerprints = gpg_verify(signature, self.home)
        if not fingerprints & self.fingerprints:
            raise PolicyDeniedError("the signature is made by a key the policy does not trust")
        return payload, sorted(fingerprints)[0]


def _gpg(home: str | None, args: list[str], data: bytes) -> subprocess.CompletedProcess:
    where = ["--homedir", home, "--no-autostart", "--no-permission-warning"] if home else []
    try:
        return subprocess.run(["gpg", *where, "--batch", "--no-tty", *args], input=data, capture_output=True,
                              timeout=60)
    except FileNotFoundError as exc:
        raise InvalidInputError("verifying signatures needs GnuPG: the gpg program is not installed") from exc


def gpg_verify(signature: bytes, home: str | None = None) -> tuple[bytes, set[str]]:
    """Verify an OpenPGP signed message with the keys of GnuPG home ``home`` (the user's when
    None): the payload, and the signing key's fingerprints (its own and its primary key's)."""
    with tempfile.TemporaryDirectory(prefix="ketch-gpg-status-") as scratch:
        status_path = os.path.join(scratch, "status")
        result = _gpg(home, ["--trust-model", "always", "--status-file", status_path, "--decrypt"], signature)
        status = Path(status_path).read_text(errors="replace") if os.path.exists(status_path) else ""
    words = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    kinds = {w[0] for w in words if w}
    for bad, why in (("EXPKEYSIG", "made by an expired key"), ("REVKEYSIG", "made by a revoked key"),
                     ("EXPSIG", "expired"), ("BADSIG", "not valid: the signed data was changed"),
                     ("NO_PUBKEY", "made by a key the policy does not trust"), ("ERRSIG", "not verifiable")):
        if bad in kinds:
            raise PolicyDeniedError(f"the signature is {why}")
    valid = [w for w in words if w and w[0] == "VALIDSIG" and len(w) > 1]
    if result.returncode != 0 or "GOODSIG" not in kinds or not valid:
        raise PolicyDeniedError(f"the signature is not a valid OpenPGP signed message "
                                f"({_last_line(result.stderr) or 'no good signature'})")
    return result.stdout, {valid[0][1], valid[0][-1]}


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def keyring_for(requirement: dict, policy_dir: Path | None) -> GPGKeyring:
    """The keys of a ``signedBy`` requirement (``keyPath``, ``keyPaths`` or ``keyData``)."""
    if requirement.get("keyType", "GPGKeys") != "GPGKeys":
        raise InvalidInputError(f"trust policy: signedBy keyType {requirement.get('keyType')!r} is not supported "
                                "(GPGKeys is)")
    given = [name for name in ("keyPath", "keyPaths", "keyData") if name in requirement]
    if len(given) != 1:
        raise InvalidInputError("trust policy: signedBy needs exactly one of keyPath, keyPaths and keyData")
    keys: list[bytes] = []
    try:
        if "keyData" in requirement:
            keys.append(base64.b64decode(requirement["keyData"], validate=True))
        else:
            paths = [requirement["keyPath"]] if "keyPath" in requirement else list(requirement["keyPaths"])
            for path in paths:
                full = Path(path) if os.path.isabs(path) or policy_dir is None else policy_dir / path
                keys.append(full.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"trust policy: signedBy keys do not read: {exc}") from exc
    return GPGKeyring(keys)


# -- identities ---------------------------------------------------------------

def _parse(reference: str):
    from ketch.oci.reference import parse_reference

    return parse_reference(reference)


def identity_matches(signed_identity: dict | None, image_reference, signature_reference: str) -> bool:
    """Whether the identity a signature names is acceptable for the image (``image_reference``:
    the docker reference being pulled, or None for transports without one), per ``signedIdentity``."""
    rule = signed_identity or {"type": "matchRepoDigestOrExact"}
    kind = rule.get("type")
    try:
        signed = _parse(signature_reference)
    except Exception:  # noqa: BLE001 (an unparsable identity in a signature matches nothing)
        return False
    if kind == "exactReference":
        return str(signed) == str(_parse(rule["dockerReference"]))
    if kind == "exactRepository":
        return signed.name == _parse(rule["dockerRepository"]).name
    if image_reference is None:
        return False  # (the match* rules need the image's own docker reference)
    if kind == "remapIdentity":
        prefix, signed_prefix = rule["prefix"], rule["signedPrefix"]
        text = str(image_reference)
        if text == prefix or text.startswith(prefix.rstrip("/") + "/") or text.startswith(prefix + ":") \
                or text.startswith(prefix + "@"):
            image_reference = _parse(signed_prefix + text[len(prefix):])
        kind = "matchRepoDigestOrExact"
    if kind == "matchExact":
        return (image_reference.tag is not None or image_reference.digest is not None) and \
            str(signed) == str(image_reference)
    if kind == "matchRepoDigestOrExact":
        if image_reference.digest is not None:
            return signed.name == image_reference.name
        return image_reference.tag is not None and str(signed) == str(image_reference)
    if kind == "matchRepository":
        return signed.name == image_reference.name
    raise InvalidInputError(f"trust policy: unknown signedIdentity type {kind!r}")


def parse_payload(payload: bytes) -> tuple[Digest, str]:
    """The manifest digest and the identity an "atomic container signature" payload states."""
    try:
        data = json.loads(payload)
        critical = data["critical"]
        if critical["type"] != "atomic container signature":
            raise ValueError("not an atomic container signature")
        return Digest.parse(critical["image"]["docker-manifest-digest"]), critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyDeniedError(f"its payload is not a container signature ({exc})") from exc


def check_claims(requirement: dict, image_reference, manifest: bytes, signed_digest: Digest, identity: str) -> None:
    """What a verified payload claims must fit: this manifest's digest, and an identity the
    requirement's ``signedIdentity`` accepts (both kinds of signatures)."""
    if Digest.of(manifest, signed_digest.algorithm) != signed_digest:
        raise PolicyDeniedError(f"it signs another manifest ({signed_digest})")
    if not identity_matches(requirement.get("signedIdentity"), image_reference, identity):
        raise PolicyDeniedError(f"it names {identity}, which the policy's signedIdentity does not accept")


def check_simple_signing(requirement: dict, policy_dir: Path | None, image_reference, manifest: bytes,
                         signatures: list[bytes]) -> None:
    """Accept if one signature satisfies the ``signedBy`` requirement; else PolicyDeniedError
    saying why each failed."""
    from ketch.image.sigstore import is_sigstore

    simple = [blob for blob in signatures if not is_sigstore(blob)]
    if not simple:
        others = len(signatures)
        raise PolicyDeniedError("the image has no signatures, and the policy requires signedBy"
                                + (f" ({others} sigstore signatures, which signedBy does not take)" if others else ""))
    reasons = []
    with keyring_for(requirement, policy_dir) as keyring:
        for number, signature in enumerate(simple, 1):
            try:
                payload, _ = keyring.verify(signature)
                check_claims(requirement, image_reference, manifest, *parse_payload(payload))
                return
            except PolicyDeniedError as exc:
                reasons.append(f"signature {number}: {exc.message}")
    raise PolicyDeniedError("; ".join(reasons))
