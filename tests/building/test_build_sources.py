"""What a Dockerfile build reads beyond its context directory, and where its result goes: ADD of
http(s) URLs (with --checksum) and of git repositories, remote contexts (a git repository, a
tarball, a Containerfile by URL), named build contexts, --ignorefile, COPY --parents and
--exclude, --output, --platform and --manifest, and the layer cache in a registry shared by two
stores. The network here is 127.0.0.1 only: an HTTP server and a git repository the tests make."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from tests.support.builds import build, config_of, store, write
from tests.support.webserver import serve, tarball


@pytest.fixture
def web(tmp_path):
    """An HTTP server on 127.0.0.1 for a directory of the test's: (directory, base URL)."""
    served = tmp_path / "www"
    served.mkdir()
    with serve(served) as base:
        yield served, base


def _git(*args: str, cwd=None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _repository(served, work) -> None:
    """repo.git on the server (git's dumb HTTP): v1 has app/one.txt and sub/ (a Dockerfile of
    its own); main adds app/two.txt."""
    source = work / "source"
    write(source, {"app/one.txt": "one\n", "sub/Dockerfile": "FROM busybox\nCOPY . /ctx/\n", "sub/in-sub.txt": "s\n"})
    _git("init", "-q", "-b", "main", cwd=source)
    _git("add", "-A", cwd=source)
    _git("commit", "-qm", "one", cwd=source)
    _git("tag", "v1", cwd=source)
    write(source, {"app/two.txt": "two\n"})
    _git("add", "-A", cwd=source)
    _git("commit", "-qm", "two", cwd=source)
    _git("clone", "-q", "--bare", str(source), str(served / "repo.git"))
    _git("update-server-info", cwd=served / "repo.git")


def _images(env) -> set[str]:
    return set(env.cli("images", "-a", "-q", "--no-trunc", check=True).stdout.split())


def _listing(env, image: str, *paths: str) -> str:
    return env.cli("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "", image, "sh", "-c",
                   "find " + " ".join(paths) + " | sort | while read p; do stat -c '%n %a %u:%g' \"$p\"; done",
                   check=True).stdout


def test_add_urls_with_checksums_and_git_repositories(builds, tmp_path, web):
    served, base = web
    (served / "file.txt").write_text("downloaded\n")
    _repository(served, tmp_path)
    digest = "sha256:" + hashlib.sha256(b"downloaded\n").hexdigest()
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": f"""FROM busybox
ADD --checksum={digest} {base}/file.txt /dl/
ADD --chown=7:7 {base}/file.txt /dl2/renamed.txt
ADD {base}/repo.git#v1:app /fromgit/
ADD --keep-git-dir=true {base}/repo.git /withgit/
"""})
    first = build(builds, ctx, "-t", "added")
    listed = _listing(builds, "added", "/dl", "/dl2", "/fromgit")
    assert listed == ("/dl 755 0:0\n/dl/file.txt 600 0:0\n/dl2 755 7:7\n/dl2/renamed.txt 600 7:7\n"
                      "/fromgit 755 0:0\n/fromgit/one.txt 644 0:0\n")  # a download is 0600; v1 has no two.txt
    inside = builds.cli("run", "--rm", "added", "sh", "-c", "cat /dl/file.txt; ls /withgit; ls -d /withgit/.git",
                        check=True).stdout
    assert inside == "downloaded\napp\nsub\n/withgit/.git\n"
    again = build(builds, ctx, "-t", "added")  # fetched again, the same content: every step cached
    assert again.stdout.count("Using cache") == 4 and again.stdout.split()[-1] == first.stdout.split()[-1]
    before = _images(builds)
    wrong = "sha256:" + "0" * 64
    write(ctx, {"Dockerfile": f"FROM busybox\nADD --checksum={wrong} {base}/file.txt /dl/\n"})
    refused = build(builds, ctx, check=False)
    assert refused.returncode == 125 and refused.stderr.count("\n") == 1
    assert wrong in refused.stderr and digest in refused.stderr  # both digests named
    for dockerfile, words in ((f"COPY {base}/file.txt /x\n", "ADD only"),
                              ("COPY --checksum=sha256:00 a /x\n", "unknown flag"),
                              (f"ADD --checksum={digest} Dockerfile /x\n", "http(s) sources only"),
                              (f"ADD {base}/missing.txt /x\n", "HTTP 404"),
                              (f"ADD {base}/repo.git#no-such-ref /x/\n", "no-such-ref"),
                              ("ADD http://127.0.0.1:9/nothing /x\n", "fetching")):
        write(ctx, {"Dockerfile": "FROM busybox\n" + dockerfile})
        result = build(builds, ctx, check=False)
        assert result.returncode == 125 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert _images(builds) == before  # nothing half-made
    assert not [p for p in os.listdir(builds.runroot) if p.startswith("ketch-fetch-")]  # downloads removed


def test_remote_contexts(builds, tmp_path, web):
    served, base = web
    _repository(served, tmp_path)
    build(builds, f"{base}/repo.git#main:sub", "-t", "from-git")
    assert builds.cli("run", "--rm", "from-git", "ls", "/ctx", check=True).stdout == "Dockerfile\nin-sub.txt\n"
    (served / "context.tar.gz").write_bytes(tarball({"Dockerfile": b"FROM busybox\nCOPY data.txt /data.txt\n",
                                                     "data.txt": b"tarball\n"}))
    build(builds, f"{base}/context.tar.gz", "-t", "from-tarball")
    assert builds.cli("run", "--rm", "from-tarball", "cat", "/data.txt", check=True).stdout == "tarball\n"
    (served / "Containerfile").write_text("FROM busybox\nENV FROM_URL=yes\n")  # a plain file: the Containerfile
    build(builds, f"{base}/Containerfile", "-t", "from-file")
    assert "FROM_URL=yes" in config_of(builds, "localhost/from-file")["config"]["Env"]
    before = _images(builds)
    for context_url, words in ((f"{base}/nothing.tar", "HTTP 404"), (f"{base}/repo.git#main:no-dir", "no-dir"),
                               (f"{base}/repo.git#main:../..", "out of the repository")):
        result = build(builds, context_url, check=False)
        assert result.returncode == 125 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert _images(builds) == before


def test_copy_parents_exclude_named_contexts_ignorefile_and_outputs(builds, tmp_path):
    ctx = tmp_path / "ctx"
    write(ctx, {"src/app/a.txt": "a\n", "src/app/b.md": "b\n", "src/app/sub/c.txt": "c\n", "other/o.txt": "o\n",
                "secret.env": "no\n", "my.ignore": "secret.env\n", "Dockerfile": """FROM busybox
COPY --parents src/app/a.txt other/o.txt /p1/
COPY --parents src/./app/sub/c.txt /p2/
COPY --parents --chown=5:5 src/app /p3/
COPY --exclude=*.md src/app /e1/
ADD --exclude=*.txt --exclude=sub src/app /e2/
COPY --from=extra note.txt /named/
COPY --from=tools /etc/passwd /named/passwd
COPY . /all/
RUN echo run-output-here
"""})
    extra = tmp_path / "extra"
    write(extra, {"note.txt": "from a named context\n"})
    iidfile = tmp_path / "iid"
    out = tmp_path / "out"
    result = build(builds, ctx, "--build-context", f"extra={extra}", "--build-context", "tools=docker-image://busybox",
                   "--ignorefile", str(ctx / "my.ignore"), "--iidfile", str(iidfile), "--label", "made=here",
                   "--annotation", "note=kept", "-o", f"type=local,dest={out}", "-o",
                   f"type=tar,dest={tmp_path / 'out.tar'}", "-t", "featured")
    image_id = result.stdout.split()[-1]
    assert iidfile.read_text() == f"sha256:{image_id}"
    listed = _listing(builds, "featured", "/p1", "/p2", "/p3", "/e1", "/e2", "/named")
    assert listed.splitlines() == [
        "/e1 755 0:0", "/e1/a.txt 644 0:0", "/e1/sub 755 0:0", "/e1/sub/c.txt 644 0:0",
        "/e2 755 0:0", "/e2/b.md 644 0:0",
        "/named 755 0:0", "/named/note.txt 644 0:0", "/named/passwd 644 0:0",
        "/p1 755 0:0", "/p1/other 755 0:0", "/p1/other/o.txt 644 0:0", "/p1/src 755 0:0", "/p1/src/app 755 0:0",
        "/p1/src/app/a.txt 644 0:0",
        "/p2 755 0:0", "/p2/app 755 0:0", "/p2/app/sub 755 0:0", "/p2/app/sub/c.txt 644 0:0",
        "/p3 755 5:5", "/p3/src 755 5:5", "/p3/src/app 755 5:5", "/p3/src/app/a.txt 644 5:5",
        "/p3/src/app/b.md 644 5:5", "/p3/src/app/sub 755 5:5", "/p3/src/app/sub/c.txt 644 5:5"]
    everything = builds.cli("run", "--rm", "featured", "ls", "/all", check=True).stdout.split()
    assert "secret.env" not in everything and "my.ignore" in everything  # --ignorefile's rules
    config = config_of(builds, "localhost/featured")
    assert config["config"]["Labels"]["made"] == "here"
    manifest = json.loads(store(builds).lookup("localhost/featured").manifest)
    assert manifest["annotations"]["note"] == "kept"
    # --output: the same files as the image, in a directory and in a tar
    assert (out / "named/note.txt").read_text() == "from a named context\n" and (out / "bin/busybox").exists()
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert "./p2/app/sub/c.txt" in tar.getnames()
    piped = subprocess.run(builds.args("build", "--no-cache", "--build-context", f"extra={extra}", "--build-context",
                                       "tools=docker-image://busybox", "-o", "-", str(ctx)),
                           capture_output=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    with tarfile.open(fileobj=io.BytesIO(piped.stdout)) as tar:  # the tar alone on stdout; the id on stderr
        assert "./named/note.txt" in tar.getnames()
    assert len(piped.stderr.decode().split()[-1]) == 64  # (another image: no --ignorefile, no label)
    assert "run-output-here" in piped.stderr.decode()  # a RUN's output, and the report: on stderr
    for args, words in ((("--build-context", "extra"), "--build-context extra"), (("--build-context", "x=/no/such/dir"), "x"),
                        (("--ignorefile", "/no/such/file"), "--ignorefile"), (("-o", "type=oci,dest=x"), "type=oci"),
                        (("--cache-from", "127.0.0.1:5000/c:tag"), "without a tag")):
        result = build(builds, ctx, *args, check=False)
        assert result.returncode == 125 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.peer
def test_platform_emulation_and_manifest_lists(builds, tmp_path, registry, podman):
    """--platform picks the base image's platform (and TARGETARCH); a RUN for another
    architecture needs an emulator, refused in one line without one; --manifest gathers the
    builds in a list that `manifest push` sends, all its images, for skopeo and podman to read."""
    ctx = tmp_path / "ctx"
    base = f"{registry.host}/multi"
    write(ctx, {"Dockerfile": f"FROM {base}\nARG TARGETARCH\nCOPY a.txt /a-$TARGETARCH\n", "a.txt": "a\n",
                "Run.Dockerfile": f"FROM {base}\nRUN true\n",
                "Build.Dockerfile": f"FROM --platform=$BUILDPLATFORM {base} AS tools\nRUN echo built-on-$(uname -m) "
                                    "> /out\nFROM --platform=linux/arm64 "
                                    f"{base}\nCOPY --from=tools /out /out\n"})
    arm = build(builds, ctx, "--tls-verify=false", "--platform", "linux/arm64", "--manifest", "mlist", "-q").stdout
    amd = build(builds, ctx, "--tls-verify=false", "--platform", "linux/amd64", "--manifest", "mlist", "-q").stdout
    assert config_of(builds, arm.strip())["architecture"] == "arm64"
    assert config_of(builds, amd.strip())["architecture"] == "amd64"
    inspected = json.loads(builds.cli("manifest", "inspect", "mlist", check=True).stdout)
    assert [m["platform"]["architecture"] for m in inspected["manifests"]] == ["arm64", "amd64"]
    refused = build(builds, ctx, "--tls-verify=false", "--platform", "linux/arm64", "-f", str(ctx / "Run.Dockerfile"),
                    check=False)
    if not os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
        assert refused.returncode == 125 and "emulator" in refused.stderr and refused.stderr.count("\n") == 1
    # a RUN on the build machine's own platform, its output copied into an image of another
    cross = build(builds, ctx, "--tls-verify=false", "-f", str(ctx / "Build.Dockerfile"), "-q").stdout.strip()
    assert config_of(builds, cross)["architecture"] == "arm64"
    pushed = builds.cli("manifest", "push", "--tls-verify=false", "mlist", f"{registry.host}/built/multi:1",
                        check=True).stdout.strip()
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/built/multi:1"],
                         capture_output=True, check=True).stdout
    assert pushed == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["arm64", "amd64"]
    podman.run("pull", "--tls-verify=false", "--platform", "linux/arm64", f"{registry.host}/built/multi:1")
    assert podman.run("image", "inspect", "--format", "{{.Architecture}}",
                      f"{registry.host}/built/multi:1").stdout.strip() == "arm64"
    # a list of a registry's images, read and not pulled
    remote = builds.cli("manifest", "create", "--tls-verify=false", "--all", "rlist", f"docker://{base}:latest",
                        check=True)
    entries = json.loads(builds.cli("manifest", "inspect", "rlist", check=True).stdout)["manifests"]
    assert sorted(e["platform"]["architecture"] for e in entries) == ["amd64", "arm64"] and remote.stdout.strip()
    builds.cli("manifest", "push", "--tls-verify=false", "--rm", "rlist", f"{registry.host}/built/copied:1",
               check=True)
    assert builds.cli("manifest", "exists", "rlist").returncode == 1  # (--rm)
    assert builds.cli("manifest", "exists", "mlist").returncode == 0
    removed = builds.cli("manifest", "rm", "mlist", check=True).stdout
    assert removed.startswith("Untagged: localhost/mlist:latest\nDeleted: ")
    assert builds.cli("manifest", "exists", "mlist").returncode == 1
    missing = builds.cli("manifest", "inspect", "mlist")
    assert missing.returncode == 125 and "no such manifest list" in missing.stderr


def test_a_layer_cache_in_a_registry_shared_by_two_stores(builds, tmp_path, registry):
    """Store one builds and pushes its steps (--cache-to); a second, empty store builds the same
    Dockerfile with --cache-from: every step comes from the registry, and the image id is the
    first store's."""
    from tests.containers.conftest import KetchEnv

    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM busybox\nRUN echo built-once > /once\nCOPY a.txt /a.txt\nCMD [\"cat\", \"/once\"]\n",
                "a.txt": "a\n"})
    repository = f"{registry.host}/cache/shared-{os.getpid()}"
    first = build(builds, ctx, "--tls-verify=false", "--cache-to", repository, "-t", "cached-here")
    assert first.stdout.count("--> Pushing cache") == 3
    other = KetchEnv(tmp_path / "other-store")
    other.cli("pull", "-q", "--tls-verify=false", f"{registry.host}/library/busybox", check=True)
    other.cli("tag", f"{registry.host}/library/busybox", "docker.io/library/busybox:latest", check=True)
    try:
        second = other.cli("build", "--tls-verify=false", "--cache-from", repository, "-t", "cached-there", str(ctx),
                           check=True, timeout=300)
        assert second.stdout.count("--> Cache pulled from remote") == 3 and "Using cache" in second.stdout
        assert second.stdout.split()[-1] == first.stdout.split()[-1]
        assert other.cli("run", "--rm", "cached-there", check=True).stdout == "built-once\n"
        # an unreachable cache is a warning, and the build goes on
        write(ctx, {"Dockerfile": "FROM busybox\nRUN echo not-cached-anywhere > /new\n"})
        cold = other.cli("build", "-q", "--cache-from", "127.0.0.1:9/none", str(ctx), timeout=300)
        assert cold.returncode == 0 and "WARN: --cache-from 127.0.0.1:9/none" in cold.stderr, cold.stderr
    finally:
        other.cli("rm", "-f", "-a")
        other.cli("system", "reset", "--force")
