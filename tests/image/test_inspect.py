"""Remote inspection without pulling layers, in skopeo's JSON shape."""

import json
import subprocess

import pytest

from tests.conftest import run_ketch

pytestmark = pytest.mark.registry


@pytest.mark.peer
def test_inspect_matches_skopeo(registry):
    url = registry.url("library/busybox")
    ours = json.loads(run_ketch("image", "inspect", "--tls-verify=false", url).stdout)
    theirs = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", url],
                                       capture_output=True, text=True, check=True).stdout)
    # skopeo 1.9 predates LayersData; every key it prints, ketch prints the same.
    for key, value in theirs.items():
        assert ours[key] == value, key
    assert sorted(ours["RepoTags"]) == ["latest", "v1"]  # in the registry's order: its file system's
    assert ours["LayersData"][0]["Digest"] == ours["Layers"][0]
    assert ours["LayersData"][0]["MIMEType"] == "application/vnd.oci.image.layer.v1.tar+gzip"



def test_inspect_fetches_only_manifest_and_config(registry, monkeypatch):
    from ketch import SystemContext, inspect_image
    from ketch.image.docker import client as client_module

    fetched = []
    original = client_module.RegistryClient.get_blob_response

    def spy(self, digest, offset=0):
        fetched.append(str(digest))
        return original(self, digest, offset)

    monkeypatch.setattr(client_module.RegistryClient, "get_blob_response", spy)
    result = inspect_image(registry.url("library/busybox"), SystemContext(tls_verify=False))
    assert fetched == [str(result.manifest.config.digest)]


@pytest.mark.parametrize("flags", [["--raw"], ["--config"], ["--config", "--raw"]])
@pytest.mark.peer
def test_raw_and_config_match_skopeo(registry, flags):
    url = registry.url("multi")
    ours = run_ketch("image", "inspect", "--tls-verify=false", *flags, url).stdout
    theirs = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *flags, url],
                            capture_output=True, text=True, check=True).stdout
    if flags == ["--config"]:
        assert json.loads(ours) == json.loads(theirs)
    else:
        assert ours.strip() == theirs.strip()


def test_format_template_and_no_tags(registry):
    url = registry.url("library/busybox")
    out = run_ketch("image", "inspect", "--tls-verify=false", "-n", "--format", "{{.Digest}} {{.Architecture}}",
                    url).stdout
    digest = json.loads(run_ketch("image", "inspect", "--tls-verify=false", url).stdout)["Digest"]
    assert out == f"{digest} amd64\n"
    tags = json.loads(run_ketch("image", "inspect", "--tls-verify=false", "--no-tags", url).stdout)["RepoTags"]
    assert tags == []
    bad = run_ketch("image", "inspect", "--tls-verify=false", "--format", "{{.Nope}}", url, check=False)
    assert bad.returncode == 1 and "can't evaluate field Nope" in bad.stderr


@pytest.mark.peer
def test_inspect_oci_layout_has_no_name(busybox_layout):
    out = json.loads(run_ketch("image", "inspect", f"oci:{busybox_layout}:latest").stdout)
    theirs = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{busybox_layout}:latest"],
                                       capture_output=True, text=True, check=True).stdout)
    assert "Name" not in out
    for key, value in theirs.items():
        assert out[key] == value, key


def test_list_tags_with_pagination(registry):
    out = json.loads(run_ketch("image", "list-tags", "--tls-verify=false",
                               f"docker://{registry.host}/library/busybox").stdout)
    # the registry lists tags in its file system's directory order (tmpfs differs from ext4): compare sets
    assert out["Repository"] == f"{registry.host}/library/busybox" and sorted(out["Tags"]) == ["latest", "v1"]
    from ketch import SystemContext
    from ketch.image.docker.transport import DockerReference

    client = DockerReference.parse(f"//{registry.host}/library/busybox").client(SystemContext(tls_verify=False))
    assert sorted(client.list_tags(page_size=1)) == ["latest", "v1"]
    bad = run_ketch("image", "list-tags", "--tls-verify=false", f"docker://{registry.host}/library/busybox:v1",
                    check=False)
    assert bad.returncode == 1 and "drop the tag" in bad.stderr
