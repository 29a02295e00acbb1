"""Pushing to a real registry (docker-registry), read back by skopeo and ketch."""

import gzip
import hashlib
import json
import subprocess

import pytest
import zstandard

from ketch import CopyOptions, SystemContext, copy_image
from ketch.errors import ManifestUnknownError, UnsupportedError
from ketch.image.docker import push
from ketch.image.policy import Policy
from tests.conftest import run_ketch

pytestmark = [pytest.mark.registry, pytest.mark.peer]
ANY = Policy.insecure_accept_anything()


def skopeo(*args):
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def layout_digest(layout):
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


def options(**kwargs):
    return CopyOptions(src_ctx=SystemContext(tls_verify=False), dest_ctx=SystemContext(tls_verify=False),
                       policy=ANY, **kwargs)


def test_push_preserves_digest_and_skopeo_reads_it(registry, busybox_layout, tmp_path):
    url = registry.url("pushed/busybox", "p1")
    run_ketch("image", "copy", "--dest-tls-verify=false", "--digestfile", str(tmp_path / "d"),
              f"oci:{busybox_layout}:latest", url)
    digest = layout_digest(busybox_layout)
    assert (tmp_path / "d").read_text() == digest
    assert json.loads(skopeo("inspect", "--tls-verify=false", url))["Digest"] == digest
    skopeo("copy", "--src-tls-verify=false", url, f"oci:{tmp_path}/back:x")
    assert layout_digest(tmp_path / "back") == digest


def test_second_push_sends_no_layer_bytes(registry, busybox_layout, monkeypatch):
    copy_image(f"oci:{busybox_layout}:latest", registry.url("pushed/again", "one"), options())
    uploads = []
    original = push.upload_blob
    monkeypatch.setattr(push, "upload_blob", lambda *a, **k: uploads.append(a[2]) or original(*a, **k))
    result = copy_image(f"oci:{busybox_layout}:latest", registry.url("pushed/again", "two"), options())
    assert uploads == [] and result.blobs_skipped == 2


def test_cross_repository_mount(registry, busybox_layout, monkeypatch):
    copy_image(f"oci:{busybox_layout}:latest", registry.url("mount/source"), options())
    mounted, uploads = [], []
    original_mount, original_upload = push.mount_blob, push.upload_blob

    def spy_mount(client, digest, source):
        ok = original_mount(client, digest, source)
        mounted.append((str(digest), source, ok))
        return ok

    monkeypatch.setattr(push, "mount_blob", spy_mount)
    monkeypatch.setattr(push, "upload_blob", lambda *a, **k: uploads.append(1) or original_upload(*a, **k))
    copy_image(registry.url("mount/source"), registry.url("mount/target"), options())
    assert len(mounted) == 2 and all(ok and src == "mount/source" for _, src, ok in mounted)
    assert uploads == []
    assert json.loads(skopeo("inspect", "--tls-verify=false", registry.url("mount/target")))["Digest"] == \
        layout_digest(busybox_layout)


def test_chunked_patch_upload(registry, busybox_layout, tmp_path):
    dest = SystemContext(tls_verify=False, upload_chunk_size=100_000)
    copy_image(f"oci:{busybox_layout}:latest", registry.url("chunked/busybox"),
               CopyOptions(dest_ctx=dest, policy=ANY))
    skopeo("copy", "--src-tls-verify=false", registry.url("chunked/busybox"), f"dir:{tmp_path}/d")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    layer = manifest["layers"][0]
    assert (tmp_path / "d" / layer["digest"][7:]).stat().st_size == layer["size"] > 100_000


def test_streamed_patch_upload(registry, busybox_layout, tmp_path, monkeypatch):
    """One PATCH with a chunked-encoded body, as docker and containers/image upload large blobs."""
    monkeypatch.setattr(push, "MONOLITHIC_LIMIT", 0)
    copy_image(f"oci:{busybox_layout}:latest", registry.url("streamed/busybox"), options())
    skopeo("copy", "--src-tls-verify=false", registry.url("streamed/busybox"), f"dir:{tmp_path}/d")
    assert (tmp_path / "d" / "manifest.json").exists()


def test_push_all_platforms_keeps_index(registry, multiarch_layout):
    run_ketch("image", "copy", "--all", "--dest-tls-verify=false", f"oci:{multiarch_layout}:latest",
              registry.url("pushed/multi"))
    raw = skopeo("inspect", "--raw", "--tls-verify=false", registry.url("pushed/multi"))
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == layout_digest(multiarch_layout)


def test_push_with_token_auth(token_registry, busybox_layout):
    url = token_registry.url("private/pushed")
    denied = run_ketch("image", "copy", "--dest-tls-verify=false", "--retry-times", "0",
                       f"oci:{busybox_layout}:latest", url, check=False)
    assert denied.returncode == 1 and "authentication required" in denied.stderr
    run_ketch("image", "copy", "--dest-tls-verify=false", "--dest-creds", "alice:wonderland",
              f"oci:{busybox_layout}:latest", url)
    tokens = token_registry.extra["tokens"]
    assert any("repository:private/pushed:pull,push" in r["query"].get("scope", []) for r in tokens.requests)


def test_delete(registry, busybox_layout):
    url = registry.url("deleted/busybox")
    run_ketch("image", "copy", "--dest-tls-verify=false", f"oci:{busybox_layout}:latest", url)
    run_ketch("image", "delete", "--tls-verify=false", url)
    gone = run_ketch("image", "inspect", "--tls-verify=false", url, check=False)
    assert gone.returncode == 1 and "manifest unknown" in gone.stderr
    with pytest.raises(ManifestUnknownError):
        from ketch.image.docker.transport import delete_image
        delete_image(url, SystemContext(tls_verify=False))


def _check_layers(directory):
    """Every layer in a dir: image decompresses to the config's diff_id."""
    manifest = json.loads((directory / "manifest.json").read_text())
    config = json.loads((directory / manifest["config"]["digest"][7:]).read_text())
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
        data = (directory / layer["digest"][7:]).read_bytes()
        if layer["mediaType"].endswith("zstd"):
            plain = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        elif layer["mediaType"].endswith("gzip"):
            plain = gzip.decompress(data)
        else:
            plain = data
        assert "sha256:" + hashlib.sha256(plain).hexdigest() == diff_id
    return manifest


def test_zstd_recompression_and_back(registry, busybox_layout, tmp_path):
    url = registry.url("zstd/busybox")
    run_ketch("image", "copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd",
              f"oci:{busybox_layout}:latest", url)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", url))
    assert raw["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    skopeo("copy", "--src-tls-verify=false", url, f"dir:{tmp_path}/d")
    _check_layers(tmp_path / "d")
    # and back to gzip, at a chosen level, by ketch
    run_ketch("image", "copy", "--src-tls-verify=false", "--dest-compress-format", "gzip",
              "--dest-compress-level", "9", url, f"dir:{tmp_path}/g")
    manifest = _check_layers(tmp_path / "g")
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert manifest["config"]["digest"] == raw["config"]["digest"]


def test_zstd_needs_oci_format(busybox_layout, tmp_path):
    with pytest.raises(UnsupportedError, match="cannot hold zstd"):
        copy_image(f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/d",
                   CopyOptions(policy=ANY, compress_format="zstd",
                               manifest_type="application/vnd.docker.distribution.manifest.v2+json"))


def test_format_conversion_keeps_config(busybox_layout, tmp_path):
    run_ketch("image", "copy", "--format", "v2s2", f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/d")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    original = json.loads((busybox_layout / "blobs" / "sha256" / layout_digest(busybox_layout)[7:]).read_text())
    assert manifest["config"]["digest"] == original["config"]["digest"]
    # and back: OCI again, the very same bytes as the original manifest's content
    run_ketch("image", "copy", "--format", "oci", f"dir:{tmp_path}/d", f"oci:{tmp_path}/l")
    back = json.loads((tmp_path / "l" / "blobs" / "sha256" / layout_digest(tmp_path / "l")[7:]).read_text())
    assert back["layers"] == original["layers"] and back["config"] == original["config"]
    bad = run_ketch("image", "copy", "--format", "v2s1", f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/e",
                    check=False)
    assert bad.returncode == 1 and "not supported" in bad.stderr
