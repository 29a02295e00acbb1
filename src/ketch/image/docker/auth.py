"""Registry authentication: ``WWW-Authenticate`` challenges, Bearer tokens, Basic.

The distribution spec's token flow: a request answered 401 carries a
challenge naming a token server (realm), a service and a scope; the client
fetches a token from the realm (with Basic credentials when it has them) and
repeats the request with ``Authorization: Bearer``. Tokens are cached per
scope until they expire.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field

from ketch.image.credentials import Credentials

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower-case
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into its challenges."""
    challenges: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        match = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*").match(text, pos)
        if not match:
            break
        scheme = match.group(1).lower()
        pos = match.end()
        params: dict[str, str] = {}
        while pos < len(text):
            param = _PARAM_RE.match(text, pos)
            if not param:
                break
            # A bare word followed by "=" is a parameter; otherwise a new scheme starts.
            key, quoted, bare = param.groups()
            params[key.lower()] = (quoted.replace('\\"', '"') if quoted is not None else bare)
            pos = param.end()
        challenges.append(Challenge(scheme, params))
        while pos < len(text) and text[pos] in ", ":
            pos += 1
    return challenges


def basic_header(creds: Credentials) -> str:
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return f"Basic {token}"


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Bearer tokens per scope string, shared by the threads of one client."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def get(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
            if token and token.expires_at > time.monotonic():
                return token.value
            return None

    def put(self, scope: str, value: str, expires_in: float) -> None:
        with self._lock:
            # Refresh a little early so a token does not expire mid-request.
            self._tokens[scope] = _Token(value, time.monotonic() + max(expires_in - 5, 1))


def parse_token_response(body: bytes) -> tuple[str, float]:
    """Return (token, expires_in) from a token server's JSON answer."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("token response is not a JSON object")
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("token response has no token")
    expires_in = data.get("expires_in")
    # The spec's default lifetime is 60 seconds.
    if not isinstance(expires_in, (int, float)) or expires_in <= 0:
        expires_in = 60
    return token, float(expires_in)
