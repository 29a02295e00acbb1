"""ketch image … against skopeo 1.9 (and podman's image sign): the same copies with the same
report lines on stdout, the same files, the same words where skopeo's carry a registry's; and
signatures skopeo verifies."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import KETCH

pytestmark = pytest.mark.peer

REPORT = ["Getting image source signatures", "Copying blob sha256:{blob}", "Copying config sha256:{config}",
          "Writing manifest to image destination", "Storing signatures"]


def _run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env=env or dict(os.environ))


def both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``ketch image ARGS`` and ``skopeo ARGS``; {tool} in an argument is k or s."""
    ours = _run([KETCH, "image", *(a.replace("{tool}", "k") for a in args)])
    theirs = _run(["skopeo", *(a.replace("{tool}", "s") for a in args)])
    return ours, theirs


def test_copies_report_and_write_as_skopeos(busybox_layout, tmp_path):
    source = f"oci:{busybox_layout}:latest"
    for destination in (f"oci:{tmp_path}/{{tool}}-layout:x", f"dir:{tmp_path}/{{tool}}-dir",
                        f"docker-archive:{tmp_path}/{{tool}}.tar:localhost/foo:1",
                        f"oci-archive:{tmp_path}/{{tool}}-oci.tar"):
        ours, theirs = both("copy", source, destination)
        assert (ours.returncode, theirs.returncode) == (0, 0), (ours.stderr, theirs.stderr)
        assert ours.stdout == theirs.stdout, destination  # report lines on stdout, digests and all
        lines = ours.stdout.splitlines()
        assert [re.sub(r"sha256:[0-9a-f]{64}", "sha256:{x}", line) for line in lines] == \
            [line.replace("{blob}", "{x}").replace("{config}", "{x}") for line in REPORT]
        ours, theirs = both("copy", "-q", source, destination)
        assert ours.stdout == theirs.stdout == ""
    # the same files
    for name in ("manifest.json", "version"):
        assert (tmp_path / "k-dir" / name).read_bytes() == (tmp_path / "s-dir" / name).read_bytes()
    assert sorted(os.listdir(tmp_path / "k-dir")) == sorted(os.listdir(tmp_path / "s-dir"))
    # (ketch's index.json also names its own mediaType, as the image spec recommends)
    assert json.loads((tmp_path / "k-layout" / "index.json").read_text())["manifests"] == \
        json.loads((tmp_path / "s-layout" / "index.json").read_text())["manifests"]
    # list-tags of a docker archive
    ours, theirs = both("list-tags", f"docker-archive:{tmp_path}/{{tool}}.tar")
    assert ours.returncode == theirs.returncode == 0
    assert json.loads(ours.stdout) == json.loads(theirs.stdout) == {"Tags": ["localhost/foo:1"]}
    # each reads what the other wrote: the same image (skopeo's archive source calls the
    # uncompressed layers gzip in the manifest it makes up, so that manifest's digest differs)
    ours, theirs = (_run([KETCH, "image", "inspect", "--config", f"docker-archive:{tmp_path}/s.tar"]),
                    _run(["skopeo", "inspect", "--config", f"docker-archive:{tmp_path}/k.tar"]))
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)
    ours, theirs = (_run([KETCH, "image", "inspect", f"docker-archive:{tmp_path}/s.tar"]),
                    _run(["skopeo", "inspect", f"docker-archive:{tmp_path}/k.tar"]))
    assert json.loads(ours.stdout)["Layers"] == json.loads(theirs.stdout)["Layers"]


def test_shared_blob_dir(busybox_layout, tmp_path):
    source = f"oci:{busybox_layout}:latest"
    ours, theirs = both("copy", "--dest-shared-blob-dir", f"{tmp_path}/{{tool}}-blobs", source,
                        f"oci:{tmp_path}/{{tool}}-shared:x")
    assert (ours.returncode, theirs.returncode) == (0, 0) and ours.stdout == theirs.stdout
    assert sorted(os.listdir(tmp_path / "k-blobs" / "sha256")) == sorted(os.listdir(tmp_path / "s-blobs" / "sha256"))
    assert not (tmp_path / "k-shared" / "blobs").exists() or not os.listdir(tmp_path / "k-shared" / "blobs")
    # and back, each from the other's
    ours = _run([KETCH, "image", "copy", "--src-shared-blob-dir", f"{tmp_path}/s-blobs", f"oci:{tmp_path}/s-shared:x",
                 f"dir:{tmp_path}/k-back"])
    theirs = _run(["skopeo", "copy", "--src-shared-blob-dir", f"{tmp_path}/k-blobs", f"oci:{tmp_path}/k-shared:x",
                   f"dir:{tmp_path}/s-back"])
    assert (ours.returncode, theirs.returncode) == (0, 0), (ours.stderr, theirs.stderr)
    assert (tmp_path / "k-back" / "manifest.json").read_bytes() == (tmp_path / "s-back" / "manifest.json").read_bytes()


def test_errors_status_and_words(tmp_path):
    cases = [
        (["inspect", f"oci:{tmp_path}/nothere:x"], "no such file or directory"),
        (["copy", f"oci:{tmp_path}/nothere:x", f"dir:{tmp_path}/d"], "no such file or directory"),
        (["inspect", "docker://127.0.0.1:1/x/y"], "connection refused"),
        (["copy", "--nosuch", "a", "b"], "unknown flag: --nosuch"),
        (["copy", f"oci:{tmp_path}/nothere:x", "nosuchtransport:x"], "unknown transport"),
    ]
    for args, words in cases:
        ours, theirs = both(*args)
        assert ours.returncode == theirs.returncode == 1, (args, ours.stderr, theirs.stderr)
        assert words.lower() in ours.stderr.lower() and words.lower() in theirs.stderr.lower(), (args, ours.stderr)
        assert len(ours.stderr.strip().splitlines()) <= 2  # one line, and perhaps the --help hint


def test_registry_words(basic_registry, tmp_path):
    """A registry's refusal, in skopeo's words."""
    url = basic_registry.url("private/busybox")
    ours, theirs = both("inspect", "--tls-verify=false", url)
    assert ours.returncode == theirs.returncode == 1
    assert "authentication required" in theirs.stderr
    assert "authentication required" in ours.stderr
    ours, theirs = both("inspect", "--tls-verify=false", "--creds", "alice:wrong", url)
    assert ours.returncode == theirs.returncode == 1
    assert "unauthorized" in theirs.stderr.lower() and "unauthorized" in ours.stderr.lower()


@pytest.fixture
def gpg_key(tmp_path_factory):
    """A throw-away GnuPG home with one signing key (no passphrase); its fingerprint."""
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Ketch Test <test@ketch.invalid>",
                    "ed25519", "sign", "0"], check=True, capture_output=True, env=env, timeout=60)
    listing = subprocess.run(["gpg", "--list-keys", "--with-colons"], check=True, capture_output=True, text=True,
                             env=env).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
    try:
        yield env, fingerprint
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)


def test_image_sign_is_verified_by_skopeo_and_laid_out_as_podmans(registry, gpg_key, tmp_path, podman):
    env, fingerprint = gpg_key
    url = registry.url("library/busybox")
    reference = url.removeprefix("docker://")
    ours = _run([KETCH, "image", "sign", "--tls-verify=false", "--sign-by", fingerprint, "-d", str(tmp_path / "k"),
                 url], env)
    assert ours.returncode == 0, ours.stderr
    (tmp_path / "p").mkdir()  # (podman's wants it made)
    registries = tmp_path / "registries.conf"  # podman's sign has no --tls-verify: the registry is insecure here
    registries.write_text(f'[[registry]]\nlocation = "{reference.split("/")[0]}"\ninsecure = true\n')
    theirs = _run([*podman.base, "image", "sign", "--sign-by", fingerprint, "-d", str(tmp_path / "p"), url],
                  dict(env, CONTAINERS_CONF=str(podman.conf), CONTAINERS_REGISTRIES_CONF=str(registries)))
    assert theirs.returncode == 0, theirs.stderr
    # the same lookaside layout: REPOSITORY@sha256=DIGEST/signature-1
    ours_files = sorted(str(p.relative_to(tmp_path / "k")) for p in (tmp_path / "k").rglob("*") if p.is_file())
    theirs_files = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert ours_files == theirs_files and ours_files[0].endswith("/signature-1")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(_run(["skopeo", "inspect", "--raw", "--tls-verify=false", url]).stdout)
    for side in ("k", "p"):
        verified = _run(["skopeo", "standalone-verify", str(manifest), reference, fingerprint,
                         str(tmp_path / side / ours_files[0])], env)
        assert verified.returncode == 0, (side, verified.stderr)
        assert "Signature verified" in verified.stdout
    # a signature for another name does not verify
    wrong = _run(["skopeo", "standalone-verify", str(manifest), reference + "-other", fingerprint,
                  str(tmp_path / "k" / ours_files[0])], env)
    assert wrong.returncode != 0
