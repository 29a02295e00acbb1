"""oci-archive: and docker-archive:, read and written, both ways with skopeo and podman."""

import json
import os
import subprocess
import tarfile

import pytest

from ketch import CopyOptions, copy_image
from ketch.errors import ImageFormatError, InvalidReferenceError, NotFoundError
from ketch.image.docker_archive import DockerArchiveWriter
from ketch.image.policy import Policy
from tests.conftest import run_ketch

pytestmark = pytest.mark.peer
ANY = CopyOptions(policy=Policy.insecure_accept_anything())


def skopeo(*args):
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def layout_digest(layout):
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


def config_digest(layout):
    manifest = json.loads((layout / "blobs" / "sha256" / layout_digest(layout)[7:]).read_text())
    return manifest["config"]["digest"]


def test_oci_archive_round_trip_preserves_digest(busybox_layout, tmp_path):
    archive = tmp_path / "b.tar"
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"oci-archive:{archive}:bb")
    assert json.loads(skopeo("inspect", f"oci-archive:{archive}:bb"))["Digest"] == layout_digest(busybox_layout)
    run_ketch("image", "copy", f"oci-archive:{archive}:bb", f"oci:{tmp_path}/l")
    assert layout_digest(tmp_path / "l") == layout_digest(busybox_layout)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".ketch-tmp")] == []


def test_oci_archive_written_by_skopeo(busybox_layout, tmp_path):
    archive = tmp_path / "s.tar"
    skopeo("copy", f"oci:{busybox_layout}:latest", f"oci-archive:{archive}:x")
    out = json.loads(run_ketch("image", "inspect", f"oci-archive:{archive}:x").stdout)
    assert out["Digest"] == layout_digest(busybox_layout)
    run_ketch("image", "copy", f"oci-archive:{archive}", f"dir:{tmp_path}/d")


def test_docker_archive_read_by_skopeo_and_podman(busybox_layout, tmp_path, podman):
    archive = tmp_path / "d.tar"
    run_ketch("image", "copy", "--additional-tag", "example.com/extra:1", f"oci:{busybox_layout}:latest",
              f"docker-archive:{archive}:busybox:latest")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["docker.io/library/busybox:latest", "example.com/extra:1"]
    inspected = json.loads(skopeo("inspect", f"docker-archive:{archive}"))
    assert inspected["Layers"] == json.loads(
        (busybox_layout / "blobs" / "sha256" / config_digest(busybox_layout)[7:]).read_text())["rootfs"]["diff_ids"]
    out = podman.run("load", "-i", str(archive)).stdout
    assert "docker.io/library/busybox:latest" in out
    images = podman.images()
    assert images[0]["Id"] == config_digest(busybox_layout)[7:]
    assert "example.com/extra:1" in images[0]["Names"]


def test_docker_archive_saved_by_podman_has_same_image_id(busybox_layout, tmp_path, podman):
    podman.run("pull", f"oci:{busybox_layout}:latest")
    image_id = podman.images()[0]["Id"]
    podman.run("tag", image_id, "localhost/saved:1")
    archive = tmp_path / "p.tar"
    podman.run("save", "-o", str(archive), "localhost/saved:1")
    out = json.loads(run_ketch("image", "inspect", "--config", f"docker-archive:{archive}").stdout)
    assert out["rootfs"]["diff_ids"]
    run_ketch("image", "copy", f"docker-archive:{archive}:localhost/saved:1", f"oci:{tmp_path}/l:x")
    assert config_digest(tmp_path / "l") == f"sha256:{image_id}"
    podman.run("save", "--format", "oci-archive", "-o", str(tmp_path / "o.tar"), "localhost/saved:1")
    run_ketch("image", "copy", f"oci-archive:{tmp_path / 'o.tar'}", f"oci:{tmp_path}/m:y")
    assert config_digest(tmp_path / "m") == f"sha256:{image_id}"


def test_oci_archive_loaded_by_podman(busybox_layout, tmp_path, podman):
    archive = tmp_path / "o.tar"
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"oci-archive:{archive}:localhost/ketch:oci")
    podman.run("load", "-i", str(archive))
    assert podman.images()[0]["Id"] == config_digest(busybox_layout)[7:]


def test_several_images_in_one_docker_archive(busybox_layout, multiarch_layout, tmp_path, podman):
    archive = tmp_path / "multi.tar"
    writer = DockerArchiveWriter(archive)
    try:
        copy_image(f"oci:{busybox_layout}:latest", writer.reference("localhost/one:1"), ANY)
        copy_image(f"oci:{multiarch_layout}:latest", writer.reference("localhost/two:2"),
                   CopyOptions(policy=ANY.policy, src_ctx=_ctx_arch("arm64")))
        copy_image(f"oci:{busybox_layout}:latest", writer.reference("localhost/one:alias"), ANY)
    finally:
        writer.close()
    with tarfile.open(archive) as tar:
        entries = json.load(tar.extractfile("manifest.json"))
    assert [e["RepoTags"] for e in entries] == [["localhost/one:1", "localhost/one:alias"], ["localhost/two:2"]]
    first = json.loads(run_ketch("image", "inspect", f"docker-archive:{archive}:@0").stdout)
    second = json.loads(run_ketch("image", "inspect", f"docker-archive:{archive}:localhost/two:2").stdout)
    assert (first["Architecture"], second["Architecture"]) == ("amd64", "arm64")
    ambiguous = run_ketch("image", "inspect", f"docker-archive:{archive}", check=False)
    assert ambiguous.returncode == 1 and "holds 2 images" in ambiguous.stderr
    missing = run_ketch("image", "inspect", f"docker-archive:{archive}:@7", check=False)
    assert missing.returncode == 1 and "there is no @7" in missing.stderr
    podman.run("load", "-i", str(archive))
    names = sorted({n for image in podman.images() for n in image["Names"]})
    assert names == ["localhost/one:1", "localhost/one:alias", "localhost/two:2"]


def _ctx_arch(arch):
    from ketch import SystemContext

    return SystemContext(override_arch=arch)


def test_corrupt_and_missing_archives(tmp_path, busybox_layout):
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive at all" * 100)
    with pytest.raises(ImageFormatError):
        copy_image(f"docker-archive:{tmp_path}/junk.tar", f"oci:{tmp_path}/l", ANY)
    with pytest.raises(NotFoundError):
        copy_image(f"oci-archive:{tmp_path}/absent.tar", f"oci:{tmp_path}/l", ANY)
    # A truncated archive: the layer stops half way.
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"docker-archive:{tmp_path}/good.tar")
    data = (tmp_path / "good.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    result = run_ketch("image", "copy", f"docker-archive:{tmp_path}/cut.tar", f"oci:{tmp_path}/l", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "l" / "index.json").exists()
    # An archive whose layer bytes were changed: the digest check catches it.
    with tarfile.open(tmp_path / "good.tar") as tar:
        names = tar.getnames()
        layer = next(n for n in names if n.endswith(".tar"))
        offset = tar.getmember(layer).offset_data
    tampered = bytearray(data)
    tampered[offset + 600] ^= 0xFF
    (tmp_path / "bad.tar").write_bytes(bytes(tampered))
    bad = run_ketch("image", "copy", f"docker-archive:{tmp_path}/bad.tar", f"oci:{tmp_path}/l", check=False)
    assert bad.returncode == 1 and "digest" in bad.stderr
    assert not (tmp_path / "l" / "index.json").exists()
    (tmp_path / "nomanifest.tar").write_bytes(b"")
    with tarfile.open(tmp_path / "nomanifest.tar", "w") as tar:
        tar.add(busybox_layout / "oci-layout", arcname="oci-layout")
    with pytest.raises(ImageFormatError, match="no manifest.json"):
        copy_image(f"docker-archive:{tmp_path}/nomanifest.tar", f"oci:{tmp_path}/l", ANY)


def test_unwritable_destination_leaves_nothing(tmp_path, busybox_layout):
    (tmp_path / "file").write_text("x")
    result = run_ketch("image", "copy", f"oci:{busybox_layout}:latest",
                       f"docker-archive:{tmp_path}/file/sub/x.tar", check=False)
    assert result.returncode == 1 and "cannot write archive" in result.stderr
    os.chmod(tmp_path, 0o500)
    try:
        # root ignores directory modes; a path under /proc cannot be written by anyone
        result = run_ketch("image", "copy", f"oci:{busybox_layout}:latest", "oci-archive:/proc/ketch-test.tar",
                           check=False)
        assert result.returncode == 1 and result.stderr.startswith("Error: ")
    finally:
        os.chmod(tmp_path, 0o700)
    with pytest.raises(InvalidReferenceError):
        copy_image(f"oci:{busybox_layout}:latest", f"docker-archive:{tmp_path}/x.tar:@1", ANY)
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_index_cannot_go_into_a_docker_archive(multiarch_layout, tmp_path):
    from ketch.errors import UnsupportedError

    with pytest.raises(UnsupportedError):
        copy_image(f"oci:{multiarch_layout}:latest", f"docker-archive:{tmp_path}/x.tar",
                   CopyOptions(policy=ANY.policy, all_images=True))
    assert not (tmp_path / "x.tar").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".ketch-tmp")] == []


def test_docker_archive_to_registry_compresses(registry, tmp_path, busybox_layout):
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"docker-archive:{tmp_path}/d.tar")
    url = registry.url("fromarchive/busybox")
    run_ketch("image", "copy", "--dest-tls-verify=false", f"docker-archive:{tmp_path}/d.tar", url)
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", url))
    assert raw["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert raw["config"]["digest"] == config_digest(busybox_layout)
    skopeo("copy", "--src-tls-verify=false", url, f"oci:{tmp_path}/check")




def test_docker_archive_written_by_skopeo(busybox_layout, tmp_path):
    archive = tmp_path / "s.tar"
    skopeo("copy", f"oci:{busybox_layout}:latest", f"docker-archive:{archive}:example.com/bb:1")
    out = json.loads(run_ketch("image", "inspect", f"docker-archive:{archive}:example.com/bb:1").stdout)
    assert out["Architecture"] == "amd64"
    run_ketch("image", "copy", f"docker-archive:{archive}", f"oci:{tmp_path}/l")
    assert config_digest(tmp_path / "l") == config_digest(busybox_layout)


@pytest.mark.registry
def test_round_trip_through_every_transport_keeps_the_digest(registry, busybox_layout, tmp_path):
    digest = layout_digest(busybox_layout)
    hops = [f"oci:{busybox_layout}:latest", f"oci-archive:{tmp_path}/a.tar:x", f"dir:{tmp_path}/d",
            registry.url("roundtrip/all"), f"oci:{tmp_path}/l:y"]
    for src, dst in zip(hops, hops[1:]):
        out = tmp_path / "digest"
        run_ketch("image", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--digestfile", str(out),
                  src, dst)
        assert out.read_text() == digest, (src, dst)
