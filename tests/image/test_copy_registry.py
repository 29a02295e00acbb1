"""Copies out of a real registry (docker-registry on 127.0.0.1) into OCI layouts and dirs."""

import json
import os

import pytest

from ketch import CopyOptions, SystemContext, copy_image
from ketch.errors import ManifestUnknownError, NotFoundError
from ketch.oci import Digest
from tests.conftest import run_ketch

pytestmark = pytest.mark.registry


def layout_digest(path, name=None):
    index = json.loads((path / "index.json").read_text())
    entries = [m for m in index["manifests"]
               if name is None or m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name]
    assert len(entries) == 1
    return entries[0]["digest"]


def source_digest(layout):
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


def all_blobs_match(layout):
    for algo_dir in (layout / "blobs").iterdir():
        for blob in algo_dir.iterdir():
            assert str(Digest.of(blob.read_bytes(), algo_dir.name)) == f"{algo_dir.name}:{blob.name}"


def test_copy_to_oci_layout_preserves_digest(registry, busybox_layout, tmp_path):
    dest = tmp_path / "layout"
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox"), f"oci:{dest}:bb")
    assert layout_digest(dest, "bb") == source_digest(busybox_layout)
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    all_blobs_match(dest)
    # Every blob of the source is there, byte for byte.
    for blob in (busybox_layout / "blobs" / "sha256").iterdir():
        assert (dest / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()


def test_two_names_in_one_layout_and_replacing_a_name(registry, tmp_path):
    dest = tmp_path / "layout"
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox"), f"oci:{dest}:one")
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox", "v1"), f"oci:{dest}:two")
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("multi"), f"oci:{dest}:one")
    index = json.loads((dest / "index.json").read_text())
    names = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert names == ["one", "two"]


def test_second_copy_skips_existing_blobs(registry, tmp_path):
    ctx = SystemContext(tls_verify=False)
    first = copy_image(registry.url("library/busybox"), f"oci:{tmp_path}/l:a", CopyOptions(src_ctx=ctx))
    assert first.blobs_copied == 2 and first.blobs_skipped == 0
    second = copy_image(registry.url("library/busybox"), f"oci:{tmp_path}/l:b", CopyOptions(src_ctx=ctx))
    assert second.blobs_copied == 0 and second.blobs_skipped == 2
    assert first.manifest_digest == second.manifest_digest


def test_copy_by_digest(registry, busybox_layout, tmp_path):
    digest = source_digest(busybox_layout)
    ref = f"docker://{registry.host}/library/busybox@{digest}"
    run_ketch("image", "copy", "--src-tls-verify=false", ref, f"dir:{tmp_path}/d")
    assert str(Digest.of((tmp_path / "d" / "manifest.json").read_bytes())) == digest


def test_dir_destination_layout(registry, tmp_path):
    dest = tmp_path / "d"
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox"), f"dir:{dest}")
    assert (dest / "version").read_text() == "Directory Transport Version: 1.1\n"
    manifest = json.loads((dest / "manifest.json").read_text())
    for blob in [manifest["config"], *manifest["layers"]]:
        assert (dest / blob["digest"].split(":")[1]).stat().st_size == blob["size"]


def test_dir_destination_refuses_a_foreign_directory(registry, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "precious.txt").write_text("keep me")
    result = run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox"),
                       f"dir:{tmp_path}/d", check=False)
    assert result.returncode == 1 and "refusing to overwrite" in result.stderr
    assert (tmp_path / "d" / "precious.txt").read_text() == "keep me"


def test_index_host_platform_chosen(registry, multiarch_layout, tmp_path):
    result = copy_image(registry.url("multi"), f"oci:{tmp_path}/l", CopyOptions(src_ctx=SystemContext(tls_verify=False)))
    top = json.loads((multiarch_layout / "blobs" / "sha256" / source_digest(multiarch_layout).split(":")[1]).read_text())
    amd64 = [m for m in top["manifests"] if m["platform"]["architecture"] == "amd64"][0]
    assert str(result.manifest_digest) == amd64["digest"]


def test_override_arch_picks_another_instance(registry, multiarch_layout, tmp_path):
    run_ketch("--override-arch", "arm64", "image", "copy", "--src-tls-verify=false", registry.url("multi"),
              f"oci:{tmp_path}/l")
    index = json.loads((tmp_path / "l" / "index.json").read_text())
    manifest = json.loads((tmp_path / "l" / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    config = json.loads((tmp_path / "l" / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_text())
    assert config["architecture"] == "arm64"
    result = run_ketch("image", "copy", "--override-arch", "s390x", "--src-tls-verify=false", registry.url("multi"),
                       f"oci:{tmp_path}/none", check=False)
    assert result.returncode == 1
    assert 'no image found in manifest list for architecture "s390x"' in result.stderr
    assert not (tmp_path / "none" / "index.json").exists()


def test_all_copies_every_instance_and_keeps_index_digest(registry, multiarch_layout, tmp_path):
    run_ketch("image", "copy", "--all", "--src-tls-verify=false", registry.url("multi"), f"oci:{tmp_path}/l:m")
    assert layout_digest(tmp_path / "l", "m") == source_digest(multiarch_layout)
    all_blobs_match(tmp_path / "l")
    assert sorted(os.listdir(tmp_path / "l" / "blobs" / "sha256")) == \
        sorted(os.listdir(multiarch_layout / "blobs" / "sha256"))


def test_round_trip_between_file_transports(registry, busybox_layout, tmp_path):
    """registry -> dir -> oci -> dir: the manifest digest survives every hop."""
    digest = source_digest(busybox_layout)
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox"), f"dir:{tmp_path}/d1")
    run_ketch("image", "copy", f"dir:{tmp_path}/d1", f"oci:{tmp_path}/l:x")
    run_ketch("image", "copy", f"oci:{tmp_path}/l:x", f"dir:{tmp_path}/d2")
    assert layout_digest(tmp_path / "l", "x") == digest
    assert str(Digest.of((tmp_path / "d2" / "manifest.json").read_bytes())) == digest


def test_missing_tag_and_repository(registry, tmp_path):
    ctx = SystemContext(tls_verify=False, retry_times=0)
    with pytest.raises(ManifestUnknownError, match="manifest unknown"):
        copy_image(registry.url("library/busybox", "nope"), f"oci:{tmp_path}/l", CopyOptions(src_ctx=ctx))
    with pytest.raises(NotFoundError):
        copy_image(registry.url("does/not-exist"), f"oci:{tmp_path}/l", CopyOptions(src_ctx=ctx))
    assert not (tmp_path / "l" / "index.json").exists()
    result = run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox", "nope"),
                       f"oci:{tmp_path}/l", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "manifest unknown" in result.stderr


def test_tls_verified_by_default(registry, tmp_path):
    """The test registry speaks plain HTTP: without --tls-verify=false ketch must refuse it."""
    result = run_ketch("image", "copy", "--retry-times", "0", registry.url("library/busybox"),
                       f"oci:{tmp_path}/l", check=False)
    assert result.returncode == 1
    assert "--tls-verify=false" in result.stderr and "Traceback" not in result.stderr


def test_tls_registry_verified_unless_told_otherwise(tls_registry, tmp_path):
    url = tls_registry.url("library/busybox")
    refused = run_ketch("image", "inspect", "--retry-times", "0", url, check=False)
    assert refused.returncode == 1
    assert "TLS certificate verify failed" in refused.stderr and refused.stderr.count("\n") == 1
    # Without verification the copy goes over HTTPS (this registry speaks nothing else).
    run_ketch("image", "copy", "--src-tls-verify=false", url, f"oci:{tmp_path}/l")
    assert (tmp_path / "l" / "index.json").exists()
