"""A token server for the distribution spec's Bearer flow, in front of a real
``docker-registry`` configured with ``auth: token``.

It signs RS256 JWTs with a key whose certificate is the registry's
``rootcertbundle``; the ``kid`` header is libtrust's key id, which is how
distribution finds the key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVICE = "ketch-test-registry"
ISSUER = "ketch-test-issuer"


def libtrust_key_id(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenServer:
    users: dict[str, str]  # user -> password
    anonymous_pull: bool = False
    host: str = ""
    cert_path: Path | None = None
    requests: list[dict] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # OAuth2 refresh token -> user (identity tokens)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = libtrust_key_id(self.key.public_key())

    def write_cert(self, path: Path) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ketch test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.cert_path = path

    def registry_auth_yaml(self) -> str:
        return ("auth:\n  token:\n"
                f"    realm: http://{self.host}/token\n"
                f"    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n"
                f"    rootcertbundle: {self.cert_path}\n")

    def issue(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        ts = self.server.tokens
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        ts.requests.append({"query": query, "authorization": self.headers.get("Authorization")})
        user = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if ts.users.get(name) != password:
                return self._send(401, {"details": "invalid username or password"})
            user = name
        elif not ts.anonymous_pull:
            return self._send(401, {"details": "authentication required"})
        scopes = query.get("scope", [])
        if not user:
            scopes = [s.replace(":push,pull", ":pull").replace(":pull,push", ":pull") for s in scopes]
        self._send(200, {"token": ts.issue(user, scopes), "expires_in": 300})

    def do_POST(self) -> None:
        """OAuth2: a refresh token (docker's identity token) for an access token."""
        ts = self.server.tokens
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        ts.requests.append({"form": form})
        if form.get("grant_type") != ["refresh_token"]:
            return self._send(400, {"details": "unsupported grant_type"})
        user = ts.refresh_tokens.get((form.get("refresh_token") or [""])[0])
        if user is None:
            return self._send(401, {"details": "invalid refresh token"})
        self._send(200, {"access_token": ts.issue(user, form.get("scope", [])), "expires_in": 300})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tokens: TokenServer


@contextlib.contextmanager
def serve(tokens: TokenServer) -> Iterator[TokenServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.tokens = tokens
    tokens.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tokens
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
