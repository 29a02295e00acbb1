"""The store through the library and the CLI: pull, names, mounts, in-use, diffs, check."""

import errno
import json
import os
import subprocess

import pytest

from ketch import CopyOptions, copy_image
from ketch.errors import InUseError, NotFoundError
from ketch.image.docker import push
from ketch.storage import mounts
from ketch.storage.diff import write_diff
from tests.conftest import run_ketch
from tests.storage.conftest import ANY
from tests.support import images
from tests.support.registry import skopeo_copy


def mount_options(path):
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == str(path):
            return fields[5].split(",")
    return None


@pytest.mark.registry
def test_pull_images_inspect_rmi(registry, store_env):
    out = run_ketch("pull", "--tls-verify=false", "-q", f"{registry.host}/library/busybox")
    image_id = out.stdout.strip()
    assert len(image_id) == 64
    listing = json.loads(run_ketch("images", "--format", "json").stdout)
    assert listing[0]["Id"] == image_id and listing[0]["Names"] == [f"{registry.host}/library/busybox:latest"]
    assert run_ketch("images", "-q").stdout == image_id[:12] + "\n"
    inspected = json.loads(run_ketch("image", "inspect", f"{registry.host}/library/busybox").stdout)[0]
    assert inspected["Id"] == image_id and inspected["Architecture"] == "amd64"
    assert inspected["RootFS"]["Layers"][0].startswith("sha256:")
    assert run_ketch("rmi", f"{registry.host}/library/busybox").stdout.endswith(f"Deleted: {image_id}\n")
    assert run_ketch("images", "-q").stdout == ""
    assert run_ketch("storage", "check").stdout == ""


def test_short_names_and_tags(store_env):
    image_id = store_env.add("busybox", "docker.io/library/busybox:latest")
    store = store_env.store()
    assert store.lookup("busybox").id == image_id
    assert store.lookup(image_id[:12]).id == image_id
    run_ketch("tag", "busybox", "app", "quay.io/team/tool:2")
    names = store.lookup("app").names
    assert names == ["docker.io/library/busybox:latest", "localhost/app:latest", "quay.io/team/tool:2"]
    assert store.lookup("tool:2").id == image_id
    run_ketch("untag", "busybox", "app")
    with pytest.raises(NotFoundError):
        store.lookup("app")
    # rmi of one of several names only untags it.
    assert run_ketch("rmi", "quay.io/team/tool:2").stdout == "Untagged: quay.io/team/tool:2\n"
    assert store.lookup("busybox").id == image_id


def test_layers_are_shared(store_env):
    store_env.add("busybox", "busybox")
    store_env.add("derived", "derived")
    store = store_env.store()
    assert len(store.db.query("SELECT * FROM contents")) == 2  # busybox's layer once, plus the extra one
    store.remove_image("busybox")
    mount = store.mount_image("derived")
    try:
        assert (mount / "bin" / "busybox").exists() and (mount / "etc" / "derived").exists()
    finally:
        store.unmount_image("derived")


def test_mount_is_read_only_counted_and_o1(any_driver_env):
    any_driver_env.add("whiteouts", "wh")
    store = any_driver_env.store()
    path = store.mount_image("wh")
    try:
        # whiteouts of the upper layer hide lower entries, in both drivers
        assert sorted(os.listdir(path / "a")) == ["y"]
        assert sorted(os.listdir(path / "b")) == ["new"]
        assert sorted(os.listdir(path / "c")) == ["keep"]
        options = mount_options(path)
        assert "ro" in options and "nosuid" in options and "nodev" in options
        with pytest.raises(OSError) as excinfo:
            (path / "new-file").write_text("x")
        assert excinfo.value.errno == errno.EROFS
        assert store.mount_image("wh") == path  # a second mount counts
        store.unmount_image("wh")
        assert mounts.is_mountpoint(str(path))
    finally:
        store.unmount_image("wh")
    assert not mounts.is_mountpoint(str(path))


def test_image_mount_cli(store_env):
    store_env.add("busybox", "busybox")
    path = run_ketch("image", "mount", "busybox").stdout.strip()
    try:
        assert os.path.exists(os.path.join(path, "bin", "busybox"))
        assert path in run_ketch("image", "mount").stdout
        refused = run_ketch("rmi", "busybox", check=False)
        assert refused.returncode == 2 and "in use" in refused.stderr and "mount" in refused.stderr  # podman's 2
    finally:
        run_ketch("image", "unmount", "busybox")
    assert not mounts.is_mountpoint(path)


def test_deep_image_mounts(store_env):
    store_env.add("deep", "deep")
    store = store_env.store()
    path = store.mount_image("deep")
    try:
        assert (path / "layer000").read_text() == "layer 0\n" and (path / "layer119").read_text() == "layer 119\n"
    finally:
        store.unmount_image("deep")


def test_in_use_by_container_and_force(store_env):
    store_env.add("busybox", "busybox")
    store = store_env.store()
    container = store.create_container("busybox", "worker")
    with pytest.raises(InUseError, match="container worker"):
        store.remove_image("busybox")
    run = run_ketch("rmi", "busybox", check=False)
    assert run.returncode == 2 and "container worker" in run.stderr  # podman rmi: 2 for an image in use
    store.mount_container(container)
    assert run_ketch("rmi", "-f", "busybox").returncode == 0
    assert store.containers() == []
    assert store.check() == []


def test_container_diff(any_driver_env):
    any_driver_env.add("whiteouts", "wh")
    store = any_driver_env.store()
    container = store.create_container("wh")
    path = store.mount_container(container)
    try:
        (path / "a" / "y").unlink()
        (path / "added").write_text("new file\n")
        os.mkdir(path / "c2")
        subprocess.run(["rm", "-rf", str(path / "c")], check=True)
        os.mkdir(path / "c")
        (path / "c" / "fresh").write_text("fresh\n")
    finally:
        store.unmount_container(container)
    if any_driver_env.driver != "overlay":
        return  # vfs working copies are full trees; diffs are made from overlay upper dirs
    diff_id, size = write_diff(store.container_upper(container), any_driver_env.root.parent / "diff.tar")
    import tarfile

    with tarfile.open(any_driver_env.root.parent / "diff.tar") as tar:
        names = sorted(tar.getnames())
    assert "a/.wh.y" in names and "added" in names and "c/.wh..wh..opq" in names and "c/fresh" in names
    assert "c2" in names
    # Applying that diff onto the image gives the container's view.
    from ketch.storage.apply import apply_layer

    view = any_driver_env.root.parent / "view"
    view.mkdir()
    subprocess.run(["cp", "-a", f"{store.mount_image('wh')}/.", str(view)], check=True)
    store.unmount_image("wh")
    with open(any_driver_env.root.parent / "diff.tar", "rb") as f:
        assert apply_layer(f, str(view), whiteouts="vfs") == (diff_id, size)
    assert not (view / "a" / "y").exists() and sorted(os.listdir(view / "c")) == ["fresh"]
    store.remove_container(container)


@pytest.mark.registry
@pytest.mark.peer
def test_push_of_unchanged_image_sends_no_layer_bytes(registry, store_env, monkeypatch):
    # a repository of this test's own: the session's registry keeps library/busybox as other tests expect it
    skopeo_copy(f"oci:{images.ensure('busybox')}:latest", registry.url("storetest/busybox"))
    run_ketch("pull", "--tls-verify=false", "-q", f"{registry.host}/storetest/busybox")
    uploads = []
    original = push.upload_blob
    monkeypatch.setattr(push, "upload_blob", lambda *a, **k: uploads.append(1) or original(*a, **k))
    ctx = store_env.ctx(tls_verify=False)
    result = copy_image(f"ketch-storage:{registry.host}/storetest/busybox",
                        f"docker://{registry.host}/storetest/busybox:again", CopyOptions(src_ctx=ctx, dest_ctx=ctx,
                                                                                       policy=ANY))
    assert uploads == [] and result.blobs_skipped == 2
    index = json.loads((images.ensure("busybox") / "index.json").read_text())
    assert str(result.manifest_digest) == index["manifests"][0]["digest"]


def test_save_and_load_round_trip(store_env, tmp_path):
    image_id = store_env.add("busybox", "docker.io/library/busybox:latest")
    store_env.add("derived", "localhost/derived:1")
    run_ketch("save", "-o", str(tmp_path / "d.tar"), "busybox")
    run_ketch("save", "-m", "-o", str(tmp_path / "m.tar"), "busybox", "derived:1")
    run_ketch("save", "--format", "oci-archive", "-o", str(tmp_path / "o.tar"), "derived:1")
    run_ketch("rmi", "-a")
    out = run_ketch("load", "-i", str(tmp_path / "d.tar")).stdout
    assert out == "Loaded image: docker.io/library/busybox:latest\n"
    assert store_env.store().lookup("busybox").id == image_id
    out = run_ketch("load", "-i", str(tmp_path / "m.tar")).stdout
    assert "localhost/derived:1" in out
    run_ketch("rmi", "derived:1")
    with open(tmp_path / "o.tar", "rb") as f:
        out = subprocess.run([run_ketch.__globals__["KETCH"], "load"], stdin=f, capture_output=True, text=True)
    assert out.returncode == 0 and "localhost/derived:1" in out.stdout


def test_storage_check_and_repair(store_env):
    store_env.add("busybox", "busybox")
    store = store_env.store()
    assert run_ketch("storage", "check").returncode == 0
    # half-written content, a staging leftover, a stale mount record, an unrecorded blob
    (store_env.root / "overlay" / "deadbeef").mkdir()
    (store_env.root / "staging" / "layer-999999-abc").mkdir()
    (store_env.root / "blobs" / "sha256" / ("0" * 64)).write_text("x")
    with store.db.write() as conn:
        conn.execute("INSERT INTO mounts VALUES ('image:nope', '/nonexistent', 1, 'old-boot')")
        conn.execute("INSERT INTO contents VALUES ('halfway', 'sha256:x', 0, 'LINK', 0, 0)")
    result = run_ketch("storage", "check", check=False)
    assert result.returncode == 1
    for kind in ("unrecorded content", "stale mount", "incomplete content", "unrecorded blob"):
        assert kind in result.stdout, kind
    # An interrupted writer's staging directory (its lock is free) is removed when any command opens the store.
    assert not (store_env.root / "staging" / "layer-999999-abc").exists()
    assert run_ketch("storage", "check", "--repair").returncode == 0
    assert run_ketch("storage", "check").stdout == ""
    path = store.mount_image("busybox")  # the image survived the repair
    store.unmount_image("busybox")
    assert not mounts.is_mountpoint(str(path))


def test_storage_check_leaves_a_running_pulls_staging_alone(store_env):
    """Work in progress (its staging lock held, as a pull holds it) is neither reported as an
    interrupted process's nor removed; once its writer is gone it is."""
    store_env.add("busybox", "busybox")
    store = store_env.store()
    with store.staging_dir("layer") as work:
        (work / "partial").write_bytes(b"x" * 1000)
        result = run_ketch("storage", "check", check=False)
        assert (result.returncode, result.stdout) == (0, "")
        assert work.exists()
        leftover = store_env.root / "staging" / "layer-999999-abc"  # no lock: its writer is gone
        leftover.mkdir()
        result = run_ketch("storage", "check", check=False)
        assert (result.returncode, result.stdout) == (0, "")
        assert not leftover.exists() and work.exists()  # recovery took the abandoned one only
    assert store._staging_abandoned(leftover) is False  # (gone: nothing to report)
    leftover.mkdir()
    assert store._staging_abandoned(leftover) is True


def test_missing_layer_content_is_found_and_broken_image_dropped(store_env):
    store_env.add("derived", "derived")
    store = store_env.store()
    key = store.db.query("SELECT key FROM contents")[0]["key"]
    subprocess.run(["rm", "-rf", str(store_env.root / "overlay" / key)], check=True)
    result = run_ketch("storage", "check", check=False)
    assert result.returncode == 1 and "missing content" in result.stdout
    run_ketch("storage", "check", "--repair")
    assert run_ketch("storage", "check").stdout == ""
    assert run_ketch("images", "-q").stdout == ""


def test_unknown_names_and_bad_input(store_env):
    # podman's statuses: rmi 1 for an image that does not exist, 125 for every other error
    for args, status in ((["rmi", "nothing"], 1), (["image", "inspect", "nothing"], 125),
                         (["image", "mount", "nothing"], 125), (["tag", "nothing", "x"], 125),
                         (["save", "-o", "/tmp/x.tar", "nothing"], 125)):
        result = run_ketch(*args, check=False)
        assert result.returncode == status and "image not known" in result.stderr, args
    assert run_ketch("rmi", "-i", "nothing", check=False).returncode == 0
    bad = run_ketch("load", "-i", "/nonexistent.tar", check=False)
    assert bad.returncode == 125 and "does not exist" in bad.stderr
    assert run_ketch("--storage-driver", "vfs", "images", check=False).returncode == 125  # store is overlay


def test_hostile_layer_is_refused_by_the_store(store_env, tmp_path):
    import gzip
    import hashlib

    from tests.storage.test_apply import make_tar
    from tests.support.images import OCI_LAYER_GZIP, LayoutWriter

    writer = LayoutWriter(tmp_path / "evil")
    data = make_tar(("ok", "file"), ("../escape", "file"))
    layer = writer.blob(gzip.compress(data), OCI_LAYER_GZIP)
    writer.add(writer.image([(layer, "sha256:" + hashlib.sha256(data).hexdigest())], {"config": {}}), "latest")
    writer.finish()
    result = run_ketch("--insecure-policy", "image", "copy", f"oci:{tmp_path}/evil:latest", "ketch-storage:evil",
                       check=False)
    assert result.returncode == 1 and "climbs out" in result.stderr
    assert not (store_env.root.parent / "escape").exists() and not (store_env.root / "escape").exists()
    assert run_ketch("storage", "check").stdout == ""
    assert run_ketch("images", "-q").stdout == ""


def test_diff_id_must_match_config(store_env, tmp_path):
    import gzip

    from tests.storage.test_apply import make_tar
    from tests.support.images import OCI_LAYER_GZIP, LayoutWriter

    writer = LayoutWriter(tmp_path / "liar")
    layer = writer.blob(gzip.compress(make_tar(("f", "file"))), OCI_LAYER_GZIP)
    writer.add(writer.image([(layer, "sha256:" + "1" * 64)], {"config": {}}), "latest")
    writer.finish()
    result = run_ketch("--insecure-policy", "image", "copy", f"oci:{tmp_path}/liar:latest", "ketch-storage:liar",
                       check=False)
    assert result.returncode == 1 and "does not match the config's diff_id" in result.stderr
    assert run_ketch("images", "-q").stdout == ""


@pytest.mark.registry
def test_push_cli_default_and_explicit_destination(registry, store_env, tmp_path):
    run_ketch("pull", "-q", "--tls-verify=false", f"{registry.host}/library/busybox")
    run_ketch("tag", f"{registry.host}/library/busybox", f"{registry.host}/pushed/bycli:1")
    run_ketch("push", "--tls-verify=false", f"{registry.host}/pushed/bycli:1")
    run_ketch("push", "--tls-verify=false", "--digestfile", str(tmp_path / "d"), "busybox",
              f"docker://{registry.host}/pushed/other:2")
    out = run_ketch("image", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                    f"docker://{registry.host}/pushed/other:2").stdout.strip()
    assert out == (tmp_path / "d").read_text()
    run_ketch("push", f"{registry.host}/pushed/bycli:1", f"oci:{tmp_path}/layout:x")
    assert (tmp_path / "layout" / "index.json").exists()


def test_images_filters_prune_and_reset(store_env):
    # podman: --no-trunc ids are "sha256:..."
    busybox = "sha256:" + store_env.add("busybox", "docker.io/library/busybox:latest")
    derived = "sha256:" + store_env.add("derived", "localhost/derived:1")
    assert run_ketch("images", "-q", "--no-trunc", "--filter", "reference=derived*").stdout.split() == [derived]
    labelled = run_ketch("images", "-q", "--no-trunc", "--filter",
                         "label=org.opencontainers.image.title=busybox").stdout.split()
    assert sorted(labelled) == sorted([busybox, derived])  # derived inherits busybox's config
    assert run_ketch("images", "-q", "--filter", "dangling=true").stdout == ""
    bad = run_ketch("images", "--filter", "colour=blue", check=False)
    assert bad.returncode == 125 and "unsupported image filter" in bad.stderr
    run_ketch("untag", "derived:1")
    assert run_ketch("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split() == [derived]
    assert run_ketch("image", "prune").stdout.split() == [derived[len("sha256:"):]]
    assert run_ketch("images", "-q", "--no-trunc").stdout.split() == [busybox]
    digests = run_ketch("images", "--digests").stdout
    assert "DIGEST" in digests and "sha256:" in digests
    refused = run_ketch("system", "reset", check=False)
    assert refused.returncode == 125 and "--force" in refused.stderr
    path = run_ketch("image", "mount", "busybox").stdout.strip()
    run_ketch("system", "reset", "--force")
    assert not mounts.is_mountpoint(path)
    assert run_ketch("images", "-q").stdout == ""


@pytest.mark.registry
def test_vfs_driver_from_the_cli(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("KETCH_ROOT", str(tmp_path / "vfs-root"))
    monkeypatch.setenv("KETCH_RUNROOT", str(tmp_path / "vfs-run"))
    try:
        run_ketch("--storage-driver", "vfs", "pull", "-q", "--tls-verify=false", f"{registry.host}/library/busybox")
        path = run_ketch("image", "mount", "busybox").stdout.strip()
        assert os.path.exists(os.path.join(path, "bin", "busybox"))
        run_ketch("image", "unmount", "busybox")
        assert run_ketch("storage", "check").stdout == ""
        mismatch = run_ketch("--storage-driver", "overlay", "images", check=False)
        assert mismatch.returncode == 125 and "uses the vfs driver" in mismatch.stderr
    finally:
        run_ketch("system", "reset", "--force")


@pytest.mark.registry
def test_pull_all_tags_and_platform(registry, store_env):
    out = run_ketch("pull", "-q", "--all-tags", "--tls-verify=false", f"{registry.host}/library/busybox").stdout
    assert len(out.split()) == 1  # latest and v1 are the same image
    names = json.loads(run_ketch("images", "--format", "json").stdout)[0]["Names"]
    # every tag of the repository (other tests may have pushed more of the same image)
    assert {f"{registry.host}/library/busybox:latest", f"{registry.host}/library/busybox:v1"} <= set(names)
    run_ketch("pull", "-q", "--platform", "linux/arm64", "--tls-verify=false", f"{registry.host}/multi")
    arch = json.loads(run_ketch("image", "inspect", f"{registry.host}/multi").stdout)[0]["Architecture"]
    assert arch == "arm64"
    bad = run_ketch("pull", "--platform", "arm64", "--tls-verify=false", f"{registry.host}/multi", check=False)
    assert bad.returncode == 125 and "OS/ARCH" in bad.stderr


def test_history(store_env):
    store_env.add("busybox", "busybox")
    table = run_ketch("image", "history", "busybox").stdout.splitlines()
    assert table[0].split() == ["ID", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert "ketch test fixture" in table[1] and table[1].startswith(store_env.store().lookup("busybox").id[:12])
    entries = json.loads(run_ketch("history", "--format", "json", "busybox").stdout)
    assert [(e["created"], e["CreatedBy"]) for e in entries] == [("2023-11-14T22:13:20Z",
                                                                   "ketch test fixture: busybox-static")]


def test_zstd_and_uncompressed_layers(store_env, tmp_path):
    """Layers of every compression unpack to the same tree (and the diff_ids still match)."""
    layout = images.ensure("whiteouts")
    run_ketch("--insecure-policy", "image", "copy", "--dest-compress-format", "zstd", f"oci:{layout}:latest",
              f"oci:{tmp_path}/zstd:x")
    run_ketch("--insecure-policy", "image", "copy", f"oci:{layout}:latest", f"docker-archive:{tmp_path}/plain.tar")
    store = store_env.store()

    def check(name):
        path = store.mount_image(name)
        try:
            assert sorted(os.listdir(path / "a")) == ["y"] and sorted(os.listdir(path / "b")) == ["new"]
        finally:
            store.unmount_image(name)

    run_ketch("--insecure-policy", "image", "copy", f"oci:{tmp_path}/zstd:x", "ketch-storage:zstd")
    check("zstd")
    image_id = store.lookup("zstd").id
    run_ketch("rmi", "zstd")
    run_ketch("load", "-i", str(tmp_path / "plain.tar"))  # uncompressed layers, no name
    check(image_id)  # the same image: compression does not change the config, so not its id either
