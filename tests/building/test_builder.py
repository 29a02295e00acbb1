"""Builder primitives (buildah's): from, mount, run, copy/add, config, commit, containers, rm,
inspect, images; the build profile; bad input; and the docs' quick-start workflow, whose image runs
under podman through an archive with the same config."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile

import pytest

from tests.conftest import AS_USER

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.fixture
def builders(ketch_env):
    yield ketch_env
    ketch_env.cli("builder", "umount", "--all")
    ketch_env.cli("builder", "rm", "--all")
    for image in ("localhost/app", "localhost/myimage", "localhost/squashed", "localhost/zimg"):
        ketch_env.cli("rmi", "-f", image)


def config_of(env, image: str) -> dict:
    from ketch.storage.store import Store

    return json.loads(Store(str(env.root), str(env.runroot)).lookup(image).config)


def test_from_run_copy_config_commit(builders, tmp_path):
    env = builders
    ctr = env.cli("builder", "from", "busybox", check=True).stdout.strip()
    assert ctr == "busybox-working-container"
    assert env.cli("builder", "from", "busybox", check=True).stdout.strip() == "busybox-working-container-1"
    run = env.cli("builder", "run", ctr, "--", "sh", "-c",
                  "echo built > /built.txt; mknod /dev/made c 1 3 && echo mknod-ok; grep CapEff /proc/self/status")
    # (no user namespace may make device nodes: a user's build has CAP_MKNOD and still cannot, as buildah's)
    assert run.returncode == 0 and ("mknod-ok" in run.stdout) != AS_USER, run.stderr
    assert int(run.stdout.split()[-1], 16) & (1 << 27)  # CAP_MKNOD: the build profile
    assert env.cli("builder", "run", ctr, "--", "sh", "-c", "exit 7").returncode == 7
    bridge = "ketch" if AS_USER else "bridge"  # (a user's `bridge` is pasta: the bridge by name)
    bridged = env.cli("builder", "run", "--network", bridge, ctr, "--", "sh", "-c", "ip -4 route | grep default")
    assert bridged.returncode == 0 and "via 10.123.0.1" in bridged.stdout, bridged.stderr
    assert env.cli("builder", "run", "--network", "none", ctr, "--", "sh", "-c",
                   "ip -4 route | grep -q default || echo isolated").stdout == "isolated\n"
    assert env.cli("builder", "run", ctr, "--", "no-such-cmd").returncode == 127
    (tmp_path / "a.txt").write_text("A\n")
    (tmp_path / "b.txt").write_text("B\n")
    env.cli("builder", "copy", "--chown", "nobody", "--chmod", "640", ctr, str(tmp_path / "*.txt"), "/opt/", check=True)
    archive = tmp_path / "files.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"from the archive\n"
        info = tarfile.TarInfo("unpacked/inside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    env.cli("builder", "add", ctr, str(archive), "/srv", check=True)
    env.cli("builder", "copy", "--from", "busybox", ctr, "/etc/passwd", "/copied-passwd", check=True)
    env.cli("builder", "config", "--env", "GREETING=hi there", "--cmd", '["cat", "/built.txt"]', "--label",
            "team=blue", "--port", "8080", "--workingdir", "/opt", "--user", "nobody", "--stop-signal", "SIGUSR1",
            "--author", "me", "--volume", "/data", "--created-by", "custom step", ctr, check=True)
    image_id = env.cli("builder", "commit", "--iidfile", str(tmp_path / "iid"), ctr, "app", check=True).stdout.strip()
    assert (tmp_path / "iid").read_text() == f"sha256:{image_id}"
    assert env.cli("run", "--rm", "app").stdout == "built\n"
    check = env.cli("run", "--rm", "app", "sh", "-c",
                    "echo $GREETING; pwd; id -un; stat -c '%a %U %n' /opt/a.txt /opt/b.txt; cat /srv/unpacked/inside.txt; "
                    "head -1 /copied-passwd")
    assert check.stdout.splitlines() == ["hi there", "/opt", "nobody", "640 nobody /opt/a.txt", "640 nobody /opt/b.txt",
                                         "from the archive", "root:x:0:0:root:/root:/bin/sh"], check.stderr
    config = config_of(env, "localhost/app:latest")  # a name without a registry is localhost/NAME:latest
    settings = config["config"]
    assert settings["Labels"] == {"org.opencontainers.image.title": "busybox", "team": "blue"}  # base labels inherited
    assert settings["ExposedPorts"] == {"8080/tcp": {}} and settings["StopSignal"] == "SIGUSR1"
    assert settings["Volumes"] == {"/data": {}} and config["author"] == "me"
    history = config["history"]
    assert history[0]["created_by"] == "ketch test fixture: busybox-static"  # the base's
    assert all(h.get("empty_layer") for h in history[1:-1]) and not history[-1].get("empty_layer")
    assert all(h["created_by"] == "custom step" for h in history[1:-1])
    assert len([h for h in history if not h.get("empty_layer")]) == len(config["rootfs"]["diff_ids"]) == 2
    assert not any("ketch" in key.lower() for key in settings["Labels"])  # no tool-identity label
    placeholders = env.cli("run", "--rm", "--network", "none", "--entrypoint", "", "app", "sh", "-c",
                           "test -s /etc/hosts && echo hosts-is-ours; test -e /run/.containerenv && echo env-is-ours")
    assert placeholders.stdout == "hosts-is-ours\nenv-is-ours\n"  # the run's, not the layer's empty files
    from ketch.storage.store import Store

    store = Store(str(env.root), str(env.runroot))
    layer = json.loads(store.lookup("localhost/app").manifest)["layers"][-1]["digest"]
    with tarfile.open(store.blob_path(layer)) as tar:
        names = tar.getnames()
    assert "built.txt" in names and not [n for n in names if n in ("etc/hosts", "etc/hostname", "etc/resolv.conf",
                                                                   "run/.containerenv")]
    listed = json.loads(env.cli("builder", "containers", "--format", "json", check=True).stdout)
    assert {c["containername"] for c in listed} == {ctr, "busybox-working-container-1"}
    inspect = json.loads(env.cli("builder", "inspect", ctr, check=True).stdout)
    assert inspect["FromImageID"] and inspect["OCIv1"]["config"]["User"] == "nobody"
    busy = env.cli("rmi", "busybox")
    assert busy.returncode != 0 and "working container" in busy.stderr  # says who uses it
    env.cli("builder", "rm", "-a", check=True)
    assert json.loads(env.cli("builder", "containers", "--format", "json", check=True).stdout) == []


def test_squash_zstd_docker_format_and_rm(builders):
    env = builders
    ctr = env.cli("builder", "from", "busybox", check=True).stdout.strip()
    env.cli("builder", "run", ctr, "--", "sh", "-c", "echo x > /x; rm /etc/group", check=True)
    env.cli("builder", "commit", "--squash", "--format", "docker", ctr, "squashed", check=True)
    squashed = config_of(env, "localhost/squashed:latest")
    assert len(squashed["rootfs"]["diff_ids"]) == 1
    assert env.cli("run", "--rm", "squashed", "sh", "-c", "cat /x; test -e /etc/group || echo gone").stdout == "x\ngone\n"
    env.cli("builder", "commit", "--compression", "zstd", "--omit-history", "--rm", ctr, "zimg", check=True)
    assert "history" not in config_of(env, "localhost/zimg:latest")
    assert env.cli("run", "--rm", "zimg", "cat", "/x").stdout == "x\n"
    assert json.loads(env.cli("builder", "containers", "--format", "json", check=True).stdout) == []  # --rm


def test_bad_input(builders, tmp_path):
    env = builders
    assert env.cli("builder", "mount", "nope").returncode != 0
    assert env.cli("builder", "run", "nope", "--", "true").returncode == 125
    assert env.cli("builder", "from", "--pull", "never", "no-such-image").returncode == 125
    ctr = env.cli("builder", "from", "busybox", check=True).stdout.strip()
    missing = env.cli("builder", "copy", ctr, str(tmp_path / "absent"), "/")
    assert missing.returncode == 125 and "no such file" in missing.stderr
    outside = env.cli("builder", "copy", "--from", "busybox", ctr, "/../../../etc/hostname", "/stolen")
    assert outside.returncode == 125  # resolves to the image's own /etc/hostname, which it does not have
    assert env.cli("builder", "add", ctr, "https://example.invalid/x.tar", "/").returncode == 125
    for flags in (["--port", "eighty"], ["--workingdir", "relative"], ["--cmd", "[broken"], ["--stop-signal", "SIGNOPE"],
                  ["--env", "=x"], ["--healthcheck-interval", "soon"]):
        bad = env.cli("builder", "config", *flags, ctr)
        assert bad.returncode == 125 and len(bad.stderr.strip().splitlines()) == 1, (flags, bad.stderr)
    assert env.cli("builder", "commit", ctr, "Bad:Name:x").returncode == 125
    assert env.cli("builder", "run", ctr, "--", "true").returncode == 0  # nothing half-made before
    env.cli("builder", "rm", ctr, check=True)


@pytest.mark.peer
@pytest.mark.root_only("the image is made through `builder mount` from the test itself, which a user may do only "
                       "in `ketch unshare`")
def test_quick_start_workflow_and_podman_reads_the_image(builders, tmp_path, podman):
    """The docs' quick start: an image made from scratch with the host's own tools (busybox here;
    debootstrap needs a mirror, which the tests do not have), run by ketch and by podman."""
    env = builders
    ctr = env.cli("builder", "from", "scratch", check=True).stdout.strip()
    assert ctr == "working-container"
    mnt = env.cli("builder", "mount", ctr, check=True).stdout.strip()
    os.makedirs(f"{mnt}/bin")
    os.makedirs(f"{mnt}/etc")
    shutil.copy2(BUSYBOX, f"{mnt}/bin/busybox")
    for applet in ("sh", "cat", "echo", "ls"):
        os.symlink("busybox", f"{mnt}/bin/{applet}")
    with open(f"{mnt}/etc/os-release", "w") as f:
        f.write('PRETTY_NAME="ketch quick start"\nID=quickstart\n')
    env.cli("builder", "config", "--entrypoint", '["/bin/cat"]', "--cmd", '["/etc/os-release"]', "--env",
            "PATH=/bin", "--label", "made.by=hand", ctr, check=True)
    env.cli("builder", "commit", ctr, "myimage", check=True)
    env.cli("builder", "umount", ctr, check=True)
    ran = env.cli("run", "--rm", "--network", "none", "myimage")
    assert ran.returncode == 0 and "ketch quick start" in ran.stdout, ran.stderr
    archive = tmp_path / "myimage.tar"
    env.cli("save", "-o", str(archive), "myimage", check=True)
    podman.run("load", "-i", str(archive))
    inspected = json.loads(podman.run("image", "inspect", "localhost/myimage:latest").stdout)[0]
    assert inspected["Config"]["Entrypoint"] == ["/bin/cat"] and inspected["Config"]["Cmd"] == ["/etc/os-release"]
    assert inspected["Config"]["Env"] == ["PATH=/bin"] and inspected["Config"]["Labels"] == {"made.by": "hand"}
    under_podman = podman.run("run", "--rm", "--network", "none", "localhost/myimage:latest")
    assert "ketch quick start" in under_podman.stdout


def test_a_run_killed_halfway_is_released(builders, tmp_path):
    """``builder run`` goes through the engine's one path for a container's process, which records
    each step before taking it: a run killed with SIGKILL (its network namespace, host-wide
    address, runtime state and mounts taken) is released when the working container is removed."""
    import signal
    import subprocess
    import time

    from ketch.containers.hostnet import HostAllocations
    from ketch.storage.store import Store

    env = builders
    ctr = env.cli("builder", "from", "--name", "killed-run", "busybox", check=True).stdout.strip()
    marker = tmp_path / "started"
    network = "ketch" if AS_USER else "bridge"  # (a user's `bridge` is pasta, which takes no address)
    proc = subprocess.Popen(env.args("builder", "run", "--network", network, "-v", f"{tmp_path}:/out", ctr, "--",
                                     "sh", "-c", "touch /out/started; sleep 300"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the run never started"
            time.sleep(0.05)
        store = Store(str(env.root), str(env.runroot))
        row = store.container(ctr)
        host = HostAllocations(store)
        assert host.addresses_of(row["id"]), "the run took no address"
        os.killpg(proc.pid, signal.SIGKILL)  # the ketch process; the container's init goes with the runtime
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    removed = env.cli("builder", "rm", ctr)
    assert removed.returncode == 0, removed.stderr
    assert host.addresses_of(row["id"]) == {}
    netns = env.runroot / "netns"
    assert not netns.exists() or os.listdir(netns) == []
    runtime_states = [p.name for p in (env.runroot / "runtime").glob("*")] if (env.runroot / "runtime").exists() else []
    assert row["id"] not in runtime_states
    assert env.mounts() == []
