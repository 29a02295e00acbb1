"""A registry that lies or fails: every case is one clear error, and the
destination never gets anything that looks like a complete image."""

import gzip
import json
import os
import re

import pytest

from ketch import CopyOptions, SystemContext, copy_image, inspect_image
from ketch.errors import (
    AuthenticationError,
    DigestMismatchError,
    ImageFormatError,
    ManifestUnknownError,
    RegistryError,
    UnsupportedError,
)
from tests.conftest import run_ketch
from tests.support.fakeregistry import FakeRegistry, serve

LAYER = gzip.compress(os.urandom(300_000), compresslevel=1)


@pytest.fixture
def fake():
    registry = FakeRegistry()
    registry.add_image("app", "latest", [LAYER, b"second layer"])
    with serve(registry):
        yield registry


def ctx(retries=2):
    return SystemContext(tls_verify=False, retry_times=retries, retry_delay=0.01)


def copy(fake, dest, tag="latest", retries=2):
    return copy_image(f"docker://{fake.host}/app:{tag}", f"oci:{dest}:x",
                      CopyOptions(src_ctx=ctx(retries)))


def assert_nothing_complete(dest):
    assert not (dest / "index.json").exists()
    blobs = dest / "blobs" / "sha256"
    if blobs.exists():
        leftovers = [n for n in os.listdir(blobs) if n.startswith(".ketch-tmp")]
        assert leftovers == []


def layer_digest(fake):
    return next(d for d, data in fake.blobs.items() if data == LAYER)


def on_blob(fake, digest, action):
    def behaviour(handler, info):
        if handler.command == "GET" and info["path"].endswith(f"/blobs/{digest}"):
            return action(handler)
        return False
    fake.behaviours.append(behaviour)


def test_good_copy_works(fake, tmp_path):
    result = copy(fake, tmp_path / "l")
    assert result.blobs_copied == 3
    assert (tmp_path / "l" / "index.json").exists()


def test_blob_bytes_do_not_match_digest(fake, tmp_path):
    on_blob(fake, layer_digest(fake), lambda h: h.send(200, b"X" * len(LAYER)) or True)
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        copy(fake, tmp_path / "l")
    assert_nothing_complete(tmp_path / "l")
    assert not (tmp_path / "l" / "blobs" / "sha256" / layer_digest(fake).split(":")[1]).exists()


def truncate(handler, keep):
    data = handler.server.fake.blobs[handler.path.rsplit("/", 1)[1]]
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data[:keep])
    handler.wfile.flush()
    handler.close_connection = True
    return True


def test_truncated_stream_every_time_fails_cleanly(fake, tmp_path):
    on_blob(fake, layer_digest(fake), lambda h: truncate(h, 1000) if not h.headers.get("Range") else
            (h.send(206, b"") or True))
    with pytest.raises((RegistryError, DigestMismatchError)):
        copy(fake, tmp_path / "l")
    assert_nothing_complete(tmp_path / "l")


def test_truncated_once_is_resumed_with_range(fake, tmp_path):
    digest = layer_digest(fake)
    state = {"done": False}

    def once(handler):
        if state["done"]:
            return False
        state["done"] = True
        return truncate(handler, 100_000)

    on_blob(fake, digest, once)
    copy(fake, tmp_path / "l")
    ranges = [h.get("Range") for m, p, h in fake.requests if p.endswith(digest)]
    assert ranges == [None, "bytes=100000-"]
    assert (tmp_path / "l" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == LAYER


def test_resume_when_registry_ignores_range(fake, tmp_path):
    digest = layer_digest(fake)
    state = {"n": 0}

    def behaviour(handler):
        state["n"] += 1
        if state["n"] == 1:
            return truncate(handler, 50_000)
        handler.send(200, LAYER)  # the whole blob again, no 206
        return True

    on_blob(fake, digest, behaviour)
    copy(fake, tmp_path / "l")
    assert (tmp_path / "l" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == LAYER


def test_wrong_content_length(fake, tmp_path):
    on_blob(fake, layer_digest(fake), lambda h: h.send(200, LAYER + b"extra") or True)
    with pytest.raises(DigestMismatchError, match="announced"):
        copy(fake, tmp_path / "l")
    assert_nothing_complete(tmp_path / "l")


def test_manifest_not_json(fake, tmp_path):
    fake.put_manifest("app", "bad", b"<html>not a manifest</html>", "application/vnd.oci.image.manifest.v1+json")
    with pytest.raises(ImageFormatError, match="not valid JSON"):
        copy(fake, tmp_path / "l", "bad")
    assert_nothing_complete(tmp_path / "l")


def test_manifest_over_4_mib(fake, tmp_path):
    big = json.dumps({"schemaVersion": 2, "padding": "x" * (4 * 1024 * 1024)}).encode()
    fake.put_manifest("app", "big", big, "application/vnd.oci.image.manifest.v1+json")
    with pytest.raises(ImageFormatError, match="over the 4194304-byte limit"):
        copy(fake, tmp_path / "l", "big")

    def chunked(handler, info):  # no Content-Length: the limit must hold while reading
        if info["path"].endswith("/manifests/chunked"):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for _ in range(5):
                piece = b"x" * (1024 * 1024)
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            handler.wfile.write(b"0\r\n\r\n")
            return True
        return False

    fake.behaviours.append(chunked)
    with pytest.raises(ImageFormatError, match="limit"):
        copy(fake, tmp_path / "l", "chunked")
    assert_nothing_complete(tmp_path / "l")


def test_unknown_media_type_and_schema1(fake, tmp_path):
    fake.put_manifest("app", "odd", json.dumps({"schemaVersion": 2, "mediaType": "application/x-odd"}).encode(),
                      "application/x-odd")
    with pytest.raises(ImageFormatError, match="unsupported manifest media type 'application/x-odd'"):
        copy(fake, tmp_path / "l", "odd")
    fake.put_manifest("app", "old", json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(),
                      "application/vnd.docker.distribution.manifest.v1+prettyjws")
    with pytest.raises(UnsupportedError, match="schema 1"):
        copy(fake, tmp_path / "l", "old")
    assert_nothing_complete(tmp_path / "l")


def test_missing_tag(fake, tmp_path):
    with pytest.raises(ManifestUnknownError, match="reading manifest nope .* manifest unknown"):
        copy(fake, tmp_path / "l", "nope")


def test_lying_docker_content_digest(fake, tmp_path):
    def liar(handler, info):
        if info["path"].endswith("/manifests/latest"):
            raw, content_type = handler.server.fake.manifests["app:latest"]
            handler.send(200, raw, {"Content-Type": content_type, "Docker-Content-Digest": "sha256:" + "0" * 64})
            return True
        return False

    fake.behaviours.append(liar)
    with pytest.raises(DigestMismatchError, match="Docker-Content-Digest"):
        copy(fake, tmp_path / "l")


def test_manifest_by_digest_must_match(fake, tmp_path):
    digest = "sha256:" + "1" * 64
    fake.manifests[f"app:{digest}"] = fake.manifests["app:latest"]
    with pytest.raises(DigestMismatchError, match="does not match its digest"):
        copy_image(f"docker://{fake.host}/app@{digest}", f"oci:{tmp_path}/l", CopyOptions(src_ctx=ctx()))


def test_429_is_retried(fake, tmp_path):
    state = {"n": 0}

    def busy(handler, info):
        if "/manifests/" in info["path"] and state["n"] < 2:
            state["n"] += 1
            handler.send(429, b"slow down", {"Retry-After": "0"})
            return True
        return False

    fake.behaviours.append(busy)
    copy(fake, tmp_path / "l")
    assert state["n"] == 2


def test_500_everywhere_fails_after_retries(fake, tmp_path):
    fake.behaviours.append(lambda handler, info: "/manifests/" in info["path"] and
                           (handler.error(500, "UNKNOWN", "internal trouble") or True))
    with pytest.raises(RegistryError, match="internal trouble"):
        copy(fake, tmp_path / "l", retries=2)
    assert fake.count("GET", "/manifests/") == 3
    assert_nothing_complete(tmp_path / "l")


def test_connection_reset_is_retried(fake, tmp_path):
    state = {"n": 0}

    def reset(handler, info):
        if "/manifests/" in info["path"] and state["n"] == 0:
            state["n"] += 1
            handler.close_connection = True
            handler.connection.shutdown(2)
            return True
        return False

    fake.behaviours.append(reset)
    copy(fake, tmp_path / "l")
    assert state["n"] == 1


def test_blob_redirect_to_other_host_drops_credentials(fake, tmp_path):
    storage = FakeRegistry()
    storage.blobs = dict(fake.blobs)
    digest = layer_digest(fake)

    def storage_handler(handler, info):
        if info["path"].startswith("/storage/"):
            handler.send_blob(handler.server.fake.blobs[info["path"].rsplit("/", 1)[1]])
            return True
        return False

    storage.behaviours.append(storage_handler)
    with serve(storage):
        on_blob(fake, digest, lambda h: h.send(307, b"", {"Location": f"http://{storage.host}/storage/{digest}"})
                or True)
        copy_image(f"docker://{fake.host}/app:latest", f"oci:{tmp_path}/l",
                   CopyOptions(src_ctx=SystemContext(tls_verify=False, username="u", password="p")))
    assert (tmp_path / "l" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == LAYER
    assert all("Authorization" not in headers for _, _, headers in storage.requests)


def test_bearer_token_server_refuses(fake, tmp_path):
    def challenge(handler, info):
        if info["path"].startswith("/v2/") and not handler.headers.get("Authorization"):
            handler.send(401, b"{}", {"WWW-Authenticate":
                                      f'Bearer realm="http://{fake.host}/token",service="fake",scope="x"'})
            return True
        if info["path"].startswith("/token"):
            handler.send(401, b'{"details":"no"}')
            return True
        return False

    fake.behaviours.append(challenge)
    with pytest.raises(AuthenticationError, match="invalid username/password"):
        copy_image(f"docker://{fake.host}/app:latest", f"oci:{tmp_path}/l",
                   CopyOptions(src_ctx=SystemContext(tls_verify=False, username="u", password="p")))
    token_requests = [p for m, p, _ in fake.requests if p.startswith("/token")]
    assert token_requests and re.search(r"scope=repository%3Aapp%3Apull", token_requests[0])


def test_config_that_lies_is_caught_by_inspect(fake):
    manifest = json.loads(fake.manifests["app:latest"][0])
    fake.blobs[manifest["config"]["digest"]] = b'{"architecture":"evil"}'
    with pytest.raises(DigestMismatchError):
        inspect_image(f"docker://{fake.host}/app:latest", ctx())


def test_cli_errors_are_one_line(fake, tmp_path):
    on_blob(fake, layer_digest(fake), lambda h: h.send(200, b"X" * len(LAYER)) or True)
    result = run_ketch("image", "copy", "--src-tls-verify=false", f"docker://{fake.host}/app:latest",
                       f"oci:{tmp_path}/l", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert_nothing_complete(tmp_path / "l")


def test_anonymous_bearer_flow(fake, tmp_path):
    """A public registry that still wants a (anonymous) token, as Docker Hub does."""
    def bearer(handler, info):
        if info["path"].startswith("/token"):
            assert "Authorization" not in handler.headers
            handler.send(200, json.dumps({"access_token": "anon-token", "expires_in": 300}).encode())
            return True
        if info["path"].startswith("/v2/") and handler.headers.get("Authorization") != "Bearer anon-token":
            handler.send(401, b"{}", {"WWW-Authenticate":
                                      f'Bearer realm="http://{fake.host}/token",service="registry.fake"'})
            return True
        return False

    fake.behaviours.append(bearer)
    copy(fake, tmp_path / "l")
    tokens = [p for m, p, _ in fake.requests if p.startswith("/token")]
    assert len(tokens) == 1 and "service=registry.fake" in tokens[0] and "account" not in tokens[0]


def test_docker_manifest_list_platform_choice(fake, tmp_path):
    amd = fake.add_image("app", "amd", [b"amd layer"], config={"architecture": "amd64", "os": "linux"},
                         media_type="application/vnd.docker.distribution.manifest.v2+json")
    arm = fake.add_image("app", "arm", [b"arm layer"], config={"architecture": "arm", "os": "linux"},
                         media_type="application/vnd.docker.distribution.manifest.v2+json")
    import hashlib
    entries = [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw), "platform": platform}
               for raw, platform in [(arm, {"architecture": "arm", "os": "linux", "variant": "v7"}),
                                     (amd, {"architecture": "amd64", "os": "linux"})]]
    lst = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                      "manifests": entries}).encode()
    fake.put_manifest("app", "multi", lst, "application/vnd.docker.distribution.manifest.list.v2+json")
    result = copy_image(f"docker://{fake.host}/app:multi", f"dir:{tmp_path}/d", CopyOptions(src_ctx=ctx()))
    assert str(result.manifest_digest) == entries[1]["digest"]
    arm_ctx = ctx()
    arm_ctx.override_arch, arm_ctx.override_variant = "arm", "v7"
    result = copy_image(f"docker://{fake.host}/app:multi", f"dir:{tmp_path}/e", CopyOptions(src_ctx=arm_ctx))
    assert str(result.manifest_digest) == entries[0]["digest"]
    # Into an OCI layout the list and its instances become OCI; blobs keep their digests.
    copy_image(f"docker://{fake.host}/app:multi", f"oci:{tmp_path}/l:all",
               CopyOptions(src_ctx=ctx(), all_images=True))
    index = json.loads((tmp_path / "l" / "index.json").read_text())
    top = json.loads((tmp_path / "l" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    for entry in top["manifests"]:
        assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        instance = (tmp_path / "l" / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
        assert hashlib.sha256(instance).hexdigest() == entry["digest"][7:] and len(instance) == entry["size"]
        assert json.loads(instance)["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"


def test_identity_token_is_exchanged_with_a_post(fake, tmp_path, isolated_auth):
    """An auth.json entry with an identitytoken (docker's OAuth2 refresh token) is sent as a POST grant."""
    import base64
    import urllib.parse

    grants = []

    def oauth(handler, info):
        if info["path"].startswith("/token") and handler.command == "POST":
            form = urllib.parse.parse_qs(handler.body().decode())
            grants.append(form)
            handler.send(200, json.dumps({"access_token": "from-refresh"}).encode())
            return True
        if info["path"].startswith("/v2/") and handler.headers.get("Authorization") != "Bearer from-refresh":
            handler.send(401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="svc"'})
            return True
        return False

    fake.behaviours.append(oauth)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {fake.host: {"auth": base64.b64encode(b"<token>:").decode(),
                                                          "identitytoken": "refresh-me"}}}))
    copy_image(f"docker://{fake.host}/app:latest", f"oci:{tmp_path}/l",
               CopyOptions(src_ctx=SystemContext(tls_verify=False, authfile=str(authfile))))
    assert grants and grants[0]["grant_type"] == ["refresh_token"] and grants[0]["refresh_token"] == ["refresh-me"]
    assert grants[0]["scope"] == ["repository:app:pull"] and grants[0]["service"] == ["svc"]
