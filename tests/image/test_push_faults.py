"""Pushing to a registry that fails: one clear error, and no manifest is written."""

import json

import pytest

from ketch import CopyOptions, SystemContext, copy_image
from ketch.errors import RegistryError
from ketch.image.docker import push as push_module
from ketch.image.policy import Policy
from tests.support.fakeregistry import FakeRegistry, serve

ANY = Policy.insecure_accept_anything()


@pytest.fixture
def fake():
    registry = FakeRegistry()
    with serve(registry):
        yield registry


def push(busybox_layout, fake, repo="app", **ctx):
    dest = SystemContext(tls_verify=False, retry_times=1, retry_delay=0.01, **ctx)
    return copy_image(f"oci:{busybox_layout}:latest", f"docker://{fake.host}/{repo}:latest",
                      CopyOptions(dest_ctx=dest, policy=ANY))


def manifests_written(fake):
    return [p for m, p, _ in fake.requests if m == "PUT" and "/manifests/" in p]


def test_push_to_fake_works(busybox_layout, fake, monkeypatch):
    push(busybox_layout, fake)
    assert manifests_written(fake) == ["/v2/app/manifests/latest"]
    assert fake.count("PATCH", "/blobs/uploads/") == 0  # both blobs are under 1 MiB: monolithic PUTs
    assert fake.count("PUT", r"/blobs/uploads/.*digest=") == 2
    monkeypatch.setattr(push_module, "MONOLITHIC_LIMIT", 0)
    fake.blobs.clear()  # the fake shares blobs across repositories; start empty again
    push(busybox_layout, fake, "streamed")
    assert fake.count("PATCH", "/v2/streamed/blobs/uploads/") == 2


def test_connection_dropped_mid_upload(busybox_layout, fake):
    def drop(handler, info):
        if handler.command in ("PATCH", "PUT") and "/blobs/uploads/" in info["path"]:
            handler.rfile.read(min(1000, int(handler.headers.get("Content-Length") or 1000)))
            handler.close_connection = True
            handler.connection.shutdown(2)
            return True
        return False

    fake.behaviours.append(drop)
    with pytest.raises(RegistryError, match="uploading blob"):
        push(busybox_layout, fake)
    assert manifests_written(fake) == []


def test_500_on_closing_put(busybox_layout, fake):
    fake.behaviours.append(lambda h, info: h.command == "PUT" and "/blobs/uploads/" in info["path"]
                           and (h.body() is not None) and (h.error(500, "UNKNOWN", "disk full") or True))
    with pytest.raises(RegistryError, match="disk full"):
        push(busybox_layout, fake)
    assert manifests_written(fake) == []


def test_refused_mount_falls_back_to_upload(busybox_layout, fake):
    push(busybox_layout, fake, "source")
    refused = []

    def refuse_mount(handler, info):
        if handler.command == "HEAD" and info["path"].startswith("/v2/target/"):
            handler.send(404)  # the target repository has none of the blobs yet
            return True
        if handler.command == "POST" and "mount=" in info["path"]:
            refused.append(info["path"])
            handler.body()
            handler.send(202, b"", {"Location": "/v2/target/blobs/uploads/abandoned"})
            return True
        return False

    fake.behaviours.append(refuse_mount)
    copy_image(f"docker://{fake.host}/source:latest", f"docker://{fake.host}/target:latest",
               CopyOptions(src_ctx=SystemContext(tls_verify=False), dest_ctx=SystemContext(tls_verify=False),
                           policy=ANY))
    assert len(refused) == 2  # config and layer: a mount was asked for each
    assert fake.count("PUT", r"^/v2/target/blobs/uploads/.*digest=") == 2  # then both were uploaded
    assert "/v2/target/manifests/latest" in manifests_written(fake)


def test_registry_that_rejects_the_manifest(busybox_layout, fake):
    fake.behaviours.append(lambda h, info: h.command == "PUT" and "/manifests/" in info["path"]
                           and (h.body() is not None) and (h.error(400, "MANIFEST_INVALID", "manifest invalid")
                                                           or True))
    with pytest.raises(RegistryError, match="manifest invalid"):
        push(busybox_layout, fake)
    assert json.loads(b"[]") == [] and "app:latest" not in fake.manifests
