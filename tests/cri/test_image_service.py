"""ImageService against the real server and a real registry on 127.0.0.1: pulls (with the
kubelet's AuthConfig), status, list, remove, the image file system."""

from __future__ import annotations

import base64
import threading

import grpc
import pytest

import ketch.cri.api_pb2 as api

pytestmark = pytest.mark.registry


@pytest.fixture(autouse=True)
def busybox_back(cri):
    """The registry's busybox is the store's preloaded one: a test that removes it loads it again."""
    yield
    cri.load_busybox()


def _spec(name: str) -> api.ImageSpec:
    return api.ImageSpec(image=name)


def _status(cri, name: str) -> api.ImageStatusResponse:
    return cri.images.ImageStatus(api.ImageStatusRequest(image=_spec(name), verbose=True))


def test_pull_status_list_remove(cri, registry):
    cri.trust_registry(registry.host)
    name = f"{registry.host}/library/busybox:v1"
    ref = cri.images.PullImage(api.PullImageRequest(image=_spec(name))).image_ref
    assert len(ref) == 64
    answer = _status(cri, name)
    image = answer.image
    assert image.id == ref and name in image.repo_tags
    assert any(d.startswith(f"{registry.host}/library/busybox@sha256:") for d in image.repo_digests)
    assert image.size > 0
    assert image.uid.value == 0 and not image.username  # busybox runs as root (no User: uid 0)
    assert '"imageSpec"' in answer.info["info"]
    usage = cri.images.ImageFsInfo(api.ImageFsInfoRequest()).image_filesystems
    assert usage[0].used_bytes.value >= image.size // 2 and usage[0].fs_id.mountpoint == str(cri.root)
    # by id, by digest reference, and in the list (filtered too)
    assert _status(cri, ref).image.id == ref
    assert all(_status(cri, digest).image.id == ref for digest in image.repo_digests)
    listed = cri.images.ListImages(api.ListImagesRequest(filter=api.ImageFilter(image=_spec(name)))).images
    assert [i.id for i in listed] == [ref]
    assert ref in {i.id for i in cri.images.ListImages(api.ListImagesRequest()).images}
    # a second tag of the same image; RemoveImage by one tag removes the image and every tag
    other = f"{registry.host}/library/busybox:latest"
    assert cri.images.PullImage(api.PullImageRequest(image=_spec(other))).image_ref == ref
    assert set(_status(cri, ref).image.repo_tags) >= {name, other}
    cri.images.RemoveImage(api.RemoveImageRequest(image=_spec(name)))
    assert not _status(cri, other).HasField("image")
    assert not _status(cri, ref).HasField("image")
    cri.images.RemoveImage(api.RemoveImageRequest(image=_spec(name)))  # removed already: no error
    usage = cri.images.ImageFsInfo(api.ImageFsInfoRequest()).image_filesystems
    assert usage[0].used_bytes.value == 0  # (no image left)


def test_pull_errors(cri, registry):
    cri.trust_registry(registry.host)
    with pytest.raises(grpc.RpcError) as caught:
        cri.images.PullImage(api.PullImageRequest(image=_spec(f"{registry.host}/library/no-such-image:1")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        cri.images.PullImage(api.PullImageRequest(image=_spec("")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pull_with_the_kubelets_credentials(cri, basic_registry):
    cri.trust_registry(basic_registry.host)
    name = f"{basic_registry.host}/private/busybox:latest"
    with pytest.raises(grpc.RpcError) as caught:
        cri.images.PullImage(api.PullImageRequest(image=_spec(name)))
    assert caught.value.code() == grpc.StatusCode.UNKNOWN and "auth" in caught.value.details().lower()
    wrong = api.AuthConfig(username="alice", password="queen-of-hearts")
    with pytest.raises(grpc.RpcError):
        cri.images.PullImage(api.PullImageRequest(image=_spec(name), auth=wrong))
    encoded = api.AuthConfig(auth=base64.b64encode(b"alice:wonderland").decode())
    ref = cri.images.PullImage(api.PullImageRequest(image=_spec(name), auth=encoded)).image_ref
    cri.images.RemoveImage(api.RemoveImageRequest(image=_spec(ref)))
    plain = api.AuthConfig(username="alice", password="wonderland", server_address=basic_registry.host)
    assert cri.images.PullImage(api.PullImageRequest(image=_spec(name), auth=plain)).image_ref == ref
    cri.images.RemoveImage(api.RemoveImageRequest(image=_spec(ref)))


def test_pull_with_an_identity_token(cri, token_registry):
    tokens = token_registry.extra["tokens"]
    tokens.refresh_tokens["refresh-for-alice"] = "alice"
    cri.trust_registry(token_registry.host)
    name = f"{token_registry.host}/private/busybox:latest"
    wrong = api.AuthConfig(identity_token="not-a-token", server_address=token_registry.host)
    with pytest.raises(grpc.RpcError):
        cri.images.PullImage(api.PullImageRequest(image=_spec(name), auth=wrong))
    right = api.AuthConfig(identity_token="refresh-for-alice", server_address=token_registry.host)
    ref = cri.images.PullImage(api.PullImageRequest(image=_spec(name), auth=right)).image_ref
    assert any(r.get("form", {}).get("refresh_token") == ["refresh-for-alice"] for r in tokens.requests)
    cri.images.RemoveImage(api.RemoveImageRequest(image=_spec(ref)))


def test_pulls_of_one_image_at_once_unpack_it_once(cri):
    """Three pulls of one image at once, one of them stalled half-way through the layer: one pull
    unpacks the layer while the others wait for it (never a second unpack in the store's staging
    area), and all end with the same image."""
    from tests.cri.helpers import random_layer, wait_for
    from tests.support.fakeregistry import FakeRegistry, serve

    layer, diff_id = random_layer(2_000_000)
    fake = FakeRegistry()
    fake.add_image("shared", "latest", [layer], config={
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    digest = next(d for d, blob in fake.blobs.items() if blob == layer)
    release, first = threading.Event(), threading.Event()

    def stall_first(handler, info):
        if info["path"].endswith(digest) and not first.is_set():
            first.set()
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(layer)))
            handler.end_headers()
            handler.wfile.write(layer[:1_000_000])
            handler.wfile.flush()
            release.wait(30)
            handler.wfile.write(layer[1_000_000:])
            return True
        return False

    fake.behaviours.append(stall_first)
    staging = cri.root / "staging"
    with serve(fake):
        cri.trust_registry(fake.host)
        name = f"{fake.host}/shared:latest"
        futures = [cri.images.PullImage.future(api.PullImageRequest(image=_spec(name))) for _ in range(3)]
        try:
            assert first.wait(30)
            # every pull has asked for the layer
            assert wait_for(lambda: fake.count("GET", digest) == 3 or all(f.done() for f in futures), timeout=30)

            def unpacking() -> list[str]:
                return [e.name for e in staging.iterdir() if e.name.startswith("layer-") and e.suffix != ".lock"]

            # Whichever pull takes the layer's lock first unpacks it (the stalled one, or one whose
            # download was not stalled); the others wait and then use it: never two at once.
            seen = [len(unpacking()) for _ in range(200)]
            assert max(seen) <= 1, seen
        finally:
            release.set()
        refs = {f.result(timeout=60).image_ref for f in futures}
    assert len(refs) == 1
    cri.images.RemoveImage(api.RemoveImageRequest(image=_spec(name)))
