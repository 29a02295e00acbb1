import json

import pytest

from ketch.errors import ImageFormatError, UnsupportedError
from ketch.oci import ImageConfig, Index, Manifest, Platform, parse_manifest
from ketch.oci import mediatypes as mt

D = "sha256:" + "b" * 64


def manifest(media_type=mt.OCI_MANIFEST, **extra):
    return {"schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": D, "size": 10},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D, "size": 5, "annotations": {"a": "b"}}],
            **extra}


def test_oci_manifest_keeps_raw_bytes():
    raw = json.dumps(manifest()).encode()
    m = parse_manifest(raw)
    assert isinstance(m, Manifest)
    assert m.raw == raw and m.media_type == mt.OCI_MANIFEST
    assert [b.size for b in m.blobs()] == [10, 5]
    assert m.layers[0].annotations == {"a": "b"}


def test_docker_schema2_and_list():
    m = parse_manifest(json.dumps(manifest(mt.DOCKER_MANIFEST)).encode())
    assert m.media_type == mt.DOCKER_MANIFEST
    lst = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": mt.DOCKER_MANIFEST, "digest": D, "size": 1,
         "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}]}
    index = parse_manifest(json.dumps(lst).encode())
    assert isinstance(index, Index)
    assert index.manifests[0].platform == Platform("arm", "linux", "v7")


def test_media_type_guessed_from_header_or_shape():
    data = manifest()
    del data["mediaType"]
    raw = json.dumps(data).encode()
    assert parse_manifest(raw).media_type == mt.OCI_MANIFEST
    assert parse_manifest(raw, mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST
    assert parse_manifest(raw, "application/json").media_type == mt.OCI_MANIFEST
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(parse_manifest(index), Index)


@pytest.mark.parametrize("raw, error, message", [
    (b"not json", ImageFormatError, "not valid JSON"),
    (b"[]", ImageFormatError, "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode(), UnsupportedError, "schema 1"),
    (json.dumps(manifest("application/x-unknown")).encode(), ImageFormatError, "unsupported manifest media type"),
    (json.dumps(manifest(layers=None)).encode(), ImageFormatError, "no layers"),
    (json.dumps(manifest(config={"mediaType": mt.OCI_CONFIG, "digest": "sha256:zz", "size": 1})).encode(),
     ImageFormatError, "invalid config descriptor"),
    (json.dumps(manifest(config={"mediaType": mt.OCI_CONFIG, "digest": D, "size": -1})).encode(),
     ImageFormatError, "non-negative"),
    (json.dumps(manifest(schemaVersion=3)).encode(), ImageFormatError, "schemaVersion"),
    (b"{" + b" " * (4 * 1024 * 1024) + b"}", ImageFormatError, "over the"),
])
def test_bad_manifests_are_refused(raw, error, message):
    with pytest.raises(error, match=message):
        parse_manifest(raw)


def test_image_config():
    raw = json.dumps({"architecture": "amd64", "os": "linux", "created": "2023-01-01T00:00:00Z",
                      "config": {"Env": ["A=1"], "Labels": {"l": "v"}},
                      "rootfs": {"type": "layers", "diff_ids": [D]}}).encode()
    config = ImageConfig.parse(raw)
    assert (config.architecture, config.os, config.env, config.labels, config.diff_ids) == \
        ("amd64", "linux", ["A=1"], {"l": "v"}, [D])
    with pytest.raises(ImageFormatError):
        ImageConfig.parse(b'{"config": []}')
    with pytest.raises(ImageFormatError):
        ImageConfig.parse(b"{bad")
