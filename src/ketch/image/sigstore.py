"""Sigstore signatures as cosign and containers/image make them, with a key pair (no Fulcio
certificates, no Rekor log).

A signature is three things (containers/image's ``signature.Sigstore``): a MIME type
(:data:`MIME_TYPE`), a payload (the "cosign container image signature" JSON naming the manifest
digest and the image's identity) and annotations, :data:`SIGNATURE_ANNOTATION` holding the
base64 of the ECDSA (SHA-256) signature of the payload's bytes. In a registry they are the
layers of the OCI manifest tagged ``sha256-HEX.sig`` (the "attachment"); in ``dir:`` and in
lookasides they are kept as containers/image's blob: a zero byte, ``sigstore-json``, a newline,
then ``{"mimeType", "payload" (base64), "annotations"}``. Simple (GPG) signatures keep their raw
OpenPGP bytes in the same lists, so one ``list[bytes]`` carries both kinds through a copy.

Keys as cosign and containers/image keep them: an ECDSA P-256 key pair, the private
key encrypted with a passphrase.

The private key file is PEM (``ENCRYPTED SIGSTORE PRIVATE KEY``) around the JSON of
go-securesystemslib's ``encrypted`` package: the PKCS #8 key sealed with NaCl secretbox under a
key derived from the passphrase by scrypt (N=32768, r=8, p=1, a 32-byte salt, a 24-byte nonce);
the public key is a PEM ``PUBLIC KEY``. The cryptography is the libraries': ``cryptography``
for ECDSA and scrypt, PyNaCl for secretbox.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ketch.errors import InvalidInputError, PolicyDeniedError, UnsupportedError
from ketch.oci import Digest

MIME_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"
BLOB_PREFIX = b"\x00sigstore-json\n"
MAX_PAYLOAD_SIZE = 4 << 20

PRIVATE_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _pem(kind: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def generate_key_pair(passphrase: bytes) -> tuple[bytes, bytes]:
    """(the encrypted private key file, the public key file)."""
    import nacl.secret
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(_derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(pkcs8, nonce)
    document = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return _pem(PRIVATE_PEM_TYPES[0], json.dumps(document).encode()), _pem("PUBLIC KEY", public)


def load_private_key(data: bytes, passphrase: bytes):
    """The ECDSA private key of an encrypted sigstore key file (InvalidInputError for a file in
    another format or a wrong passphrase)."""
    import nacl.exceptions
    import nacl.secret
    from cryptography.hazmat.primitives import serialization

    text = data.decode("ascii", "replace")
    kind = next((k for k in PRIVATE_PEM_TYPES if f"-----BEGIN {k}-----" in text), None)
    if kind is None:
        raise InvalidInputError("not an encrypted sigstore private key (no ENCRYPTED SIGSTORE PRIVATE KEY block)")
    body = text.split(f"-----BEGIN {kind}-----", 1)[1].split(f"-----END {kind}-----", 1)[0]
    try:
        document = json.loads(base64.b64decode("".join(body.split())))
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ValueError(f"unsupported kdf {kdf['name']} or cipher {cipher['name']}")
        params = kdf["params"]
        secret = _derive(passphrase, base64.b64decode(kdf["salt"]), int(params["N"]), int(params["r"]),
                         int(params["p"]))
        pkcs8 = nacl.secret.SecretBox(secret).decrypt(base64.b64decode(document["ciphertext"]),
                                                      base64.b64decode(cipher["nonce"]))
    except nacl.exceptions.CryptoError as exc:
        raise InvalidInputError("the sigstore private key does not open with this passphrase") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"the sigstore private key file is malformed: {exc}") from exc
    return serialization.load_der_private_key(pkcs8, password=None)


# -- signatures ---------------------------------------------------------------

@dataclass
class SigstoreSignature:
    """One sigstore signature, untrusted until :func:`check_sigstore_signed` accepts it."""
    mime_type: str
    payload: bytes
    annotations: dict[str, str] = field(default_factory=dict)

    def blob(self) -> bytes:
        """containers/image's storage form (``signature-N`` in ``dir:`` and lookasides)."""
        return BLOB_PREFIX + json.dumps({"mimeType": self.mime_type,
                                         "payload": base64.b64encode(self.payload).decode(),
                                         "annotations": self.annotations}, separators=(",", ":")).encode()

    @classmethod
    def from_blob(cls, blob: bytes) -> SigstoreSignature:
        if not blob.startswith(BLOB_PREFIX):
            raise InvalidInputError("not a sigstore signature blob")
        try:
            data = json.loads(blob[len(BLOB_PREFIX):])
            annotations = data.get("annotations") or {}
            if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
                raise ValueError("annotations are not strings")
            return cls(str(data["mimeType"]), base64.b64decode(data["payload"], validate=True), annotations)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"a sigstore signature blob is malformed ({exc})") from exc


def is_sigstore(blob: bytes) -> bool:
    return blob.startswith(BLOB_PREFIX)


def attachment_tag(manifest_digest: str) -> str:
    """The tag of an image's signature attachment: ``sha256-HEX.sig``, as cosign names it."""
    algorithm, _, hex_digest = manifest_digest.partition(":")
    return f"{algorithm}-{hex_digest}.sig"


def sign(private_key, docker_reference: str, manifest_digest: str) -> SigstoreSignature:
    """Sign a manifest digest for an identity with an ECDSA key (as ``load_private_key`` gives)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from ketch.image.signing import payload

    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise UnsupportedError("sigstore signing takes an ECDSA private key")
    data = payload(docker_reference, manifest_digest, kind=PAYLOAD_TYPE)
    signature = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    return SigstoreSignature(MIME_TYPE, data, {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})


def sign_with_key_file(key_path: str | os.PathLike, passphrase: bytes, docker_reference: str,
                       manifest_digest: str) -> SigstoreSignature:
    try:
        data = Path(key_path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"reading the sigstore private key {key_path}: {exc.strerror}") from exc
    return sign(load_private_key(data, passphrase), docker_reference, manifest_digest)


def read_passphrase(path: str | os.PathLike | None) -> bytes:
    """A passphrase file's first line (as skopeo reads ``--sign-passphrase-file``); empty without one."""
    if path is None:
        return b""
    try:
        return Path(path).read_bytes().split(b"\n", 1)[0].rstrip(b"\r")
    except OSError as exc:
        raise InvalidInputError(f"reading the passphrase file {path}: {exc.strerror}") from exc


def parse_payload(data: bytes) -> tuple[Digest, str]:
    """The manifest digest and identity a cosign payload states (strictly: the exact fields)."""
    try:
        document = json.loads(data)
        if set(document) != {"critical", "optional"}:
            raise ValueError("the payload must have exactly critical and optional")
        critical = document["critical"]
        if set(critical) != {"type", "image", "identity"}:
            raise ValueError("critical must have exactly type, image and identity")
        if critical["type"] != PAYLOAD_TYPE:
            raise ValueError(f"unrecognized signature type {critical['type']!r}")
        if set(critical["image"]) != {"docker-manifest-digest"} or set(critical["identity"]) != {"docker-reference"}:
            raise ValueError("unexpected fields in image or identity")
        return Digest.parse(critical["image"]["docker-manifest-digest"]), str(critical["identity"]["docker-reference"])
    except (ValueError, KeyError, TypeError, AttributeError, InvalidInputError) as exc:
        raise PolicyDeniedError(f"its payload is not a cosign container image signature ({exc})") from exc


def load_public_keys(requirement: dict, policy_dir: Path | None) -> list:
    """The public keys of a ``sigstoreSigned`` requirement (``keyPath``, ``keyPaths`` or ``keyData``)."""
    from cryptography.hazmat.primitives import serialization

    for unsupported in ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyData", "pki"):
        if unsupported in requirement:
            raise UnsupportedError(f"trust policy: sigstoreSigned with {unsupported} is not supported "
                                   "(key pairs are: keyPath, keyPaths, keyData)")
    given = [name for name in ("keyPath", "keyPaths", "keyData") if name in requirement]
    if len(given) != 1:
        raise InvalidInputError("trust policy: sigstoreSigned needs exactly one of keyPath, keyPaths and keyData")
    try:
        if "keyData" in requirement:
            pems = [base64.b64decode(requirement["keyData"], validate=True)]
        else:
            paths = [requirement["keyPath"]] if "keyPath" in requirement else list(requirement["keyPaths"])
            pems = [(Path(p) if os.path.isabs(p) or policy_dir is None else policy_dir / p).read_bytes()
                    for p in paths]
        keys = [serialization.load_pem_public_key(pem) for pem in pems]
    except (OSError, ValueError, TypeError, UnsupportedError) as exc:
        raise InvalidInputError(f"trust policy: sigstoreSigned public keys do not load: {exc}") from exc
    if not keys:
        raise InvalidInputError("trust policy: sigstoreSigned names no public key")
    return keys


def _verified_by(keys: list, data: bytes, signature: bytes) -> bool:
    """Whether one of the keys made ``signature`` of ``data`` (SHA-256, as cosign signs)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    for key in keys:
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
            else:
                continue
            return True
        except InvalidSignature:
            continue
    return False


def check_sigstore_signed(requirement: dict, policy_dir: Path | None, image_reference, manifest: bytes,
                          signatures: list[bytes]) -> None:
    """Accept if one sigstore signature satisfies the ``sigstoreSigned`` requirement; else
    PolicyDeniedError saying why each failed (containers/image's rules: a good signature by one
    of the keys, over a payload naming this manifest's digest and an identity ``signedIdentity``
    accepts)."""
    from ketch.image.trust import check_claims

    keys = load_public_keys(requirement, policy_dir)
    candidates = [blob for blob in signatures if is_sigstore(blob)]
    if not candidates:
        others = len(signatures)
        raise PolicyDeniedError("a sigstore signature is required, but the image has none"
                                + (f" ({others} simple signatures)" if others else ""))
    reasons = []
    for number, blob in enumerate(candidates, 1):
        try:
            try:
                signature = SigstoreSignature.from_blob(blob)
            except InvalidInputError as exc:
                raise PolicyDeniedError(exc.message) from exc
            if signature.mime_type != MIME_TYPE:
                raise PolicyDeniedError(f"it is an attachment of type {signature.mime_type}, not a signature")
            encoded = signature.annotations.get(SIGNATURE_ANNOTATION)
            if encoded is None:
                raise PolicyDeniedError(f"it has no {SIGNATURE_ANNOTATION} annotation")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except ValueError as exc:
                raise PolicyDeniedError("its signature annotation is not base64") from exc
            if not _verified_by(keys, signature.payload, raw):
                raise PolicyDeniedError("the signature is not valid for the policy's keys (another key, or the "
                                        "payload was changed)")
            check_claims(requirement, image_reference, manifest, *parse_payload(signature.payload))
            return
        except PolicyDeniedError as exc:
            reasons.append(f"sigstore signature {number}: {exc.message}")
    raise PolicyDeniedError("; ".join(reasons))
