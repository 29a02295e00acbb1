import pytest

from ketch.errors import InvalidReferenceError
from ketch.oci import Digest, parse_reference

HEX = "a" * 64


@pytest.mark.parametrize("text, expected", [
    ("busybox", "docker.io/library/busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox"),
    ("docker.io/busybox", "docker.io/library/busybox"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox"),
    ("user/app", "docker.io/user/app"),
    ("quay.io/podman/stable:v4", "quay.io/podman/stable:v4"),
    ("localhost/app", "localhost/app"),
    ("localhost:5000/app:1", "localhost:5000/app:1"),
    ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c"),
    ("[::1]:5000/app", "[::1]:5000/app"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
    (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox:1@sha256:{HEX}"),
    ("my-registry.example.com/a__b/c-d.e:tag_1.0-rc", "my-registry.example.com/a__b/c-d.e:tag_1.0-rc"),
])
def test_normalized_like_containers_tools(text, expected):
    assert str(parse_reference(text)) == expected


def test_default_tag_only_without_digest():
    assert parse_reference("busybox").with_default_tag().tag == "latest"
    ref = parse_reference(f"busybox@sha256:{HEX}").with_default_tag()
    assert ref.tag is None and ref.digest == Digest("sha256", HEX)


def test_parts_and_api_host():
    ref = parse_reference("localhost:5000/team/app:2")
    assert (ref.domain, ref.path, ref.tag) == ("localhost:5000", "team/app", "2")
    assert ref.api_host == "localhost:5000"
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_reference("busybox").familiar_name == "busybox"


@pytest.mark.parametrize("text", [
    "", "Busybox", "docker.io/Library/busybox", "busybox:", "busybox:-bad", "busybox@sha256:abc",
    f"busybox@md5:{HEX}", "a//b", "/busybox", "busybox/", " busybox", "busybox:" + "t" * 129,
    "a" * 256, "host:port/app", "bad_host_/app",
])
def test_invalid_references_are_refused(text):
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)
