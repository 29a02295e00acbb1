"""The containers-storage: transport against Debian's podman 4.3 and skopeo 1.9, both ways and
with both of podman's drivers: what podman stored ketch reads (the same image id, the same
layer digests), what ketch writes podman runs and saves (its tar-split gives back our layers bit
for bit), and a ketch killed in the middle of a write leaves a store podman still uses."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import AS_USER, KETCH, run_ketch
from tests.support import images
from tests.support.podman import Podman

pytestmark = pytest.mark.peer


@pytest.fixture(params=["vfs", "overlay"])
def store(request, tmp_path_factory):
    instance = Podman.temporary(tmp_path_factory, f"cs-{request.param}", driver=request.param)
    try:
        yield instance
    finally:
        instance.reset()


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)}: {result.stderr}")
    return result


def _config_digest(layout, tag: str = "latest") -> str:
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    return manifest["config"]["digest"]


def _diff_ids(layout) -> list[str]:
    config = _config_digest(layout)
    return json.loads((layout / "blobs" / "sha256" / config.split(":")[1]).read_text())["rootfs"]["diff_ids"]


def test_ketch_reads_what_podman_stored(store, busybox_layout, tmp_path):
    store.run("pull", "-q", f"oci:{busybox_layout}:latest")
    store.run("tag", _config_digest(busybox_layout).split(":")[1], "docker.io/library/busybox:latest")
    source = store.transport + "busybox"
    # inspect: what skopeo prints, ketch prints (ketch adds LayersData, which skopeo 1.9 predates)
    ours = json.loads(run_ketch("image", "inspect", source).stdout)
    theirs = json.loads(skopeo("inspect", source).stdout)
    assert {k: v for k, v in ours.items() if k != "LayersData"} == theirs
    assert ours["Name"] == "docker.io/library/busybox"
    assert run_ketch("image", "inspect", "--raw", source).stdout.strip() == \
        skopeo("inspect", "--raw", source).stdout.strip()
    # a copy out: the same config, and layers that are the very tars podman pulled
    run_ketch("image", "copy", "-q", source, f"dir:{tmp_path}/d")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["config"]["digest"] == _config_digest(busybox_layout)
    layer = tmp_path / "d" / manifest["layers"][0]["digest"].split(":")[1]
    assert "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest() == _diff_ids(busybox_layout)[0]
    # into ketch's own store, and run
    root = tmp_path / "ketch"
    base = ["--root", str(root / "root"), "--runroot", str(root / "run")]
    try:
        run_ketch(*base, "pull", "-q", source)
        out = run_ketch(*base, "run", "--rm", "--network", "none", "busybox", "echo", "from podman's store")
        assert out.stdout == "from podman's store\n"
        assert run_ketch(*base, "images", "--format", "{{.ID}}", "--no-trunc").stdout.strip() == \
            _config_digest(busybox_layout)
    finally:
        run_ketch(*base, "system", "reset", "-f", check=False)


def test_podman_runs_and_saves_what_ketch_wrote(store, tmp_path):
    whiteouts = images.ensure("whiteouts")
    busybox = images.ensure("busybox")
    derived = images.ensure("derived")
    report = run_ketch("image", "copy", f"oci:{busybox}:latest", store.transport + "localhost/fromketch:1")
    assert "Writing manifest to image destination" in report.stdout
    run_ketch("image", "copy", "-q", f"oci:{derived}:latest", store.transport + "localhost/derived:1")
    run_ketch("image", "copy", "-q", f"oci:{whiteouts}:latest", store.transport + "localhost/whiteouts:1")
    listed = {tuple(i["Names"]): i["Id"] for i in store.images()}
    assert listed[("localhost/fromketch:1",)] == _config_digest(busybox).split(":")[1]
    assert listed[("localhost/derived:1",)] == _config_digest(derived).split(":")[1]
    # the first layer is shared, as containers/storage's own pulls share it
    layers = json.loads((store.root / "root" / f"{store.driver}-layers" / "layers.json").read_text())
    assert len(layers) == 4  # busybox's, derived's second, whiteouts' two
    out = store.run("run", "--rm", "--network", "none", "localhost/derived:1", "cat", "/etc/derived").stdout
    assert out == "hello from the derived image\n"
    # whiteouts and opaque directories in the driver's own form
    if AS_USER:  # (rootless podman mounts in its own namespace: from `podman unshare`)
        podman = " ".join(shlex.quote(arg) for arg in store.base)
        listed_dirs = store.run("unshare", "sh", "-c", f"m=$({podman} image mount localhost/whiteouts:1) && "
                                f"for d in a b c; do echo $(ls $m/$d); done; {podman} image unmount "
                                "localhost/whiteouts:1 >/dev/null").stdout
        assert listed_dirs == "y\nnew\nkeep\n"
    else:
        mount = store.run("image", "mount", "localhost/whiteouts:1").stdout.strip()
        try:
            assert sorted(os.listdir(os.path.join(mount, "a"))) == ["y"]
            assert sorted(os.listdir(os.path.join(mount, "b"))) == ["new"]
            assert sorted(os.listdir(os.path.join(mount, "c"))) == ["keep"]
        finally:
            store.run("image", "unmount", "localhost/whiteouts:1")
    # podman's save reassembles our layers from their tar-split: the bytes the image was made of
    store.run("save", "--format", "oci-archive", "-o", str(tmp_path / "saved.tar"), "localhost/derived:1")
    with tarfile.open(tmp_path / "saved.tar") as archive:
        index = json.load(archive.extractfile("index.json"))
        manifest = json.load(archive.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'][7:]}"))
        saved_ids = []
        for layer in manifest["layers"]:
            data = archive.extractfile(f"blobs/sha256/{layer['digest'][7:]}").read()
            if layer["mediaType"].endswith("gzip"):
                import gzip

                data = gzip.decompress(data)
            saved_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
    assert saved_ids == _diff_ids(derived)
    # skopeo reads it as ketch does
    source = store.transport + "localhost/derived:1"
    ours = json.loads(run_ketch("image", "inspect", source).stdout)
    assert {k: v for k, v in ours.items() if k != "LayersData"} == json.loads(skopeo("inspect", source).stdout)
    # and podman removes it as its own
    store.run("rmi", "localhost/derived:1")
    assert store.run("run", "--rm", "--network", "none", "localhost/fromketch:1", "true").returncode == 0


def test_missing_image_is_an_error_like_skopeos(store):
    ours = run_ketch("image", "inspect", store.transport + "nothere", check=False)
    theirs = skopeo("inspect", store.transport + "nothere", check=False)
    assert ours.returncode == theirs.returncode == 1
    assert "identifier is not an image" in ours.stderr and "identifier is not an image" in theirs.stderr
    assert len(ours.stderr.strip().splitlines()) == 1


# A ketch process that stops for good inside the layer write (its layer recorded incomplete,
# its content half made): the test kills it there with SIGKILL. The pause is injected so the
# kill lands at that point every time, not by timing.
_STOP_INSIDE_LAYER_WRITE = """
import os, sys, time
from ketch.image import containers_storage
real = containers_storage.ContainersStore._make_layer_content
def stop_inside(self, *args):
    real(self, *args)
    sys.stdout.write("inside\\n"); sys.stdout.flush()
    time.sleep(3600)
containers_storage.ContainersStore._make_layer_content = stop_inside
from ketch.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_inside_a_write_leaves_podmans_store_usable(tmp_path_factory):
    store = Podman.temporary(tmp_path_factory, "cs-kill", driver="vfs")  # (podman: a runroot under 50 characters)
    busybox = images.ensure("busybox")
    try:
        store.run("pull", "-q", f"oci:{busybox}:latest")  # an image already there must survive
        before = store.images()
        derived = images.ensure("derived")
        process = subprocess.Popen([sys.executable, "-c", _STOP_INSIDE_LAYER_WRITE, "image", "copy", "-q",
                                    f"oci:{derived}:latest", store.transport + "localhost/killed:1"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # busybox's layer is there already: the write that stops is derived's second layer
            assert process.stdout.readline() == b"inside\n", process.stderr.read()
            layers_json = store.root / "root" / "vfs-layers" / "layers.json"
            incomplete = [r for r in json.loads(layers_json.read_text()) if (r.get("flags") or {}).get("incomplete")]
            assert len(incomplete) == 1
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        # podman: its image is still there and runs; the half-written layer is cleaned away by
        # containers/storage itself; no image of the killed copy
        assert store.images() == before
        out = store.run("run", "--rm", "--network", "none", f"oci:{busybox}:latest", "echo", "still fine")
        assert out.stdout == "still fine\n"
        remaining = {r["id"] for r in json.loads(layers_json.read_text())}
        assert incomplete[0]["id"] not in remaining
        assert not (store.root / "root" / "vfs" / "dir" / incomplete[0]["id"]).exists()
        # the copy again: whole this time
        run_ketch("image", "copy", "-q", f"oci:{derived}:latest", store.transport + "localhost/killed:1")
        out = store.run("run", "--rm", "--network", "none", "localhost/killed:1", "cat", "/etc/derived")
        assert out.stdout == "hello from the derived image\n"
    finally:
        store.reset()


def test_ketch_fails_cleanly_on_a_layer_that_lies(tmp_path, tmp_path_factory):
    """A layer whose content is not what the config says: refused, and nothing left in podman's store."""
    store = Podman.temporary(tmp_path_factory, "cs-lie", driver="overlay")
    try:
        lying = tmp_path / "lying"
        images.make_busybox(lying)
        index = json.loads((lying / "index.json").read_text())
        manifest_path = lying / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]
        manifest = json.loads(manifest_path.read_text())
        config_path = lying / "blobs" / "sha256" / manifest["config"]["digest"][7:]
        config = json.loads(config_path.read_text())
        config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
        data = json.dumps(config).encode()
        digest = hashlib.sha256(data).hexdigest()
        (lying / "blobs" / "sha256" / digest).write_bytes(data)
        manifest["config"].update(digest=f"sha256:{digest}", size=len(data))
        data = json.dumps(manifest).encode()
        digest = hashlib.sha256(data).hexdigest()
        (lying / "blobs" / "sha256" / digest).write_bytes(data)
        index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
        (lying / "index.json").write_text(json.dumps(index))
        result = subprocess.run([KETCH, "image", "copy", "-q", f"oci:{lying}:latest",
                                 store.transport + "localhost/lying:1"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "the config says" in result.stderr
        assert store.images() == []
        layers_json = store.root / "root" / "overlay-layers" / "layers.json"
        assert not layers_json.exists() or json.loads(layers_json.read_text()) == []
    finally:
        store.reset()
