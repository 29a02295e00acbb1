"""The push side of the distribution spec: blob checks, mounts, uploads,
manifests and deletes, on top of :class:`RegistryClient`.

Uploads: a blob of known size up to ``MONOLITHIC_LIMIT`` goes in one
``PUT`` after the ``POST`` that opens the session; a larger one streams in
one ``PATCH`` (chunked transfer encoding, nothing buffered) or, with
``upload_chunk_size``, in ``PATCH`` chunks with ``Content-Range``; the
closing ``PUT ?digest=`` names the digest, which the registry checks. A
streamed body cannot be sent twice, so a broken upload is an error (the
registry keeps nothing of an upload that was never closed).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable, Iterator

from urllib3.exceptions import HTTPError as Urllib3Error

from ketch.errors import DigestMismatchError, RegistryError, RegistryUnreachableError, UnsupportedError
from ketch.image.docker.client import RegistryClient
from ketch.oci.digest import Digest

MONOLITHIC_LIMIT = 1 << 20
_CHUNK = 1 << 20
PUSH = "pull,push"


def _location(client: RegistryClient, response, what: str) -> str:
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(f"{what}: the registry sent no upload location")
    base = f"{client._base_url}/"
    return urllib.parse.urljoin(base, location)


def _with_query(url: str, **params: str) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode(params)


def blob_exists(client: RegistryClient, digest: Digest) -> bool:
    response = client.request("HEAD", f"/v2/{client.repository}/blobs/{digest}", actions=PUSH, preload=True)
    if response.status == 200:
        return True
    if response.status == 404:
        return False
    client._raise_for_status(response, f"checking blob {digest} in {client.host}/{client.repository}")
    return False


def mount_blob(client: RegistryClient, digest: Digest, from_repository: str) -> bool:
    """Ask the registry to link a blob from another repository. False: not mounted
    (the registry answered 202 or refused; the caller uploads instead)."""
    path = f"/v2/{client.repository}/blobs/uploads/?" + urllib.parse.urlencode(
        {"mount": str(digest), "from": from_repository})
    response = client.request("POST", path, actions=PUSH, extra_scopes=(f"repository:{from_repository}:pull",),
                              preload=True)
    if response.status == 201:
        return True
    if response.status == 202:
        # The registry opened an upload session instead; close it, we upload afresh.
        location = response.headers.get("Location")
        if location:
            cancel = client.request("DELETE", _location(client, response, "mount"), actions=PUSH, preload=True)
            cancel.release_conn()
    return False


class _Hashing:
    """Counts and hashes what is read through it."""

    def __init__(self, stream, on_progress: Callable[[int], None] | None) -> None:
        self._stream = stream
        self._on_progress = on_progress
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, amount: int = _CHUNK) -> bytes:
        data = self._stream.read(amount)
        if data:
            self.hasher.update(data)
            self.size += len(data)
            if self._on_progress is not None:
                self._on_progress(len(data))
        return data

    def chunks(self) -> Iterator[bytes]:
        while data := self.read(_CHUNK):
            yield data


def upload_blob(client: RegistryClient, stream, digest: Digest | None, size: int | None,
                on_progress: Callable[[int], None] | None = None) -> tuple[Digest, int]:
    """Upload a blob; returns its digest and size (computed when ``digest`` is None)."""
    what = f"uploading blob to {client.host}/{client.repository}"
    response = client.request("POST", f"/v2/{client.repository}/blobs/uploads/", actions=PUSH, preload=True)
    if response.status != 202:
        client._raise_for_status(response, what)
        raise RegistryError(f"{what}: starting the upload answered HTTP {response.status}")
    location = _location(client, response, what)
    source = _Hashing(stream, on_progress)
    try:
        if digest is not None and size is not None and size <= MONOLITHIC_LIMIT:
            body = b"".join(source.chunks())
            final = _with_query(location, digest=str(digest))
            response = client.request("PUT", final, {"Content-Type": "application/octet-stream"}, body=body,
                                      actions=PUSH, preload=True)
        else:
            location = _patch(client, location, source, what)
            computed = Digest("sha256", source.hasher.hexdigest())
            if digest is not None and computed != digest:
                raise DigestMismatchError(f"{what}: content does not match {digest}")
            digest = digest or computed
            response = client.request("PUT", _with_query(location, digest=str(digest)),
                                      {"Content-Length": "0"}, body=b"", actions=PUSH, preload=True)
    except (Urllib3Error, OSError) as exc:
        raise RegistryError(f"{what}: connection broken during the upload ({exc})") from exc
    except RegistryUnreachableError as exc:
        raise RegistryError(f"{what}: {exc.message}") from exc
    if response.status != 201:
        client._raise_for_status(response, what)
        raise RegistryError(f"{what}: closing the upload answered HTTP {response.status}")
    return digest, source.size


def _patch(client: RegistryClient, location: str, source: _Hashing, what: str) -> str:
    chunk_size = client.ctx.upload_chunk_size
    if not chunk_size:
        response = client.request("PATCH", location, {"Content-Type": "application/octet-stream"},
                                  body=source.chunks(), actions=PUSH, preload=True)
        if response.status != 202:
            client._raise_for_status(response, what)
            raise RegistryError(f"{what}: PATCH answered HTTP {response.status}")
        return _location(client, response, what)
    offset = 0
    while True:
        data = source.read(chunk_size)
        if not data:
            return location
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{offset}-{offset + len(data) - 1}", "Content-Length": str(len(data))}
        response = client.request("PATCH", location, headers, body=data, actions=PUSH, preload=True)
        if response.status != 202:
            client._raise_for_status(response, what)
            raise RegistryError(f"{what}: PATCH answered HTTP {response.status}")
        location = _location(client, response, what)
        offset += len(data)


def put_manifest(client: RegistryClient, reference: str, raw: bytes, media_type: str) -> Digest:
    what = f"writing manifest {reference} to {client.host}/{client.repository}"
    response = client.request("PUT", f"/v2/{client.repository}/manifests/{reference}",
                              {"Content-Type": media_type}, body=raw, actions=PUSH, preload=True)
    if response.status not in (200, 201, 202):
        client._raise_for_status(response, what)
        raise RegistryError(f"{what}: HTTP {response.status}")
    expected = Digest.of(raw)
    announced = response.headers.get("Docker-Content-Digest")
    if announced and announced != str(expected) and announced.startswith("sha256:"):
        raise DigestMismatchError(f"{what}: the registry stored {announced}, expected {expected}")
    return expected


def resolve_digest(client: RegistryClient, reference: str) -> Digest:
    """The digest of the manifest a tag points at."""
    if ":" in reference:
        return Digest.parse(reference)
    raw, _ = client.get_manifest(reference)
    return Digest.of(raw)


def delete_manifest(client: RegistryClient, digest: Digest) -> None:
    what = f"deleting manifest {digest} from {client.host}/{client.repository}"
    response = client.request("DELETE", f"/v2/{client.repository}/manifests/{digest}", actions="*",
                              preload=True)
    if response.status == 405:
        raise UnsupportedError(f"{what}: the registry does not allow deletes (HTTP 405)")
    if response.status not in (200, 202):
        client._raise_for_status(response, what)
        raise RegistryError(f"{what}: HTTP {response.status}")
