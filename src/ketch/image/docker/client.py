"""A client for one registry speaking the OCI distribution spec (pull side).

Built on urllib3: its connection pools are thread-safe, so the copy engine
shares one client between the threads that download blobs in parallel.
Every request goes through :meth:`RegistryClient.request`, which adds
authentication, follows redirects and retries what is worth retrying.
"""

from __future__ import annotations

import errno
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, SSLError

from ketch.errors import (
    AuthenticationError,
    BlobUnknownError,
    DigestMismatchError,
    ImageFormatError,
    InvalidInputError,
    ManifestUnknownError,
    NotFoundError,
    RegistryError,
    RegistryUnreachableError,
)
from ketch.image.context import SystemContext
from ketch.image.credentials import Credentials, lookup_credentials
from ketch.image.docker.auth import Challenge, TokenCache, basic_header, parse_challenges, parse_token_response
from ketch.oci import mediatypes as mt
from ketch.oci.digest import Digest
from ketch.oci.manifest import MAX_MANIFEST_SIZE

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 30.0
_CHUNK = 1 << 20


def registry_words(code: str, message: str) -> str:
    """A registry's error as containers/image words it ("unauthorized: authentication required"),
    so that scripts that look for skopeo's and podman's messages find ours."""
    if code:
        return f"{code.lower().replace('_', ' ')}: {message}" if message else code.lower().replace("_", " ")
    return message


def _error_detail(body: bytes) -> tuple[str, str]:
    """The first (code, message) of a distribution-spec error body, if it has one."""
    try:
        data = json.loads(body)
        first = data["errors"][0]
        return str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""


def _find_ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = getattr(exc, "reason", None) if isinstance(getattr(exc, "reason", None), BaseException) \
            else (exc.__cause__ or exc.__context__)
    return None


def _connection_message(exc: BaseException) -> str:
    tls_error = _find_ssl_error(exc)
    if tls_error is not None:
        detail = getattr(tls_error, "verify_message", None) or tls_error.reason or str(tls_error)
        if isinstance(tls_error, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {detail}"
        return f"TLS handshake failed: {detail}"
    reason = getattr(exc, "reason", None) or exc
    cause = reason.__cause__ or reason.__context__ if isinstance(reason, BaseException) else None
    for candidate in (reason, cause):
        if isinstance(candidate, OSError) and candidate.errno == errno.ECONNREFUSED:
            return "connection refused"
    if isinstance(reason, NewConnectionError) and "Connection refused" in str(reason):
        return "connection refused"
    return str(reason)


def _is_tls_error(exc: BaseException) -> bool:
    return _find_ssl_error(exc) is not None or isinstance(exc, SSLError)


class RegistryClient:
    """Talks to one registry host on behalf of one repository scope set.

    ``host`` is the API host (``registry-1.docker.io`` for docker.io).
    Thread-safe: the pool, the token cache and the ping are shared.
    """

    def __init__(self, host: str, ctx: SystemContext, *, repository: str | None = None,
                 credentials: Credentials | None = None, registry_name: str | None = None,
                 insecure: bool = False) -> None:
        from ketch.image.certs import shared_context, ssl_context_for

        self.host = host
        self.ctx = ctx
        self.repository = repository
        registry_name = registry_name or host
        if credentials is None:
            if ctx.no_creds:
                credentials = Credentials()
            elif ctx.username is not None:
                credentials = Credentials(ctx.username, ctx.password or "")
            else:
                credentials = lookup_credentials(registry_name, repository, ctx.authfile)
        self.credentials = credentials
        # An explicit --tls-verify wins over registries.conf's "insecure".
        self.verify_tls = ctx.tls_verify if ctx.tls_verify is not None else not insecure
        timeout = urllib3.Timeout(connect=min(ctx.timeout, 30.0), read=ctx.timeout)
        pool_args: dict = {}
        if self.verify_tls:
            pool_args["ssl_context"] = ssl_context_for(host, ctx.cert_dir) or shared_context(True)
        else:
            pool_args["cert_reqs"] = "CERT_NONE"
            pool_args["ssl_context"] = shared_context(False)
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            if ctx.cert_dir:  # a client certificate may still be wanted without verification
                context = ssl_context_for(host, ctx.cert_dir)
                if context is not None:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    pool_args = {"ssl_context": context}
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=16, retries=False, timeout=timeout,
            headers={"User-Agent": ctx.user_agent}, **pool_args,
        )
        self._tokens = TokenCache()
        self._ping_lock = threading.Lock()
        self._base_url: str | None = None
        self._challenge: Challenge | None = None

    # -- connection set-up --------------------------------------------------

    def close(self) -> None:
        self._pool.clear()

    def _schemes(self) -> list[str]:
        # As containers/image: plain HTTP only when the user turned TLS verification off.
        return ["https"] if self.verify_tls else ["https", "http"]

    def ping(self) -> None:
        """Find the scheme and the authentication the registry wants (``GET /v2/``)."""
        with self._ping_lock:
            if self._base_url is not None:
                return
            errors = []
            for scheme in self._schemes():
                url = f"{scheme}://{self.host}/v2/"
                try:
                    response = self._send_with_retries("GET", url, {}, preload=True)
                except RegistryUnreachableError as exc:
                    errors.append(f"{scheme}: {exc.message}")
                    continue
                if response.status in (200, 401):
                    self._base_url = f"{scheme}://{self.host}"
                    if response.status == 401:
                        self._challenge = self._pick_challenge(response.headers.get_all("WWW-Authenticate") or [])
                    return
                errors.append(f"{scheme}: /v2/ answered HTTP {response.status}; not a registry (distribution API v2)?")
            detail = "; ".join(errors)
            hint = "" if not self.verify_tls else \
                " (to skip TLS verification or use plain HTTP: --tls-verify=false)"
            raise RegistryUnreachableError(f"pinging registry {self.host}: {detail}{hint}")

    @staticmethod
    def _pick_challenge(headers: list[str]) -> Challenge | None:
        challenges = [c for h in headers for c in parse_challenges(h)]
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == scheme:
                    return challenge
        return None

    # -- authentication -----------------------------------------------------

    def _scope(self, actions: str = "pull", extra: tuple[str, ...] = ()) -> str:
        scopes = [f"repository:{self.repository}:{actions}"] if self.repository else []
        return " ".join(scopes + list(extra))

    def _auth_header(self, scope: str, challenge: Challenge | None, *, refresh: bool = False) -> str | None:
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if not self.credentials:
                raise AuthenticationError(f"authenticating to {self.host}: authentication required "
                                          f"(use --creds or log in first)")
            return basic_header(self.credentials)
        if challenge.scheme != "bearer":
            raise AuthenticationError(f"{self.host} asks for unsupported authentication {challenge.scheme!r}")
        if self.ctx.registry_token:  # --registry-token: sent as it is, never exchanged
            return f"Bearer {self.ctx.registry_token}"
        scope = challenge.params.get("scope", scope) if refresh else scope
        cache_key = f"{challenge.params.get('realm')}|{challenge.params.get('service')}|{scope}"
        token = None if refresh else self._tokens.get(cache_key)
        if token is None:
            token, expires_in = self._fetch_token(challenge, scope)
            self._tokens.put(cache_key, token, expires_in)
        return f"Bearer {token}"

    def _fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthenticationError(f"{self.host} sent a Bearer challenge without a realm")
        params = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        for one in scope.split(" "):
            if one:
                params.append(("scope", one))
        headers = {}
        if self.credentials.identity_token:
            # An OAuth2 refresh token is exchanged with a POST (docker's identity token flow).
            form = dict(params, grant_type="refresh_token", refresh_token=self.credentials.identity_token,
                        client_id="ketch")
            response = self._send_with_retries(
                "POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                body=urllib.parse.urlencode(form).encode(), preload=True)
        else:
            if self.credentials:
                headers["Authorization"] = basic_header(self.credentials)
                params.append(("account", self.credentials.username))
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(params)
            response = self._send_with_retries("GET", url, headers, preload=True)
        if response.status in (401, 403):
            what = "invalid username/password" if self.credentials else \
                "authentication required (use --creds or log in first)"
            raise AuthenticationError(f"authenticating to {self.host}: {what}", status=response.status)
        if response.status != 200:
            raise AuthenticationError(f"authenticating to {self.host}: token server answered HTTP {response.status}",
                                      status=response.status)
        try:
            return parse_token_response(response.data)
        except ValueError as exc:
            raise AuthenticationError(f"authenticating to {self.host}: bad token response ({exc})") from exc

    # -- requests -----------------------------------------------------------

    def _send_once(self, method: str, url: str, headers: dict[str, str], *, body=None,
                   preload: bool) -> urllib3.BaseHTTPResponse:
        try:
            if body is not None and not isinstance(body, bytes):
                return self._pool.urlopen(method, url, headers=headers, body=body, redirect=False,
                                          preload_content=preload, decode_content=False, chunked=True)
            return self._pool.request(method, url, headers=headers, body=body, redirect=False,
                                      preload_content=preload, decode_content=False)
        except (MaxRetryError, NewConnectionError, ProtocolError, SSLError, Urllib3Error, OSError) as exc:
            host = urllib.parse.urlsplit(url).netloc
            # A TLS failure does not heal by waiting; resets and time-outs may.
            raise RegistryUnreachableError(f"{method} {host}: {_connection_message(exc)}",
                                           retryable=not _is_tls_error(exc)) from exc

    def _send_with_retries(self, method: str, url: str, headers: dict[str, str], *, body: bytes | None = None,
                           preload: bool = False) -> urllib3.BaseHTTPResponse:
        """Send, following redirects and retrying 429/5xx and broken connections."""
        attempt = 0
        while True:
            try:
                response = self._follow_redirects(method, url, headers, body=body, preload=preload)
            except RegistryUnreachableError as exc:
                if attempt >= self.ctx.retry_times or not getattr(exc, "retryable", True):
                    raise
                delay = self.ctx.retry_delay * (2 ** attempt)
            else:
                if response.status not in RETRY_STATUSES or attempt >= self.ctx.retry_times:
                    return response
                delay = self.ctx.retry_delay * (2 ** attempt)
                retry_after = response.headers.get("Retry-After")
                if retry_after and retry_after.isdigit():
                    delay = min(float(retry_after), MAX_RETRY_AFTER)
                response.drain_conn()
                response.release_conn()
            attempt += 1
            log.debug("retrying %s %s in %.1fs (attempt %d)", method, url, delay, attempt)
            time.sleep(delay)

    def _follow_redirects(self, method: str, url: str, headers: dict[str, str], *, body: bytes | None,
                          preload: bool) -> urllib3.BaseHTTPResponse:
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send_once(method, url, headers, body=body, preload=preload)
            if response.status not in (301, 302, 303, 307, 308) or "Location" not in response.headers:
                return response
            location = urllib.parse.urljoin(url, response.headers["Location"])
            response.drain_conn()
            response.release_conn()
            if urllib.parse.urlsplit(location).netloc != origin:
                # Never send registry credentials to the storage backend a blob redirects to.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if response.status == 303:
                method, body = "GET", None
            url = location
        raise RegistryError(f"too many redirects fetching {url}")

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, *,
                preload: bool = False, actions: str = "pull", extra_scopes: tuple[str, ...] = (),
                body=None) -> urllib3.BaseHTTPResponse:
        """An authenticated request to ``/v2/...`` (or an absolute upload URL the
        registry handed out); 401 triggers one token refresh. A streamed
        ``body`` (not bytes) is sent once, never retried."""
        self.ping()
        headers = dict(headers or {})
        url = path if path.startswith(("http://", "https://")) else f"{self._base_url}{path}"
        scope = self._scope(actions, extra_scopes)
        auth = self._auth_header(scope, self._challenge)
        if auth:
            headers["Authorization"] = auth
        replayable = body is None or isinstance(body, bytes)
        if replayable:
            response = self._send_with_retries(method, url, headers, body=body, preload=preload)
        else:
            response = self._send_once(method, url, headers, body=body, preload=preload)
        if response.status == 401 and replayable:
            challenge = self._pick_challenge(response.headers.get_all("WWW-Authenticate") or [])
            response.drain_conn()
            response.release_conn()
            if challenge is None:
                raise AuthenticationError(f"{self.host} refused the request (HTTP 401) without a challenge",
                                          status=401)
            self._challenge = challenge
            headers["Authorization"] = self._auth_header(scope, challenge, refresh=True) or ""
            response = self._send_with_retries(method, url, headers, body=body, preload=preload)
            if response.status == 401:
                code, message = _error_detail(response.read(64 * 1024) or response.data or b"")
                response.drain_conn()
                what = registry_words(code, message) or \
                    ("invalid username/password" if self.credentials else "unauthorized: authentication required")
                raise AuthenticationError(f"{method} {path} on {self.host}: {what}", status=401)
        return response

    def _raise_for_status(self, response: urllib3.BaseHTTPResponse, what: str) -> None:
        if response.status < 400:
            return
        body = response.read(64 * 1024) or response.data  # works for preloaded and streamed
        response.release_conn()
        code, message = _error_detail(body or b"")
        detail = registry_words(code, message) or f"HTTP {response.status}"
        text = f"{what}: {detail}"
        if response.status in (401, 403) or code in ("UNAUTHORIZED", "DENIED"):
            raise AuthenticationError(text, status=response.status)
        if code == "MANIFEST_UNKNOWN" or (response.status == 404 and "manifest" in what):
            raise ManifestUnknownError(f"{what}: {registry_words(code, message) or 'manifest unknown'}")
        if code == "BLOB_UNKNOWN" or (response.status == 404 and "blob" in what):
            raise BlobUnknownError(f"{what}: {registry_words(code, message) or 'blob unknown'}")
        if code == "NAME_UNKNOWN" or response.status == 404:
            raise NotFoundError(f"{what}: {registry_words(code, message) or 'repository name not known to registry'}")
        raise RegistryError(text, status=response.status)

    # -- the API ------------------------------------------------------------

    def check_auth(self) -> None:
        """Prove the credentials work (``login``): a token for no scope, or Basic on /v2/."""
        self.ping()
        if self._challenge is None:
            return
        if self._challenge.scheme == "bearer":
            self._fetch_token(self._challenge, "")
            return
        response = self._send_with_retries("GET", f"{self._base_url}/v2/",
                                           {"Authorization": self._auth_header("", self._challenge) or ""},
                                           preload=True)
        if response.status in (401, 403):
            raise AuthenticationError(f"authenticating to {self.host}: invalid username/password", status=401)
        if response.status != 200:
            raise RegistryError(f"authenticating to {self.host}: HTTP {response.status}", status=response.status)

    def manifest_digest(self, reference: str) -> Digest:
        """The digest of a manifest, from a HEAD request (the registry's Docker-Content-Digest):
        nothing is downloaded. A registry that sends no digest costs a GET."""
        what = f"checking manifest {reference} in {self.host}/{self.repository}"
        response = self.request("HEAD", f"/v2/{self.repository}/manifests/{reference}",
                                {"Accept": mt.MANIFEST_ACCEPT})
        try:
            self._raise_for_status(response, what)
            announced = response.headers.get("Docker-Content-Digest")
        finally:
            response.release_conn()
        if announced:
            try:
                return Digest.parse(announced)
            except InvalidInputError:
                pass
        raw, _ = self.get_manifest(reference)
        return Digest.of(raw)

    def get_manifest(self, reference: str) -> tuple[bytes, str]:
        """Fetch a manifest by tag or digest; returns (raw bytes, media type).

        Fetched by digest, the bytes must match it; fetched by tag, they must
        match the Docker-Content-Digest header when the registry sends one.
        """
        what = f"reading manifest {reference} in {self.host}/{self.repository}"
        response = self.request("GET", f"/v2/{self.repository}/manifests/{reference}",
                                {"Accept": mt.MANIFEST_ACCEPT})
        try:
            self._raise_for_status(response, what)
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
                raise ImageFormatError(f"{what}: manifest is {length} bytes, over the {MAX_MANIFEST_SIZE}-byte limit")
            raw = self._read_limited(response, MAX_MANIFEST_SIZE, what)
        finally:
            response.release_conn()
        if ":" in reference:
            expected = Digest.parse(reference)
            if Digest.of(raw, expected.algorithm) != expected:
                raise DigestMismatchError(f"{what}: manifest does not match its digest {expected}")
        else:
            announced = response.headers.get("Docker-Content-Digest")
            if announced:
                try:
                    expected = Digest.parse(announced)
                except InvalidInputError:
                    expected = None
                if expected is not None and Digest.of(raw, expected.algorithm) != expected:
                    raise DigestMismatchError(
                        f"{what}: manifest does not match the Docker-Content-Digest {announced} the registry sent")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        return raw, media_type

    @staticmethod
    def _read_limited(response: urllib3.BaseHTTPResponse, limit: int, what: str) -> bytes:
        chunks = []
        total = 0
        try:
            while True:
                chunk = response.read(min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise ImageFormatError(f"{what}: manifest is over the {limit}-byte limit")
        except (ProtocolError, Urllib3Error, OSError) as exc:
            raise RegistryError(f"{what}: connection broken ({exc})") from exc
        return b"".join(chunks)

    def open_blob(self, digest: Digest, size: int | None) -> BlobStream:
        return BlobStream(self, digest, size)

    def get_blob_response(self, digest: Digest, offset: int = 0) -> urllib3.BaseHTTPResponse:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"fetching blob {digest} from {self.host}/{self.repository}"
        response = self.request("GET", f"/v2/{self.repository}/blobs/{digest}", headers)
        self._raise_for_status(response, what)
        return response

    def list_tags(self, page_size: int | None = None) -> list[str]:
        """All tags of the repository, following ``Link`` pagination."""
        path = f"/v2/{self.repository}/tags/list"
        return self._paged_list(path + (f"?n={page_size}" if page_size else ""), "tags",
                                f"listing tags of {self.host}/{self.repository}")

    def list_catalog(self, page_size: int | None = None) -> list[str]:
        """Every repository of the registry (``/v2/_catalog``, which not every registry serves:
        a refusal is the registry's error)."""
        return self._paged_list("/v2/_catalog" + (f"?n={page_size}" if page_size else ""), "repositories",
                                f"listing the repositories of {self.host}", ("registry:catalog:*",))

    def _paged_list(self, path: str, key: str, what: str, extra_scopes: tuple[str, ...] = ()) -> list[str]:
        items: list[str] = []
        for _ in range(10000):
            response = self.request("GET", path, preload=True, extra_scopes=extra_scopes)
            self._raise_for_status(response, what)
            try:
                data = json.loads(response.data)
                page = data.get(key) or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError(f"{what}: the registry sent a list that is not JSON") from exc
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: the registry sent a malformed list")
            items.extend(page)
            next_path = _next_link(response.headers.get("Link", ""))
            if not next_path:
                return items
            parsed = urllib.parse.urlsplit(next_path)
            path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        raise RegistryError(f"{what}: too many pages")


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return part[start + 1:end]
    return None


class BlobStream:
    """A blob download that resumes with ``Range`` when the connection breaks.

    Reads return raw (still compressed) bytes. A registry that ignores the
    Range header and sends the whole blob again is handled by skipping what
    was already delivered. Verification is the caller's job
    (:class:`~ketch.oci.VerifyingReader`).
    """

    def __init__(self, client: RegistryClient, digest: Digest, size: int | None) -> None:
        self._client = client
        self._digest = digest
        self._size = size
        self._offset = 0
        self._resumes = 0
        self._response = client.get_blob_response(digest)
        self._check_length(self._response, 0)

    def _check_length(self, response: urllib3.BaseHTTPResponse, offset: int) -> None:
        length = response.headers.get("Content-Length")
        if self._size is None or not length or not length.isdigit():
            return
        if response.status == 200 and int(length) != self._size:
            response.release_conn()
            raise DigestMismatchError(
                f"blob {self._digest}: the registry announced {length} bytes, the manifest says {self._size}")
        if response.status == 206 and int(length) != self._size - offset:
            response.release_conn()
            raise DigestMismatchError(
                f"blob {self._digest}: the registry announced {length} bytes from offset {offset}, "
                f"expected {self._size - offset}")

    @property
    def size(self) -> int | None:
        return self._size

    def read(self, amount: int = _CHUNK) -> bytes:
        if amount is None or amount < 0:
            amount = _CHUNK
        while True:
            try:
                data = self._response.read(amount)
            except (ProtocolError, Urllib3Error, OSError) as exc:
                self._resume(exc)
                continue
            if data:
                self._offset += len(data)
                return data
            # A clean EOF before the announced size is a truncated download too.
            if self._size is not None and self._offset < self._size:
                self._resume(EOFError("connection closed early"))
                continue
            return b""

    def _resume(self, exc: BaseException) -> None:
        self._response.release_conn()
        if self._resumes >= max(self._client.ctx.retry_times, 1):
            raise RegistryError(
                f"fetching blob {self._digest}: download broke off after {self._offset} bytes "
                f"and could not be resumed ({exc})") from None
        self._resumes += 1
        log.debug("resuming blob %s at %d after %s", self._digest, self._offset, exc)
        time.sleep(self._client.ctx.retry_delay * self._resumes)
        response = self._client.get_blob_response(self._digest, self._offset)
        if response.status == 206:
            self._check_length(response, self._offset)
        elif response.status == 200:
            self._check_length(response, 0)
            self._skip(response, self._offset)
        else:
            response.release_conn()
            raise RegistryError(f"fetching blob {self._digest}: resume answered HTTP {response.status}")
        self._response = response

    @staticmethod
    def _skip(response: urllib3.BaseHTTPResponse, count: int) -> None:
        while count > 0:
            data = response.read(min(count, _CHUNK))
            if not data:
                raise RegistryError("blob shorter on retry than before")
            count -= len(data)

    def close(self) -> None:
        self._response.release_conn()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk
