"""registries.conf: mirrors, insecure, blocked, prefixes, aliases, search registries."""

import json

import pytest

from ketch import CopyOptions, SystemContext, copy_image
from ketch.errors import InvalidInputError, PolicyDeniedError
from ketch.image.policy import Policy
from ketch.image.registries import RegistriesConf
from ketch.oci.reference import parse_reference
from tests.conftest import run_ketch
from tests.support.fakeregistry import FakeRegistry, serve

ANY = Policy.insecure_accept_anything()


def conf(tmp_path, text, dropins=()):
    path = tmp_path / "registries.conf"
    path.write_text(text)
    if dropins:
        (tmp_path / "registries.conf.d").mkdir()
        for i, dropin in enumerate(dropins):
            (tmp_path / "registries.conf.d" / f"{i:02d}.conf").write_text(dropin)
    return path


def test_parse_and_lookups(tmp_path):
    path = conf(tmp_path, '''
unqualified-search-registries = ["quay.io", "docker.io"]
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
[[registry]]
prefix = "example.com/foo"
location = "internal.example.com/bar"
insecure = true
[[registry.mirror]]
location = "mirror.example.com/cache"
[[registry]]
location = "blocked.example.com"
blocked = true
[[registry]]
prefix = "*.wild.org"
insecure = true
''', dropins=['[aliases]\n"ubi" = "registry.access.redhat.com/ubi9"\n'])
    c = RegistriesConf.load(path)
    assert c.find("example.com/foo/app").location == "internal.example.com/bar"
    assert c.find("example.com/foobar/app") is None
    assert c.find("x.wild.org/app").insecure
    endpoints = c.pull_endpoints(parse_reference("example.com/foo/app:1"))
    assert [(e.location, str(r)) for e, r in endpoints] == [
        ("mirror.example.com/cache", "mirror.example.com/cache/app:1"),
        ("internal.example.com/bar", "internal.example.com/bar/app:1")]
    assert endpoints[1][0].insecure and not endpoints[0][0].insecure
    with pytest.raises(PolicyDeniedError, match="blocked"):
        c.pull_endpoints(parse_reference("blocked.example.com/x"))
    assert [str(r) for r in c.resolve_short_name("fedora:39")] == ["registry.fedoraproject.org/fedora:39"]
    assert [str(r) for r in c.resolve_short_name("ubi")] == ["registry.access.redhat.com/ubi9"]
    assert [str(r) for r in c.resolve_short_name("app")] == ["quay.io/app", "docker.io/library/app"]
    assert [str(r) for r in c.resolve_short_name("localhost/app")] == ["localhost/app"]


def test_v1_format_and_bad_files(tmp_path):
    path = conf(tmp_path, '[registries.search]\nregistries = ["a.example"]\n'
                          '[registries.insecure]\nregistries = ["b.example:5000"]\n'
                          '[registries.block]\nregistries = ["c.example"]\n')
    c = RegistriesConf.load(path)
    assert c.unqualified_search == ["a.example"]
    assert c.find("b.example:5000/x").insecure and c.find("c.example/y").blocked
    (tmp_path / "bad.conf").write_text("this is = = not toml")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        RegistriesConf.load(tmp_path / "bad.conf")
    (tmp_path / "bad2.conf").write_text('[[registry]]\nprefix = "x"\ninsecure = "yes"\n')
    with pytest.raises(InvalidInputError, match="insecure must be true or false"):
        RegistriesConf.load(tmp_path / "bad2.conf")


def test_insecure_registry_needs_no_flag(registry, tmp_path):
    path = conf(tmp_path, f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    run_ketch("--registries-conf", str(path), "image", "copy", registry.url("library/busybox"),
              f"oci:{tmp_path}/l")
    refused = run_ketch("image", "copy", "--retry-times", "0", registry.url("library/busybox"),
                        f"oci:{tmp_path}/m", check=False)
    assert refused.returncode == 1


def test_blocked_registry(registry, busybox_layout, tmp_path):
    path = conf(tmp_path, f'[[registry]]\nlocation = "{registry.host}"\nblocked = true\n')
    result = run_ketch("--registries-conf", str(path), "image", "copy", "--src-tls-verify=false",
                       registry.url("library/busybox"), f"oci:{tmp_path}/l", check=False)
    assert result.returncode == 1 and "blocked in registries.conf" in result.stderr
    assert not (tmp_path / "l").exists()
    push = run_ketch("--registries-conf", str(path), "image", "copy", "--dest-tls-verify=false",
                     f"oci:{busybox_layout}:latest", registry.url("x/y"), check=False)
    assert push.returncode == 1 and "blocked in registries.conf" in push.stderr


def _mirror_with(registry_fake, busybox_layout):
    index = json.loads((busybox_layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    raw = (busybox_layout / "blobs" / "sha256" / digest[7:]).read_bytes()
    registry_fake.put_manifest("library/busybox", "latest", raw, "application/vnd.oci.image.manifest.v1+json")
    for blob in (busybox_layout / "blobs" / "sha256").iterdir():
        registry_fake.blobs["sha256:" + blob.name] = blob.read_bytes()


def test_mirror_first_then_primary(registry, busybox_layout, tmp_path):
    mirror = FakeRegistry()
    with serve(mirror):
        path = conf(tmp_path, f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n'
                              f'[[registry.mirror]]\nlocation = "{mirror.host}"\ninsecure = true\n')
        ctx = SystemContext(registries_conf=str(path), retry_times=0)
        # The mirror lacks the image: ketch falls back to the primary.
        copy_image(registry.url("library/busybox"), f"oci:{tmp_path}/a", CopyOptions(src_ctx=ctx, policy=ANY))
        assert mirror.count("GET", "/v2/library/busybox/manifests/latest") == 1
        # The mirror has it: everything comes from the mirror.
        _mirror_with(mirror, busybox_layout)
        before = len(mirror.requests)
        copy_image(registry.url("library/busybox"), f"oci:{tmp_path}/b", CopyOptions(src_ctx=ctx, policy=ANY))
        fetched = [p for _, p, _ in mirror.requests[before:]]
        assert sum("/blobs/" in p for p in fetched) == 2 and any("/manifests/latest" in p for p in fetched)


def test_env_variable(registry, tmp_path, monkeypatch):
    path = conf(tmp_path, f'[[registry]]\nlocation = "{registry.host}"\nblocked = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(path))
    result = run_ketch("image", "inspect", "--tls-verify=false", registry.url("library/busybox"), check=False)
    assert result.returncode == 1 and "blocked" in result.stderr
