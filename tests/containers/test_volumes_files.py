"""Volumes, bind mounts and the file commands: -v, --mount, --volumes-from, named volumes (with
copy-up from the image), cp both ways, export, commit, diff, top, pause, rename, prune."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest


def test_bind_mounts_and_their_options(ketch_env, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    result = ketch_env.cli("run", "--rm", "-u", "nobody", "-v", f"{shared}:/data:U", "--mount",
                           f"type=bind,source={shared},target=/ro,readonly", "--mount", "type=tmpfs,target=/scratch",
                           "busybox", "sh", "-c",
                           "cat /data/in.txt; echo out > /data/out.txt; touch /ro/x 2>/dev/null || echo ro; "
                           "grep ' /scratch ' /proc/mounts | cut -d' ' -f3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["from the host", "ro", "tmpfs"]
    assert (shared / "out.txt").read_text() == "out\n" and (shared / "out.txt").stat().st_uid == 65534
    bad = ketch_env.cli("run", "--rm", "-v", "/no/such/dir:/x", "busybox", "true")
    assert bad.returncode == 125 and "does not exist" in bad.stderr
    for spec in ("nodest", "/a:relative", "/a:/b:bogus"):
        assert ketch_env.cli("run", "--rm", "-v", spec, "busybox", "true").returncode == 125
    assert ketch_env.cli("run", "--rm", "--mount", "type=weird,target=/x", "busybox", "true").returncode == 125
    assert ketch_env.ps() == [] and ketch_env.mounts() == []


def test_named_volumes_copy_up_persist_and_are_shared(ketch_env):
    # first use where the image has content: the content is copied in (podman's copy-up)
    first = ketch_env.cli("run", "--rm", "-v", "etcvol:/etc", "busybox", "sh", "-c", "ls /etc; echo new > /etc/mine")
    assert "passwd" in first.stdout.split()
    info = json.loads(ketch_env.cli("volume", "inspect", "etcvol", check=True).stdout)[0]
    assert info["Driver"] == "local" and os.path.exists(os.path.join(info["Mountpoint"], "mine"))
    ketch_env.cli("create", "--name", "owner", "-v", "etcvol:/etc", "busybox", "true", check=True)
    shared = ketch_env.cli("run", "--rm", "--volumes-from", "owner:ro", "busybox", "sh", "-c",
                           "cat /etc/mine; echo x > /etc/other 2>/dev/null || echo read-only")
    assert shared.stdout == "new\nread-only\n"
    assert ketch_env.cli("volume", "rm", "etcvol").returncode != 0  # used by "owner"
    ketch_env.cli("volume", "create", "--label", "k=v", "spare", check=True)
    assert sorted(ketch_env.cli("volume", "ls", "-q", check=True).stdout.split()) == ["etcvol", "spare"]
    assert ketch_env.cli("volume", "prune", check=True).stdout.split() == ["spare"]
    ketch_env.cli("rm", "owner", check=True)
    ketch_env.cli("volume", "rm", "etcvol", check=True)
    assert not os.path.exists(info["Mountpoint"])


def test_cp_export_diff_commit(ketch_env, tmp_path):
    ketch_env.cli("run", "-d", "--name", "work", "busybox", "sh", "-c",
                  "echo made > /made.txt; mkdir -p /data; rm /etc/group; ln -s /etc/passwd /link; sleep 60", check=True)
    ketch_env.wait_status("work", "running")
    for _ in range(50):
        if ketch_env.cli("exec", "work", "test", "-e", "/link").returncode == 0:
            break
    out = tmp_path / "out"
    ketch_env.cli("cp", "work:/made.txt", str(out), check=True)
    assert out.read_text() == "made\n"
    # a link in the container resolves inside it: /link -> /etc/passwd of the container, not the host's
    ketch_env.cli("cp", "work:/link", str(tmp_path / "passwd"), check=True)
    assert (tmp_path / "passwd").is_symlink() or "nobody" in (tmp_path / "passwd").read_text()
    host_file = tmp_path / "in.txt"
    host_file.write_text("into the container\n")
    os.chmod(host_file, 0o640)
    ketch_env.cli("cp", str(host_file), "work:/data/", check=True)
    listed = ketch_env.cli("exec", "work", "stat", "-c", "%a %n", "/data/in.txt", check=True).stdout
    assert listed == "640 /data/in.txt\n"
    assert ketch_env.cli("cp", "work:/no/such", str(tmp_path)).returncode != 0
    assert ketch_env.cli("cp", str(host_file), str(tmp_path / "x")).returncode != 0  # neither side a container
    escaped = ketch_env.cli("cp", str(host_file), "work:/../../../../tmp/escaped.txt")
    assert not os.path.exists("/tmp/escaped.txt") or escaped.returncode != 0
    if os.path.exists("/tmp/escaped.txt"):
        os.unlink("/tmp/escaped.txt")
    changes = ketch_env.cli("diff", "work", check=True).stdout.splitlines()
    assert "A /made.txt" in changes and "D /etc/group" in changes and "C /etc" in changes
    assert not [c for c in changes if c.endswith("/etc/hosts") or c.endswith(".containerenv")]
    archive = tmp_path / "work.tar"
    ketch_env.cli("export", "-o", str(archive), "work", check=True)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "./made.txt" in names and "./bin/busybox" in names and "./etc/group" not in names
    image_id = ketch_env.cli("commit", "-c", 'CMD ["cat", "/made.txt"]', "-c", "ENV COMMITTED=yes", "-m",
                             "snapshot", "work", "localhost/snap").stdout.strip()
    assert len(image_id) == 64
    assert ketch_env.status("work") == "running"  # paused while committing, then running again
    rerun = ketch_env.cli("run", "--rm", "localhost/snap")
    assert rerun.stdout == "made\n", rerun.stderr
    env = ketch_env.cli("run", "--rm", "localhost/snap", "sh", "-c", "echo $COMMITTED; test -e /etc/group || echo gone")
    assert env.stdout == "yes\ngone\n"
    config = json.loads(subprocess.run(ketch_env.args("image", "inspect", "--config", "ketch-storage:localhost/snap"),
                                       capture_output=True, text=True).stdout or "{}")
    if config:
        assert config["history"][-1].get("comment") == "snapshot"
    bad = ketch_env.cli("commit", "-c", "FROB x", "work", "localhost/bad")
    assert bad.returncode != 0 and "FROB" in bad.stderr
    ketch_env.cli("rm", "-f", "-t", "0", "work", check=True)
    ketch_env.cli("rmi", "localhost/snap", check=True)


@pytest.mark.root_only("pause needs a cgroup (the freezer): none is delegated to users on these machines (cgroup v1)")
def test_top_pause_rename_and_prune(ketch_env):
    ketch_env.cli("run", "-d", "--name", "sleeper", "busybox", "sleep", "60", check=True)
    top = ketch_env.cli("top", "sleeper", check=True).stdout.splitlines()
    assert top[0].split()[:3] == ["USER", "PID", "PPID"] and "sleep 60" in top[1]
    ketch_env.cli("pause", "sleeper", check=True)
    assert ketch_env.status("sleeper") == "paused"
    assert ketch_env.cli("pause", "sleeper").returncode != 0
    ketch_env.cli("unpause", "sleeper", check=True)
    assert ketch_env.status("sleeper") == "running"
    ketch_env.cli("rename", "sleeper", "dozer", check=True)
    assert ketch_env.status("dozer") == "running"
    ketch_env.cli("create", "--name", "taken", "busybox", "true", check=True)
    assert ketch_env.cli("rename", "dozer", "taken").returncode != 0
    ketch_env.cli("run", "--name", "done", "busybox", "true", check=True)
    pruned = ketch_env.cli("container", "prune", check=True).stdout.split()
    assert len(pruned) == 2  # "taken" (created) and "done" (exited); the running one stays
    assert [e["Names"] for e in ketch_env.ps()] == [["dozer"]]


@pytest.mark.parametrize("when", [0.05, 0.15, 0.3])
def test_kill_9_during_commit_leaves_the_store_clean(ketch_env, when):
    ketch_env.cli("run", "--name", "big", "busybox", "sh", "-c",
                  "dd if=/dev/urandom of=/blob bs=1M count=40 2>/dev/null", check=True)
    proc = subprocess.Popen(ketch_env.args("commit", "big", "localhost/partial"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import time

    time.sleep(when)
    proc.kill()
    proc.wait()
    check = subprocess.run(ketch_env.args("storage", "check"), capture_output=True, text=True)
    images = subprocess.run(ketch_env.args("images", "--format", "json"), capture_output=True, text=True)
    names = [n for image in json.loads(images.stdout or "[]") for n in image.get("Names") or []]
    if "localhost/partial:latest" in names:  # it finished before the kill: a whole image
        assert subprocess.run(ketch_env.args("run", "--rm", "localhost/partial", "test", "-s", "/blob"),
                              capture_output=True).returncode == 0
        subprocess.run(ketch_env.args("rmi", "localhost/partial"), capture_output=True)
    subprocess.run(ketch_env.args("storage", "check", "--repair"), capture_output=True)
    after = subprocess.run(ketch_env.args("storage", "check"), capture_output=True, text=True)
    assert after.returncode == 0, (check.stdout, after.stdout, after.stderr)


def _rootfs_tarball(ketch_env, path) -> None:
    """A file system to import: busybox's, exported from a container of it, gzip-compressed."""
    import gzip

    ketch_env.cli("create", "--name", "to-export", "busybox", "true", check=True)
    plain = path.with_suffix(".plain")
    ketch_env.cli("export", "-o", str(plain), "to-export", check=True)
    ketch_env.cli("rm", "to-export", check=True)
    path.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    plain.unlink()


@pytest.mark.peer
def test_import_a_tarball_as_podman_imports_it(ketch_env, podman, tmp_path):
    tarball = tmp_path / "rootfs.tar.gz"
    _rootfs_tarball(ketch_env, tarball)
    change = 'CMD ["/bin/sh", "-c", "echo from an import"]'
    ours = ketch_env.cli("import", "-c", change, "-c", "ENV MODE=imported", "-m", "first import", str(tarball),
                         "imported:1", check=True)
    theirs = podman.run("import", "-c", change, "-c", "ENV MODE=imported", "-m", "first import", str(tarball),
                        "imported:1")
    assert ours.stdout.startswith("sha256:") and theirs.stdout.startswith("sha256:") and ours.stdout.count("\n") == 1
    template = "{{json .RootFS.Layers}} {{json .Config.Cmd}} {{json .Config.Env}} {{.Os}}/{{.Architecture}}"
    assert ketch_env.cli("image", "inspect", "--format", template, "imported:1", check=True).stdout == \
        podman.run("image", "inspect", "--format", template, "imported:1").stdout
    history = "{{.CreatedBy}}|{{.Comment}}"
    assert ketch_env.cli("history", "--no-trunc", "--format", history, "imported:1", check=True).stdout == \
        podman.run("history", "--no-trunc", "--format", history, "imported:1").stdout
    assert ketch_env.cli("run", "--rm", "imported:1", check=True).stdout == "from an import\n"
    # from standard input, and from a URL (a server on 127.0.0.1)
    piped = ketch_env.cli("import", "--arch", "arm64", "-", "piped", input=tarball.read_bytes(), check=True)
    assert ketch_env.cli("image", "inspect", "--format", "{{.Architecture}} {{.Id}}", "piped",
                         check=True).stdout == f"arm64 {piped.stdout[7:].strip()}\n"
    from tests.support.webserver import serve

    with serve(tmp_path) as url:
        fetched = ketch_env.cli("import", f"{url}/rootfs.tar.gz", "fetched", check=True)
        assert fetched.stdout.startswith("sha256:")
        missing = ketch_env.cli("import", f"{url}/not-there.tar", "never")
        assert missing.returncode == 125 and "HTTP 404" in missing.stderr and missing.stderr.count("\n") == 1
    before = ketch_env.cli("images", "-a", "-q", check=True).stdout
    bad = tmp_path / "bad"
    bad.write_bytes(b"not a tarball at all" * 100)
    hostile = tmp_path / "hostile.tar"
    import io
    import tarfile

    with tarfile.open(hostile, "w") as tar:
        entry = tarfile.TarInfo("../../escaped")
        entry.size = 4
        tar.addfile(entry, io.BytesIO(b"evil"))
    for source, words in ((bad, "not a tar"), (hostile, "escaped"), (tmp_path / "none.tar", "No such file")):
        refused = ketch_env.cli("import", str(source), "never")
        assert refused.returncode == 125 and words in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr
    assert ketch_env.cli("images", "-a", "-q", check=True).stdout == before
    ketch_env.cli("rmi", "imported:1", "piped", "fetched", check=True)
