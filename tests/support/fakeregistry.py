"""A small, deliberately unreliable registry for bad-input tests.

It serves manifests and blobs from memory on 127.0.0.1 and can be told to
lie: wrong bytes, truncated streams, wrong Content-Length, 429/500 answers,
redirects, paginated tag lists. Real registries are tested with
``docker-registry``; this one exists for what a real one never does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Behaviour = Callable[["Handler", dict], bool]  # returns True when it answered the request


@dataclass
class FakeRegistry:
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # "repo:ref" -> (raw, content type)
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes
    tags: dict[str, list[str]] = field(default_factory=dict)
    behaviours: list[Behaviour] = field(default_factory=list)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    host: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    uploads: dict[str, bytearray] = field(default_factory=dict)

    def add_blob(self, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def add_image(self, repo: str, tag: str, layers: list[bytes], *, config: dict | None = None,
                  media_type: str = "application/vnd.oci.image.manifest.v1+json") -> bytes:
        config_bytes = json.dumps(config or {"architecture": "amd64", "os": "linux",
                                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        manifest = {
            "schemaVersion": 2, "mediaType": media_type,
            "config": dict(self.add_blob(config_bytes), mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(self.add_blob(data), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
                       for data in layers],
        }
        raw = json.dumps(manifest).encode()
        self.put_manifest(repo, tag, raw, media_type)
        return raw

    def put_manifest(self, repo: str, tag: str, raw: bytes, content_type: str) -> None:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.manifests[f"{repo}:{tag}"] = (raw, content_type)
        self.manifests[f"{repo}:{digest}"] = (raw, content_type)
        self.tags.setdefault(repo, [])
        if tag not in self.tags[repo]:
            self.tags[repo].append(tag)

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.search(pattern, p))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.send(status, body, {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def body(self) -> bytes:
        """The request body, plain or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        fake = self.server.fake
        with fake.lock:
            fake.requests.append((self.command, self.path, dict(self.headers)))
        info = {"path": self.path}
        for behaviour in list(fake.behaviours):
            if behaviour(self, info):
                return
        path, _, query = self.path.partition("?")
        if self.command in ("POST", "PATCH", "PUT", "DELETE"):
            return self._write(path, query)
        if path == "/v2/":
            return self.send(200, b"{}", {"Content-Type": "application/json"})
        match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path)
        if match:
            entry = fake.manifests.get(f"{match.group(1)}:{match.group(2)}")
            if entry is None:
                return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            raw, content_type = entry
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            return self.send(200, raw, {"Content-Type": content_type, "Docker-Content-Digest": digest})
        match = re.fullmatch(r"/v2/(.+)/blobs/([^/]+)", path)
        if match:
            data = fake.blobs.get(match.group(2))
            if data is None:
                return self.error(404, "BLOB_UNKNOWN", "blob unknown to registry")
            return self.send_blob(data)
        match = re.fullmatch(r"/v2/(.+)/tags/list", path)
        if match:
            repo = match.group(1)
            if repo not in fake.tags:
                return self.error(404, "NAME_UNKNOWN", "repository name not known to registry")
            return self.send(200, json.dumps({"name": repo, "tags": fake.tags[repo]}).encode(),
                             {"Content-Type": "application/json"})
        self.error(404, "NOT_FOUND", "not found")

    def _write(self, path: str, query: str) -> None:
        import urllib.parse
        import uuid

        fake = self.server.fake
        params = urllib.parse.parse_qs(query)
        match = re.fullmatch(r"/v2/(.+)/blobs/uploads/", path)
        if self.command == "POST" and match:
            self.body()
            mount = params.get("mount", [None])[0]
            if mount and mount in fake.blobs:
                return self.send(201, b"", {"Location": f"/v2/{match.group(1)}/blobs/{mount}"})
            upload = uuid.uuid4().hex
            fake.uploads[upload] = bytearray()
            return self.send(202, b"", {"Location": f"/v2/{match.group(1)}/blobs/uploads/{upload}?_state=x",
                                        "Range": "0-0"})
        match = re.fullmatch(r"/v2/(.+)/blobs/uploads/([0-9a-f]+)", path)
        if match and match.group(2) in fake.uploads:
            upload = fake.uploads[match.group(2)]
            if self.command == "DELETE":
                del fake.uploads[match.group(2)]
                return self.send(204)
            upload += self.body()
            if self.command == "PATCH":
                return self.send(202, b"", {"Location": path + "?_state=y", "Range": f"0-{len(upload) - 1}"})
            digest = params.get("digest", [""])[0]
            if "sha256:" + hashlib.sha256(upload).hexdigest() != digest:
                return self.error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            fake.blobs[digest] = bytes(upload)
            del fake.uploads[match.group(2)]
            return self.send(201, b"", {"Location": f"/v2/{match.group(1)}/blobs/{digest}",
                                        "Docker-Content-Digest": digest})
        match = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path)
        if match and self.command == "PUT":
            raw = self.body()
            fake.put_manifest(match.group(1), match.group(2), raw, self.headers.get("Content-Type", ""))
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            return self.send(201, b"", {"Docker-Content-Digest": digest})
        self.error(404, "NOT_FOUND", "not found")

    def send_blob(self, data: bytes) -> None:
        """Serve a blob honouring a ``Range: bytes=N-`` request."""
        range_header = self.headers.get("Range")
        if range_header:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            return self.send(206, data[start:], {"Content-Type": "application/octet-stream",
                                                 "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        self.send(200, data, {"Content-Type": "application/octet-stream"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeRegistry


@contextlib.contextmanager
def serve(fake: FakeRegistry) -> Iterator[FakeRegistry]:
    server = _Server(("127.0.0.1", 0), Handler)
    server.fake = fake
    fake.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-registry", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
