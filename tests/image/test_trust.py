"""Simple signing, both ways with skopeo: signatures made by skopeo verified by ketch's policy
checks, signatures made by ketch verified by skopeo's, in a lookaside on disk and over HTTP, and
every way a signature can fail to satisfy ``signedBy`` refused with one line and nothing stored.
GnuPG homes are the tests' own, never the user's."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import run_ketch
from tests.support.registry import free_port

pytestmark = [pytest.mark.registry, pytest.mark.peer]


class Keys:
    """A GnuPG home of the test's own with signing keys, their public keys exported to files."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700)
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        self.fingerprints: dict[str, str] = {}

    def gpg(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--batch", *args], env=self.env, input=data, capture_output=True, check=True)

    def make(self, name: str, expire: str = "1y", *time: str) -> str:
        self.gpg(*time, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key",
                 f"{name} <{name}@ketch.test>", "ed25519", "sign", expire)
        listing = self.gpg("--list-keys", "--with-colons", f"{name}@ketch.test").stdout.decode()
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        self.fingerprints[name] = fingerprint
        (self.home.parent / f"{name}.pub").write_bytes(self.gpg("--export", fingerprint).stdout)
        return fingerprint

    def revoke(self, name: str) -> None:
        certificate = (self.home / "openpgp-revocs.d" / f"{self.fingerprints[name]}.rev").read_text()
        self.gpg("--import", data=certificate.replace(":-----BEGIN", "-----BEGIN").encode())
        (self.home.parent / f"{name}.pub").write_bytes(self.gpg("--export", self.fingerprints[name]).stdout)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False, capture_output=True)


def payload(reference: str, digest: str) -> bytes:
    """containers/image's "atomic container signature" payload, written out by the test."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "atomic container signature"}, "optional": {}}).encode()


def busybox_digest(layout: Path) -> str:
    return json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory, registry, busybox_layout):
    """alice (trusted), mallory (not), and signatures made ahead by a key that has expired since
    (made three days ago with a life of one) and by one revoked since."""
    made = Keys(tmp_path_factory.mktemp("gpg") / "home")
    try:
        made.make("alice")
        made.make("mallory")
        past = ("--faked-system-time", str(int(__import__("time").time()) - 3 * 86400))
        made.make("expired", "1d", *past)
        made.make("revoked")
        made.presigned = {}
        for name, extra in (("expired", past), ("revoked", ())):
            reference = f"{registry.host}/signed/{name}:1"
            made.presigned[name] = made.gpg(*extra, "--local-user", made.fingerprints[name], "--sign",
                                            data=payload(reference, busybox_digest(busybox_layout))).stdout
        made.revoke("revoked")
        yield made
    finally:
        made.close()


class Lookaside(http.server.SimpleHTTPRequestHandler):
    garbage: bytes | None = None

    def do_GET(self):  # noqa: N802 (the base class's name)
        if self.garbage is not None and self.path.endswith("/signature-1"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.garbage)))
            self.end_headers()
            self.wfile.write(self.garbage)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def trust(tmp_path, registry, keys):
    """registries.d (a file:// lookaside for the registry, and an http:// one for its `web/`
    repositories), a policy requiring alice's signature under `signed/` and `web/`, a store."""
    lookaside = tmp_path / "lookaside"
    lookaside.mkdir()
    port = free_port()
    handler = type("Handler", (Lookaside,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             lambda *a: handler(*a, directory=str(lookaside)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "test.yaml").write_text(
        f"docker:\n  {registry.host}:\n    lookaside: file://{lookaside}\n    lookaside-staging: file://{lookaside}\n"
        f"  {registry.host}/web:\n    lookaside: http://127.0.0.1:{port}\n"
        f"    lookaside-staging: file://{lookaside}\n")
    alice = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(keys.home.parent / "alice.pub")}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {
        f"{registry.host}/signed": [alice], f"{registry.host}/web": [alice]}}}))
    common = ["--registries.d", str(registries_d), "--policy", str(policy)]
    store = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    try:
        yield {"registry": registry, "keys": keys, "lookaside": lookaside, "registries_d": registries_d,
               "policy": policy, "common": common, "store": store, "handler": handler, "tmp": tmp_path}
    finally:
        server.shutdown()
        server.server_close()


def skopeo(trust, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["skopeo", "--registries.d", str(trust["registries_d"]), "--policy",
                             str(trust["policy"]), *args], env=trust["keys"].env, capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode:
        raise AssertionError(f"skopeo {' '.join(args)}: {result.stderr}")
    return result


def ketch(trust, *args: str, check: bool = True):
    scratch = trust["tmp"] / "ketch-tmp"  # (TMPDIR of ketch's commands: what they leave there is seen)
    scratch.mkdir(exist_ok=True)
    return run_ketch(*trust["common"], *trust["store"], *args, check=check,
                     env={**trust["keys"].env, "TMPDIR": str(scratch)})


def left_behind(trust) -> list[str]:
    return sorted(p.name for p in (trust["tmp"] / "ketch-tmp").glob("ketch-gpg-*"))


def push_signed(trust, busybox_layout, repository: str, key: str | None = "alice", *extra: str) -> str:
    """skopeo pushes busybox to REPOSITORY, signing with KEY (none: unsigned); the image's reference."""
    reference = f"{trust['registry'].host}/{repository}:1"
    signing = ["--sign-by", trust["keys"].fingerprints[key]] if key else []
    skopeo(trust, "copy", "-q", "--dest-tls-verify=false", *signing, *extra, f"oci:{busybox_layout}:latest",
           f"docker://{reference}")
    return reference


def images(trust) -> list:
    return json.loads(ketch(trust, "images", "--format", "json").stdout)


def test_skopeo_signs_and_ketch_verifies(trust, busybox_layout):
    reference = push_signed(trust, busybox_layout, "signed/skopeo")
    ketch(trust, "pull", "-q", "--tls-verify=false", reference)
    assert len(images(trust)) == 1
    copied = trust["tmp"] / "copied"
    ketch(trust, "image", "copy", "-q", "--src-tls-verify=false", f"docker://{reference}", f"dir:{copied}")
    carried = subprocess.run(["skopeo", "standalone-verify", str(copied / "manifest.json"), reference,
                              trust["keys"].fingerprints["alice"], str(copied / "signature-1")],
                             env=trust["keys"].env, capture_output=True, text=True)
    assert carried.returncode == 0, carried.stderr
    # the HTTP lookaside
    web = push_signed(trust, busybox_layout, "web/skopeo")
    ketch(trust, "pull", "-q", "--tls-verify=false", web)
    assert left_behind(trust) == []  # (the GnuPG homes of the checks are gone with them)


def test_ketch_signs_and_skopeo_verifies(trust, busybox_layout):
    reference = f"{trust['registry'].host}/signed/ketch:1"
    ketch(trust, "image", "copy", "-q", "--dest-tls-verify=false", "--sign-by", trust["keys"].fingerprints["alice"],
          f"oci:{busybox_layout}:latest", f"docker://{reference}")
    skopeo(trust, "copy", "-q", "--src-tls-verify=false", f"docker://{reference}", f"dir:{trust['tmp'] / 'out'}")
    assert (trust["tmp"] / "out" / "signature-1").exists()
    # and what ketch signs with another identity, skopeo refuses as ketch does
    other = f"{trust['registry'].host}/signed/other:1"
    ketch(trust, "image", "copy", "-q", "--dest-tls-verify=false", "--sign-by", trust["keys"].fingerprints["alice"],
          "--sign-identity", "docker.io/library/busybox:1", f"oci:{busybox_layout}:latest", f"docker://{other}")
    refused = skopeo(trust, "copy", "-q", "--src-tls-verify=false", f"docker://{other}",
                     f"dir:{trust['tmp'] / 'out2'}", check=False)
    assert refused.returncode != 0
    mine = ketch(trust, "pull", "-q", "--tls-verify=false", other, check=False)
    assert mine.returncode != 0 and "signedIdentity" in mine.stderr


def test_standalone_sign_and_verify_both_ways(trust, tmp_path, busybox_layout):
    manifest = tmp_path / "manifest.json"
    index = json.loads((busybox_layout / "index.json").read_text())
    manifest.write_bytes((busybox_layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    alice = trust["keys"].fingerprints["alice"]
    run_ketch("image", "standalone-sign", "-o", str(tmp_path / "k.sig"), str(manifest), "example.com/a:1", alice,
              env=trust["keys"].env)
    verified = subprocess.run(["skopeo", "standalone-verify", str(manifest), "example.com/a:1", alice,
                               str(tmp_path / "k.sig")], env=trust["keys"].env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    subprocess.run(["skopeo", "standalone-sign", "-o", str(tmp_path / "s.sig"), str(manifest), "example.com/a:1",
                    alice], env=trust["keys"].env, check=True, capture_output=True)
    mine = run_ketch("image", "standalone-verify", str(manifest), "example.com/a:1", alice, str(tmp_path / "s.sig"),
                     env=trust["keys"].env)
    assert mine.stdout.startswith(f"Signature verified using fingerprint {alice}, digest sha256:")
    wrong = run_ketch("image", "standalone-verify", str(manifest), "example.com/b:1", alice,
                      str(tmp_path / "s.sig"), env=trust["keys"].env, check=False)
    assert wrong.returncode == 1 and "not example.com/b:1" in wrong.stderr


def _refused(trust, reference: str, expected: str | tuple[str, ...]) -> None:
    result = ketch(trust, "pull", "-q", "--tls-verify=false", reference, check=False)
    assert result.returncode != 0, result.stdout
    reasons = (expected,) if isinstance(expected, str) else expected
    assert result.stderr.count("\n") == 1 and "signedBy" in result.stderr, result.stderr
    assert any(reason in result.stderr for reason in reasons), result.stderr
    assert images(trust) == []


def _signature(trust, reference: str) -> Path:
    found = list(trust["lookaside"].glob(f"{reference.split('/', 1)[1].rsplit(':', 1)[0]}@sha256=*/signature-1"))
    assert len(found) == 1
    return found[0]


def test_refused_signatures(trust, busybox_layout, tmp_path):
    _refused(trust, push_signed(trust, busybox_layout, "signed/unsigned", None), "no signatures")
    _refused(trust, push_signed(trust, busybox_layout, "signed/mallory", "mallory"), "does not trust")
    tampered = push_signed(trust, busybox_layout, "signed/tampered")
    path = _signature(trust, tampered)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    # Where the flip falls decides gpg's answer: changed data or a broken packet ("is not ..."), or
    # a changed issuer key id, which gpg reports as an unknown key. Each must refuse, in one line.
    _refused(trust, tampered, ("signature 1: the signature is not", "signature 1: the signature is made by a key"))
    # a good signature of another manifest (the v2s2 form of the same image), moved beside this one
    other = push_signed(trust, busybox_layout, "signed/v2s2", "alice", "--format", "v2s2")
    moved = push_signed(trust, busybox_layout, "signed/moved", None)
    target = Path(str(_signature(trust, other)).replace("signed/v2s2", "signed/moved"))
    digest = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                             f"docker://{moved}"], capture_output=True, text=True, check=True).stdout.strip()
    target = trust["lookaside"] / "signed" / f"moved@{digest.replace(':', '=')}" / "signature-1"
    target.parent.mkdir(parents=True)
    target.write_bytes(_signature(trust, other).read_bytes())
    _refused(trust, moved, "signs another manifest")
    for name in ("expired", "revoked"):  # (signed when the keys were good)
        reference = push_signed(trust, busybox_layout, f"signed/{name}", None)
        path = trust["lookaside"] / "signed" / f"{name}@{busybox_digest(busybox_layout).replace(':', '=')}" / \
            "signature-1"
        path.parent.mkdir(parents=True)
        path.write_bytes(trust["keys"].presigned[name])
        policy = json.loads(trust["policy"].read_text())
        policy["transports"]["docker"][f"{trust['registry'].host}/signed"][0]["keyPath"] = \
            str(trust["keys"].home.parent / f"{name}.pub")
        trust["policy"].write_text(json.dumps(policy))
        _refused(trust, reference, f"made by {'an expired' if name == 'expired' else 'a revoked'} key")
    assert left_behind(trust) == []


def test_a_lying_lookaside_is_refused(trust, busybox_layout):
    web = push_signed(trust, busybox_layout, "web/lying")
    trust["handler"].garbage = b"\x00garbage" * 10
    _refused(trust, web, "not a valid OpenPGP")
    trust["handler"].garbage = b"x" * (5 << 20)
    result = ketch(trust, "pull", "-q", "--tls-verify=false", web, check=False)
    assert result.returncode != 0 and "larger than 4 MiB" in result.stderr and images(trust) == []


def test_a_policy_that_does_not_parse_refuses_everything(trust, busybox_layout):
    reference = push_signed(trust, busybox_layout, "anything/x", None)
    trust["policy"].write_text('{"default": [{"type": "insecureAcceptAnything"}')
    result = ketch(trust, "pull", "-q", "--tls-verify=false", reference, check=False)
    assert result.returncode != 0 and "not valid JSON" in result.stderr and images(trust) == []


def test_copies_carry_signatures_and_refuse_to_invalidate_them(trust, busybox_layout):
    reference = push_signed(trust, busybox_layout, "signed/carry")
    out = trust["tmp"] / "carry"
    changed = ketch(trust, "image", "copy", "-q", "--src-tls-verify=false", "--format", "v2s2",
                    f"docker://{reference}", f"dir:{out}", check=False)
    assert changed.returncode != 0 and "Would invalidate signatures" in changed.stderr
    assert not (out / "manifest.json").exists()
    ketch(trust, "image", "copy", "-q", "--src-tls-verify=false", "--format", "v2s2", "--remove-signatures",
          f"docker://{reference}", f"dir:{out}")
    assert (out / "manifest.json").exists() and not (out / "signature-1").exists()


def test_podman_pulls_what_ketch_signed(trust, busybox_layout, podman, isolated_auth):
    """podman reads registries.d from the user's ~/.config/containers/registries.d (HOME is the test's)."""
    reference = f"{trust['registry'].host}/signed/forpodman:1"
    ketch(trust, "image", "copy", "-q", "--dest-tls-verify=false", "--sign-by", trust["keys"].fingerprints["alice"],
          f"oci:{busybox_layout}:latest", f"docker://{reference}")
    user_d = isolated_auth / ".config" / "containers" / "registries.d"
    user_d.mkdir(parents=True)
    shutil.copy(trust["registries_d"] / "test.yaml", user_d / "test.yaml")
    podman.run("pull", "-q", "--tls-verify=false", "--signature-policy", str(trust["policy"]), reference)
    unsigned = f"{trust['registry'].host}/signed/forpodman-unsigned:1"
    ketch(trust, "image", "copy", "-q", "--dest-tls-verify=false", f"oci:{busybox_layout}:latest",
          f"docker://{unsigned}")
    refused = podman.run("pull", "-q", "--tls-verify=false", "--signature-policy", str(trust["policy"]), unsigned,
                         check=False)
    assert refused.returncode != 0 and "signature" in refused.stderr.lower()


def test_push_signs(trust, busybox_layout):
    image_id = ketch(trust, "pull", "-q", f"oci:{busybox_layout}:latest").stdout.split()[-1]
    reference = f"{trust['registry'].host}/signed/pushed:1"
    ketch(trust, "push", "-q", "--tls-verify=false", "--sign-by", trust["keys"].fingerprints["alice"], image_id,
          f"docker://{reference}")
    ketch(trust, "rmi", image_id)
    ketch(trust, "pull", "-q", "--tls-verify=false", reference)  # under the policy requiring alice's signature
    verified = skopeo(trust, "copy", "-q", "--src-tls-verify=false", f"docker://{reference}",
                      f"dir:{trust['tmp'] / 'pushed'}")
    assert verified.returncode == 0 and (trust["tmp"] / "pushed" / "signature-1").exists()


def test_generate_sigstore_key(tmp_path):
    """The cosign/sigstore key format: a PEM ENCRYPTED SIGSTORE PRIVATE KEY around go-securesystemslib's
    JSON (scrypt N=32768 r=8 p=1, a 32-byte salt; nacl/secretbox, a 24-byte nonce) sealing a PKCS #8
    P-256 key, and its PEM public key. (Debian's skopeo 1.9 is built with sigstore disabled -- "Debian-local
    change: sigstore disabled" -- so no peer here can sign or verify with it: the format is checked against
    its documented layout and by opening it.)"""
    import base64

    from cryptography.hazmat.primitives import serialization

    from ketch.errors import InvalidInputError
    from ketch.image.sigstore import load_private_key

    (tmp_path / "pass").write_text("a passphrase\n")
    run_ketch("image", "generate-sigstore-key", "--output-prefix", str(tmp_path / "key"), "--passphrase-file",
              str(tmp_path / "pass"))
    assert oct((tmp_path / "key.private").stat().st_mode & 0o777) == "0o600"
    again = run_ketch("image", "generate-sigstore-key", "--output-prefix", str(tmp_path / "key"),
                      "--passphrase-file", str(tmp_path / "pass"), check=False)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    text = (tmp_path / "key.private").read_text()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = text.split("-----")[2]
    document = json.loads(base64.b64decode("".join(body.split())))
    assert document["kdf"]["name"] == "scrypt" and document["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"]["name"] == "nacl/secretbox" and len(base64.b64decode(document["cipher"]["nonce"])) == 24
    private = load_private_key(text.encode(), b"a passphrase")
    public = serialization.load_pem_public_key((tmp_path / "key.pub").read_bytes())
    assert private.curve.name == "secp256r1"
    assert public.public_numbers() == private.public_key().public_numbers()
    with pytest.raises(InvalidInputError, match="passphrase"):
        load_private_key(text.encode(), b"nope")


def test_every_way_in_checks_the_policy(trust, busybox_layout, tmp_path):
    """run and create (their pulls), build's FROM and load meet the policy of the global
    --signature-policy, as pull and image copy do; nothing is stored when they are refused."""
    unsigned = push_signed(trust, busybox_layout, "signed/everyway", None)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {unsigned}\nRUN true\n")
    for args in (["run", "--rm", "--tls-verify=false", unsigned, "true"], ["create", "--tls-verify=false", unsigned],
                 ["build", "--tls-verify=false", "-t", "x", str(context)]):
        result = ketch(trust, *args, check=False)
        assert result.returncode != 0 and "signedBy" in result.stderr and "no signatures" in result.stderr, \
            (args, result.stderr)
        assert images(trust) == []
    signed = push_signed(trust, busybox_layout, "signed/everyway-signed")
    ketch(trust, "create", "--tls-verify=false", signed)
    assert len(images(trust)) == 1
    archive = tmp_path / "busybox.tar"
    ketch(trust, "save", "-o", str(archive), signed)
    ketch(trust, "rm", "-a")
    ketch(trust, "rmi", "-a")
    policy = json.loads(trust["policy"].read_text())
    policy["transports"]["docker-archive"] = {"": [{"type": "reject"}]}
    trust["policy"].write_text(json.dumps(policy))
    refused = ketch(trust, "load", "-i", str(archive), check=False)
    assert refused.returncode != 0 and "rejects docker-archive:" in refused.stderr and images(trust) == []
    assert left_behind(trust) == []  # (run and create end with os._exit: no exit handler cleans up for them)
