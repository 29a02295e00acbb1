"""Both ways with skopeo (Debian's skopeo 1.9): what skopeo pushes ketch reads,
and what ketch writes skopeo reads, with the same manifest digest."""

import json
import subprocess

import pytest

from ketch.oci import Digest
from tests.conftest import run_ketch
from tests.support.registry import skopeo_copy

pytestmark = [pytest.mark.registry, pytest.mark.peer]


def skopeo(*args):
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def test_skopeo_reads_what_ketch_wrote(registry, tmp_path):
    url = registry.url("library/busybox")
    remote_digest = json.loads(skopeo("inspect", "--tls-verify=false", url))["Digest"]
    run_ketch("image", "copy", "--src-tls-verify=false", url, f"oci:{tmp_path}/l:bb")
    assert json.loads(skopeo("inspect", f"oci:{tmp_path}/l:bb"))["Digest"] == remote_digest
    # skopeo copies ketch's layout on to a dir: and back into the registry unchanged.
    skopeo("copy", f"oci:{tmp_path}/l:bb", f"dir:{tmp_path}/d")
    assert str(Digest.of((tmp_path / "d" / "manifest.json").read_bytes())) == remote_digest
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path}/l:bb", registry.url("roundtrip/busybox"))
    assert json.loads(skopeo("inspect", "--tls-verify=false", registry.url("roundtrip/busybox")))["Digest"] == \
        remote_digest


def test_skopeo_reads_ketch_dir_and_index(registry, tmp_path):
    run_ketch("image", "copy", "--src-tls-verify=false", registry.url("library/busybox"), f"dir:{tmp_path}/d")
    skopeo("copy", f"dir:{tmp_path}/d", f"oci:{tmp_path}/fromdir:x")
    run_ketch("image", "copy", "--all", "--src-tls-verify=false", registry.url("multi"), f"oci:{tmp_path}/m:all")
    raw = skopeo("inspect", "--raw", f"oci:{tmp_path}/m:all")
    assert raw.strip() == skopeo("inspect", "--raw", "--tls-verify=false", registry.url("multi")).strip()
    skopeo("copy", "--all", f"oci:{tmp_path}/m:all", f"oci:{tmp_path}/m2:all")


def test_ketch_reads_docker_schema2_pushed_by_skopeo(registry, busybox_layout, tmp_path):
    """skopeo converts to Docker schema 2 on push; ketch keeps it in dir: and converts it for oci:."""
    skopeo_copy(f"oci:{busybox_layout}:latest", registry.url("v2s2/busybox"), "--format", "v2s2")
    url = registry.url("v2s2/busybox")
    raw = run_ketch("image", "inspect", "--raw", "--tls-verify=false", url).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    run_ketch("image", "copy", "--src-tls-verify=false", url, f"dir:{tmp_path}/d")
    assert (tmp_path / "d" / "manifest.json").read_text().strip() == raw.strip()
    run_ketch("image", "copy", "--src-tls-verify=false", url, f"oci:{tmp_path}/l:x")
    ours = json.loads(skopeo("inspect", "--raw", f"oci:{tmp_path}/l:x"))
    assert ours["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert ours["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    # skopeo's own conversion of the same image reaches the same layers and config values. (skopeo
    # re-serialises the config; ketch keeps its bytes, so the image ID survives the conversion.)
    skopeo("copy", "--src-tls-verify=false", url, f"oci:{tmp_path}/s:x")
    theirs = json.loads(skopeo("inspect", "--raw", f"oci:{tmp_path}/s:x"))
    assert json.loads(skopeo("inspect", "--config", f"oci:{tmp_path}/l:x")) == \
        json.loads(skopeo("inspect", "--config", f"oci:{tmp_path}/s:x"))
    assert ours["config"]["digest"] == json.loads(raw)["config"]["digest"]
    assert [layer["digest"] for layer in ours["layers"]] == [layer["digest"] for layer in theirs["layers"]]
    skopeo("copy", f"oci:{tmp_path}/l:x", f"dir:{tmp_path}/check")
