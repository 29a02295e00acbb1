"""Sigstore signatures (a cosign key pair): verified against signatures cosign and upstream skopeo
made (containers/image's fixtures, tests/image/fixtures/cosign), made by ketch and read back by
Debian's skopeo from the registry's attachment (skopeo stores and copies sigstore signatures; only
making and verifying them is disabled in Debian's build), and written by skopeo into a registry
attachment and verified by ketch. Every refusal is one line, and nothing is stored."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from ketch.errors import PolicyDeniedError, UnsupportedError
from ketch.image.policy import Policy
from ketch.image.sigstore import SigstoreSignature
from ketch.image.transports import parse_image_name
from tests.conftest import run_ketch

FIXTURES = Path(__file__).parent / "fixtures" / "cosign"
COSIGN_IDENTITY = "192.168.64.2:5000/cosign-signed-single-sample"


def _policy(requirement: dict) -> Policy:
    return Policy.from_json({"default": [{"type": "reject"}], "transports": {"docker": {"": [requirement]}}},
                            str(FIXTURES / "policy.json"))  # (relative key paths: beside the fixtures)


def _verify(requirement: dict, image: str, reference: str, signatures: list[bytes] | None = None) -> None:
    policy = _policy(requirement)
    ref = parse_image_name(f"docker://{reference}")
    pending = policy.check(ref)
    manifest = (FIXTURES / image / "manifest.json").read_bytes()
    if signatures is None:
        signatures = [(FIXTURES / image / "signature-1").read_bytes()]
    policy.verify(ref, pending, manifest, signatures)


def test_cosign_made_signatures_verify():
    """cosign's and upstream skopeo's signatures, checked as containers/image's own tests check them."""
    digest = json.loads((FIXTURES / "valid" / "signature-1").read_bytes()[len(b"\x00sigstore-json\n"):])
    assert digest["mimeType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    by_path = {"type": "sigstoreSigned", "keyPath": "cosign.pub"}
    by_data = {"type": "sigstoreSigned", "keyData": base64.b64encode((FIXTURES / "cosign.pub").read_bytes()).decode()}
    for requirement in (by_path, by_data):
        _verify(requirement, "valid", f"{COSIGN_IDENTITY}@sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8dd"
                                      "c45e5986a00")
    exact = {**by_path, "signedIdentity": {"type": "exactReference", "dockerReference": f"{COSIGN_IDENTITY}:x"}}
    with pytest.raises(PolicyDeniedError, match="signedIdentity"):
        _verify(exact, "valid", "example.com/any:1")
    _verify({**by_path, "signedIdentity": {"type": "exactRepository", "dockerRepository": COSIGN_IDENTITY}},
            "valid", "example.com/mirror:1")
    _verify({**by_path, "signedIdentity": {"type": "matchExact"}}, "valid-with-tag",
            "192.168.64.2:5000/skopeo-signed:tag")
    with pytest.raises(PolicyDeniedError, match="signedIdentity"):
        _verify({**by_path, "signedIdentity": {"type": "matchExact"}}, "valid-with-tag",
                "192.168.64.2:5000/skopeo-signed:othertag")
    _verify({**by_path, "signedIdentity": {"type": "remapIdentity", "prefix": "mirror.test/skopeo-signed",
                                           "signedPrefix": "192.168.64.2:5000/skopeo-signed"}},
            "valid-with-tag", "mirror.test/skopeo-signed:tag")


@pytest.mark.parametrize("image, signature, reason", [
    ("modified-manifest", None, "signs another manifest"),
    ("valid", FIXTURES / "unknown-cosign-key.signature", "not valid for the policy's keys"),
    ("other-attachment", None, "attachment of type text/plain"),
])
def test_cosign_signatures_refused(image, signature, reason):
    requirement = {"type": "sigstoreSigned", "keyPath": "cosign.pub",
                   "signedIdentity": {"type": "matchRepository"}}
    blobs = [signature.read_bytes()] if signature else None
    with pytest.raises(PolicyDeniedError, match=reason) as caught:
        _verify(requirement, image, f"{COSIGN_IDENTITY}:latest", blobs)
    assert "sigstoreSigned" in str(caught.value) and "\n" not in str(caught.value)


def test_tampered_payload_and_no_signature_refused():
    requirement = {"type": "sigstoreSigned", "keyPath": "cosign.pub", "signedIdentity": {"type": "matchRepository"}}
    good = SigstoreSignature.from_blob((FIXTURES / "valid" / "signature-1").read_bytes())
    changed = SigstoreSignature(good.mime_type, good.payload.replace(b"cosign-signed", b"cosign-forged"),
                                good.annotations)
    with pytest.raises(PolicyDeniedError, match="not valid for the policy's keys"):
        _verify(requirement, "valid", f"{COSIGN_IDENTITY}:latest", [changed.blob()])
    with pytest.raises(PolicyDeniedError, match="has none"):
        _verify(requirement, "valid", f"{COSIGN_IDENTITY}:latest", [])
    with pytest.raises(UnsupportedError, match="fulcio"):
        _verify({**requirement, "fulcio": {}}, "valid", f"{COSIGN_IDENTITY}:latest")


# -- end to end, with the registry and skopeo ----------------------------------

@pytest.fixture
def sigstore(tmp_path, registry):
    """Key pairs made by ketch; `trust set` requiring the key under `signed/` (accepting the rest)
    and turning the attachments on there in registries.d; a store."""
    (tmp_path / "pass").write_text("secret words\n")
    run_ketch("image", "generate-sigstore-key", "--output-prefix", str(tmp_path / "key"), "--passphrase-file",
              str(tmp_path / "pass"))
    run_ketch("image", "generate-sigstore-key", "--output-prefix", str(tmp_path / "other"), "--passphrase-file",
              str(tmp_path / "pass"))
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "other.yaml").write_text("docker:\n  example.com:\n    lookaside: https://example.com/s\n")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    # podman's (4.4+) trust set: the requirement in policy.json, the attachments on in registries.d
    run_ketch("image", "trust", "set", "--policypath", str(policy), "--registrypath", str(registries_d),
              "-t", "sigstoreSigned", "-f", str(tmp_path / "key.pub"), f"{registry.host}/signed")
    written = json.loads(policy.read_text())
    requirement = {"type": "sigstoreSigned", "keyPath": str(tmp_path / "key.pub")}
    assert written["transports"]["docker"] == {f"{registry.host}/signed": [requirement]}
    made = {p.name: yaml.safe_load(p.read_text()) for p in registries_d.glob("*.yaml")}
    assert made["other.yaml"] == {"docker": {"example.com": {"lookaside": "https://example.com/s"}}}
    assert [v for k, v in made.items() if k != "other.yaml"] == [
        {"docker": {f"{registry.host}/signed": {"use-sigstore-attachments": True}}}]
    # (a dir: names no registry: the identity must be stated)
    written["transports"]["dir"] = {str(tmp_path / "fromskopeo"): [{**requirement, "signedIdentity": {
        "type": "exactRepository", "dockerRepository": f"{registry.host}/signed/ketch"}}]}
    policy.write_text(json.dumps(written))
    common = ["--registries.d", str(registries_d), "--policy", str(policy), "--root", str(tmp_path / "root"),
              "--runroot", str(tmp_path / "run")]
    return {"tmp": tmp_path, "registry": registry, "registries_d": registries_d, "policy": policy,
            "common": common, "sign": ["--sign-by-sigstore-private-key", str(tmp_path / "key.private"),
                                       "--sign-passphrase-file", str(tmp_path / "pass")]}


def _ketch(s, *args: str, check: bool = True):
    return run_ketch(*s["common"], *args, check=check)


def _skopeo(s, *args: str) -> None:
    result = subprocess.run(["skopeo", "--registries.d", str(s["registries_d"]), "--insecure-policy", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def _images(s) -> list:
    return json.loads(_ketch(s, "images", "--format", "json").stdout)


@pytest.mark.registry
@pytest.mark.peer
def test_ketch_signs_into_the_attachment_skopeo_reads_it(sigstore, busybox_layout):
    s = sigstore
    reference = f"{s['registry'].host}/signed/ketch:1"
    _ketch(s, "image", "copy", "-q", "--dest-tls-verify=false", *s["sign"], f"oci:{busybox_layout}:latest",
           f"docker://{reference}")
    # the attachment, as cosign lays it out
    digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                             f"docker://{reference}"], capture_output=True, text=True, check=True).stdout.strip()
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{s['registry'].host}/signed/ketch:{digest.replace(':', '-')}.sig"],
                         capture_output=True, text=True, check=True).stdout
    layers = json.loads(raw)["layers"]
    assert [layer["mediaType"] for layer in layers] == ["application/vnd.dev.cosign.simplesigning.v1+json"]
    assert "dev.cosignproject.cosign/signature" in layers[0]["annotations"]
    # skopeo copies the image with its signature out of the attachment, into a dir: (its blob form)
    out = s["tmp"] / "fromskopeo"
    _skopeo(s, "copy", "-q", "--src-tls-verify=false", f"docker://{reference}", f"dir:{out}")
    assert (out / "signature-1").read_bytes().startswith(b"\x00sigstore-json\n")
    # ...which ketch verifies (dir: scope requires the key) and pulls; and pulls from the registry
    _ketch(s, "pull", "-q", f"dir:{out}")
    _ketch(s, "pull", "-q", "--tls-verify=false", reference)
    assert len({image["Id"] for image in _images(s)}) == 1
    # a second signature is added to the attachment, not written over the first
    _ketch(s, "image", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", *s["sign"],
           f"docker://{reference}", f"docker://{reference}")
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{s['registry'].host}/signed/ketch:{digest.replace(':', '-')}.sig"],
                         capture_output=True, text=True, check=True).stdout
    assert len(json.loads(raw)["layers"]) == 2


@pytest.mark.registry
@pytest.mark.peer
def test_skopeo_writes_the_attachment_ketch_verifies(sigstore, busybox_layout):
    """skopeo copies a signed dir: to the registry: it writes the attachment; ketch reads and verifies it."""
    s = sigstore
    signed_dir = s["tmp"] / "signed-dir"
    identity = f"{s['registry'].host}/signed/byskopeo:1"
    _ketch(s, "image", "copy", "-q", *s["sign"], "--sign-identity", identity, f"oci:{busybox_layout}:latest",
           f"dir:{signed_dir}")
    _skopeo(s, "copy", "-q", "--dest-tls-verify=false", f"dir:{signed_dir}", f"docker://{identity}")
    _ketch(s, "pull", "-q", "--tls-verify=false", identity)
    assert len({image["Id"] for image in _images(s)}) == 1
    # the store keeps the signature, and a push carries it on (checked by the policy on the way back)
    again = f"{s['registry'].host}/signed/byskopeo:2"
    _ketch(s, "push", "-q", "--tls-verify=false", identity, f"docker://{again}")
    _ketch(s, "rmi", "-a")
    policy = json.loads(s["policy"].read_text())
    policy["transports"]["docker"][f"{s['registry'].host}/signed"][0]["signedIdentity"] = {
        "type": "matchRepository"}
    s["policy"].write_text(json.dumps(policy))
    _ketch(s, "pull", "-q", "--tls-verify=false", again)


def _refused(s, reference: str, expected: str) -> None:
    result = _ketch(s, "pull", "-q", "--tls-verify=false", reference, check=False)
    assert result.returncode != 0, result.stdout
    assert result.stderr.count("\n") == 1 and "sigstoreSigned" in result.stderr and expected in result.stderr, \
        result.stderr
    assert _images(s) == []


@pytest.mark.registry
@pytest.mark.peer
def test_sigstore_refusals_store_nothing(sigstore, busybox_layout):
    s = sigstore
    host = s["registry"].host
    _ketch(s, "image", "copy", "-q", "--dest-tls-verify=false", f"oci:{busybox_layout}:latest",
           f"docker://{host}/signed/unsigned:1")
    _refused(s, f"{host}/signed/unsigned:1", "has none")
    other = ["--sign-by-sigstore-private-key", str(s["tmp"] / "other.private"), "--sign-passphrase-file",
             str(s["tmp"] / "pass")]
    _ketch(s, "image", "copy", "-q", "--dest-tls-verify=false", *other, f"oci:{busybox_layout}:latest",
           f"docker://{host}/signed/other:1")
    _refused(s, f"{host}/signed/other:1", "not valid for the policy's keys")
    _ketch(s, "image", "copy", "-q", "--dest-tls-verify=false", *s["sign"], "--sign-identity",
           f"{host}/elsewhere/x:1", f"oci:{busybox_layout}:latest", f"docker://{host}/signed/identity:1")
    _refused(s, f"{host}/signed/identity:1", "signedIdentity")
    wrong = _ketch(s, "image", "copy", "-q", "--dest-tls-verify=false", "--sign-by-sigstore-private-key",
                   str(s["tmp"] / "key.private"), f"oci:{busybox_layout}:latest", f"docker://{host}/x/y:1",
                   check=False)
    assert wrong.returncode != 0 and "passphrase" in wrong.stderr and wrong.stderr.count("\n") == 1


@pytest.mark.registry
@pytest.mark.peer
def test_layouts_keep_sigstore_signatures_and_archives_refuse_them(sigstore, busybox_layout):
    s = sigstore
    layout = s["tmp"] / "layout"
    _ketch(s, "image", "copy", "-q", *s["sign"], "--sign-identity", f"{s['registry'].host}/signed/ketch:1",
           f"oci:{busybox_layout}:latest", f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    names = sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"])
    assert names[0].startswith("sha256-") and names[0].endswith(".sig") and names[1] == "v1"
    # skopeo still reads the image out of the layout; ketch carries the signature on to a dir:
    _skopeo(s, "copy", "-q", f"oci:{layout}:v1", f"dir:{s['tmp'] / 'byskopeo'}")
    out = s["tmp"] / "fromskopeo"
    _ketch(s, "image", "copy", "-q", f"oci:{layout}:v1", f"dir:{out}")
    _ketch(s, "pull", "-q", f"dir:{out}")  # (the dir: scope requires the key)
    refused = _ketch(s, "image", "copy", "-q", f"oci:{layout}:v1", f"docker-archive:{s['tmp'] / 'a.tar'}",
                     check=False)
    assert refused.returncode != 0 and "--remove-signatures" in refused.stderr
    assert not (s["tmp"] / "a.tar").exists()
    _ketch(s, "image", "copy", "-q", "--remove-signatures", f"oci:{layout}:v1",
           f"docker-archive:{s['tmp'] / 'a.tar'}")


@pytest.mark.registry
@pytest.mark.peer
def test_a_lying_attachment_is_refused(sigstore, busybox_layout):
    """An attachment whose signature layer claims more than 4 MiB, or with more layers than any
    image has signatures: one line, nothing stored."""
    import io

    from ketch.image.context import SystemContext
    from ketch.image.docker import push
    from ketch.image.docker.client import RegistryClient
    from ketch.oci import Digest

    s = sigstore
    host = s["registry"].host
    reference = f"{host}/signed/lying:1"
    _ketch(s, "image", "copy", "-q", "--dest-tls-verify=false", f"oci:{busybox_layout}:latest", f"docker://{reference}")
    digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                             f"docker://{reference}"], capture_output=True, text=True, check=True).stdout.strip()
    ctx = SystemContext()
    ctx.tls_verify = False
    client = RegistryClient(host, ctx, repository="signed/lying", registry_name=host, insecure=True)
    tag = digest.replace(":", "-") + ".sig"
    try:
        big = b"x" * ((4 << 20) + 1)
        config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
        for blob in (big, config):
            push.upload_blob(client, io.BytesIO(blob), Digest.of(blob), len(blob), None)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": str(Digest.of(config)), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                                "digest": str(Digest.of(big)), "size": len(big)}]}
        push.put_manifest(client, tag, json.dumps(manifest).encode(), manifest["mediaType"])
        result = _ketch(s, "pull", "-q", "--tls-verify=false", reference, check=False)
        assert result.returncode != 0 and "over 4 MiB" in result.stderr and result.stderr.count("\n") == 1, \
            result.stderr
        assert _images(s) == []
        manifest["layers"] = [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                               "digest": str(Digest.of(config)), "size": len(config)}] * 129
        push.put_manifest(client, tag, json.dumps(manifest).encode(), manifest["mediaType"])
        result = _ketch(s, "pull", "-q", "--tls-verify=false", reference, check=False)
        assert result.returncode != 0 and "129 layers, over 128" in result.stderr, result.stderr
        assert _images(s) == []
    finally:
        client.close()
