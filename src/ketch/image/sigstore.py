"""Sigstore keys as cosign and containers/image keep them: an ECDSA P-256 key pair, the private
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

from ketch.errors import InvalidInputError

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
