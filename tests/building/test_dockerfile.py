"""ketch build: Dockerfile syntax, stages, the layer cache, secrets and build volumes that never
land in a layer, bad input, and buildah 1.28 building the same Dockerfile to the same tree."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile

import pytest

from ketch.builder import dockerfile as parser
from tests.support.builds import build, config_of, store, write


def test_parser_syntax():
    text = ('# escape=`\n# a comment\nFROM busybox AS base\nRUN echo one `\n  # inside\n  two\n'
            'COPY --chown=1:2 --from=base a b /dst/\nRUN <<EOF\necho heredoc\nEOF\nCMD ["sh"]\n')
    ins = parser.parse(text, "Containerfile")
    assert [i.name for i in ins] == ["FROM", "RUN", "COPY", "RUN", "CMD"]
    assert ins[1].args == "echo one   two" and ins[3].heredocs == [("EOF", "echo heredoc\n", True)]
    assert ins[2].flags == {"chown": "1:2", "from": "base"} and ins[4].json == ["sh"]
    assert parser.expand("${A:-dflt} ${B:+alt} ${C:-x} $B \\$B", {"B": "b", "C": ""}) == "dflt alt x b $B"
    for bad, where in (("FROM x\nFROB y\n", "Dockerfile:2: unknown instruction FROB"),
                       ("FROM x\nCOPY --bogus=1 a b\n", "Dockerfile:2: COPY: unknown flag --bogus"),
                       ("RUN x\n", "Dockerfile:1: the first instruction must be FROM"),
                       ("FROM x\nRUN <<EOF\nnever closed\n", "Dockerfile:2: heredoc EOF is not closed")):
        with pytest.raises(parser.DockerfileError, match=where):
            parser.parse(bad)


def test_multi_stage_secret_volume_heredoc_ignore_and_config(builds, tmp_path):
    env = builds
    ctx = tmp_path / "ctx"
    secret = tmp_path / "token"
    secret.write_text("TOP-SECRET-0123456789\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tool.sh").write_text("echo from the build volume\n")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"unpacked by ADD\n"
        info = tarfile.TarInfo("pkg/readme")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    write(ctx, {
        "Containerfile": """
ARG BASE=busybox
FROM ${BASE} AS build
ARG FLAVOR
ENV OUT=/out
WORKDIR $OUT
COPY src/ ./src/
RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = TOP-SECRET-0123456789 && \\
    stat -c %a /run/secrets/token > secret-mode && echo ${FLAVOR:-plain} > flavor
RUN sh /shared/tool.sh > from-volume
RUN <<EOF
echo line one > heredoc.txt
echo line two >> heredoc.txt
EOF

FROM busybox
LABEL org.example.stage=final
ENV GREETING="hello world" PATH=/usr/bin:/bin
COPY --from=build /out/ /app/
COPY --chown=nobody:nogroup --chmod=640 data.txt /app/data.txt
ADD pkg.tar.gz /opt/
COPY <<EOF /app/generated
made in ${GREETING}
EOF
RUN rm -rf /home && mkdir /home && touch /home/recreated
EXPOSE 8080/tcp 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
USER nobody
WORKDIR /app
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/flavor"]
""",
        "src/main.txt": "main\n", "src/debug.log": "noise\n", "src/keep.log": "kept\n", "data.txt": "data\n",
        "pkg.tar.gz": archive.getvalue(),
        ".dockerignore": "src/*.log\n!src/keep.log\n",
    })
    iid = tmp_path / "iid"
    result = build(builds, ctx, "-t", "final", "-t", "final:v1", "--iidfile", str(iid), "--build-arg", "FLAVOR=spicy",
                   "--secret", f"id=token,src={secret}", "-v", f"{shared}:/shared:ro", "--label", "extra=1")
    image_id = result.stdout.strip().splitlines()[-1]
    assert iid.read_text() == f"sha256:{image_id}"
    run = env.cli("run", "--rm", "--network", "none", "final")
    assert run.stdout == "spicy\n", run.stderr
    look = env.cli("run", "--rm", "--network", "none", "--entrypoint", "", "--user", "0", "final", "sh", "-c",
                   "cat /app/secret-mode /app/from-volume /app/heredoc.txt /app/generated /opt/pkg/readme; "
                   "ls /app/src; stat -c '%a %U %G' /app/data.txt; ls /home; echo $GREETING; "
                   "test -e /run/secrets/token || echo no-secret-file; test -e /shared || echo no-volume")
    assert look.stdout.splitlines() == ["400", "from the build volume", "line one", "line two",
                                        "made in hello world", "unpacked by ADD", "keep.log", "main.txt",
                                        "640 nobody nogroup", "recreated", "hello world", "no-secret-file",
                                        "no-volume"], look.stderr
    config = config_of(env, "localhost/final:v1")
    settings = config["config"]
    assert settings["Env"] == ["GREETING=hello world", "PATH=/usr/bin:/bin"]
    assert settings["Entrypoint"] == ["/bin/sh", "-c"] and settings["Cmd"] == ["cat /app/flavor"]
    assert settings["WorkingDir"] == "/app" and settings["User"] == "nobody" and settings["StopSignal"] == "SIGTERM"
    assert settings["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}} and settings["Volumes"] == {"/data": {}}
    assert settings["Labels"]["org.example.stage"] == "final" and settings["Labels"]["extra"] == "1"
    # the secret's bytes are in no blob, config or history of the store
    s = store(env)
    everything = json.dumps(config)
    for blob in (s.root / "blobs" / "sha256").iterdir():
        raw = blob.read_bytes()
        try:
            raw += gzip.decompress(raw)
        except OSError:
            pass
        everything += raw.decode("latin-1")
    assert "TOP-SECRET" not in everything and "from the build volume" in everything  # the volume's *output* is


def test_layer_cache_reuse_and_invalidation(builds, tmp_path):
    env = builds
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM busybox\nARG V=1\nRUN echo step-a-$V > /a\nCOPY one.txt /one.txt\n"
                              "COPY two.txt /two.txt\nRUN --mount=type=cache,target=/cache echo run >> /cache/runs; "
                              "cat /cache/runs | wc -l > /runs-seen\n",
                "one.txt": "1\n", "two.txt": "2\n"})
    first = build(env, ctx, "-t", "cached")
    assert "Using cache" not in first.stdout
    again = build(env, ctx, "-t", "cached")
    assert again.stdout.count("Using cache") == 5  # ARG has an image of its own too, as with podman
    assert again.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]  # the same image
    (ctx / "two.txt").write_text("2 changed\n")
    changed = build(env, ctx, "-t", "cached")
    assert changed.stdout.count("Using cache") == 3  # ARG, RUN and COPY one.txt; from COPY two.txt on, rebuilt
    assert env.cli("run", "--rm", "--network", "none", "cached", "cat", "/two.txt", "/runs-seen").stdout == \
        "2 changed\n2\n"  # the cache mount kept the first run's line
    os.chmod(ctx / "one.txt", 0o600)  # a mode is content too
    assert build(env, ctx, "-t", "cached").stdout.count("Using cache") == 2
    # the ARG step records the name, not the value: its image is reused, the RUN that sees V is not
    assert build(env, ctx, "--build-arg", "V=2", "-t", "cached").stdout.count("Using cache") == 1
    assert build(env, ctx, "--no-cache", "-t", "cached").stdout.count("Using cache") == 0
    layer_names = []
    s = store(env)
    for layer in json.loads(s.lookup("localhost/cached").manifest)["layers"]:
        with tarfile.open(s.blob_path(layer["digest"])) as tar:
            layer_names += tar.getnames()
    assert not [n for n in layer_names if n.startswith("cache")]  # the cache mount is in no layer


def test_target_squash_format_and_stdin_context(builds, tmp_path):
    env = builds
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM busybox AS one\nRUN echo one > /one\nFROM one AS two\nRUN echo two > /two\n"
                              "FROM busybox\nRUN echo three > /three\n"})
    build(env, ctx, "--target", "two", "-t", "two", "--format", "docker")
    assert env.cli("run", "--rm", "--network", "none", "two", "cat", "/one", "/two").stdout == "one\ntwo\n"
    assert json.loads(store(env).lookup("localhost/two").manifest)["mediaType"].startswith(
        "application/vnd.docker")
    build(env, ctx, "--squash-all", "-t", "flat", "--annotation", "org.example.note=squashed")
    assert json.loads(store(env).lookup("localhost/flat").manifest)["annotations"] == {"org.example.note": "squashed"}
    assert len(config_of(env, "localhost/flat")["rootfs"]["diff_ids"]) == 1
    archive = tmp_path / "ctx.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(ctx, arcname=".")
    result = subprocess.run(env.args("build", "-t", "fromstdin", "-"), stdin=open(archive, "rb"), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert env.cli("run", "--rm", "--network", "none", "fromstdin", "cat", "/three").stdout == "three\n"


def test_bad_input_names_the_step(builds, tmp_path):
    env = builds
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM busybox\nRUN echo fine\nRUN exit 3\n", "Broken": "FROM busybox\nCOPPY a b\n",
                "Outside": "FROM busybox\nCOPY ../secret /x\n", "Under": "FROM busybox\nCOPY Broken /etc/passwd/x/\n",
                "Flag": "FROM busybox\nRUN --frobnicate echo\n"})
    failed = build(env, ctx, check=False)
    assert failed.returncode == 3  # the step's own status, as podman build's
    assert 'building at STEP "RUN exit 3" (Dockerfile:3): while running runtime: exit status 3' in failed.stderr
    syntax = build(env, ctx, "-f", "Broken", check=False)
    assert syntax.returncode != 0 and "Broken:2: unknown instruction COPPY" in syntax.stderr
    outside = build(env, ctx, "-f", "Outside", check=False)
    assert outside.returncode != 0 and "outside the build context" in outside.stderr
    remote = build(env, ctx, "-f", "Under", check=False)  # (a directory is wanted where a file is)
    assert remote.returncode != 0 and "Under:2: COPY: /etc/passwd exists and is not a directory" in remote.stderr
    flag = build(env, ctx, "-f", "Flag", check=False)
    assert flag.returncode != 0 and "unknown flag --frobnicate" in flag.stderr
    for result in (failed, syntax, outside, remote, flag):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # the fixture checks that no working container was left behind


@pytest.mark.peer
@pytest.mark.root_only("compared with buildah as root; rootless peers are compared in tests/rootless")
def test_buildah_builds_the_same_tree_and_config(builds, tmp_path, podman):
    """buildah 1.28 and ketch build one Dockerfile (multi-stage, ARG/ENV, owners and modes, a directory
    deleted and made again, .dockerignore exceptions): the same files and config; podman runs ketch's."""
    from tests.support import images

    env = builds
    ctx = tmp_path / "ctx"
    write(ctx, {
        "Dockerfile": """
ARG NAME=app
FROM busybox AS stage1
ARG NAME
ENV DIR=/srv/${NAME}
RUN mkdir -p $DIR && echo built > $DIR/out && chmod 750 $DIR
FROM busybox
ARG NAME
ENV APP=${NAME:-none} HOME=/root
COPY --from=stage1 /srv/ /srv/
COPY --chown=65534:65534 files/ /files/
COPY --chmod=600 top.txt /top.txt
RUN rm -rf /etc/network 2>/dev/null; rm -rf /var && mkdir -p /var/again && echo x > /var/again/f && chmod 700 /var/again
WORKDIR /srv
USER 65534
EXPOSE 80
LABEL a=b
STOPSIGNAL SIGINT
CMD ["cat", "/srv/app/out"]
""",
        "files/a.txt": "a\n", "files/b.tmp": "b\n", "files/keep.tmp": "keep\n", "top.txt": "top\n",
        ".dockerignore": "**/*.tmp\n!files/keep.tmp\n",
    })
    build(env, ctx, "-t", "interop")
    layout = images.ensure("busybox")
    base = podman.base
    root = base[base.index("--root") + 1]
    runroot = base[base.index("--runroot") + 1]
    buildah_env = {**os.environ, "CONTAINERS_CONF": str(podman.conf)}
    buildah = ["buildah", "--root", root, "--runroot", runroot, "--storage-driver", "vfs"]
    subprocess.run([*buildah, "pull", "-q", f"oci:{layout}:latest"], check=True, capture_output=True, env=buildah_env)
    image_id = json.loads(subprocess.run([*buildah, "images", "--json"], capture_output=True, text=True, check=True,
                                         env=buildah_env).stdout)[0]["id"]
    subprocess.run([*buildah, "tag", image_id, "docker.io/library/busybox:latest"], check=True, env=buildah_env)
    made = subprocess.run([*buildah, "bud", "--layers", "--runtime", "runc", "--isolation", "oci", "-t",
                           "localhost/interop", str(ctx)], capture_output=True, text=True, env=buildah_env, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    listing = ("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /etc/hosts -o "
               "-path /etc/hostname -o -path /etc/resolv.conf \\) -prune -o -print | sort | while read p; do "
               "stat -c '%n %F %a %u %g' \"$p\"; if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then md5sum \"$p\" | "
               "cut -d' ' -f1; fi; done")
    # buildah's image comes into ketch's store through an archive: both trees are listed by the same runtime
    podman.run("tag", "localhost/interop", "localhost/interop-buildah")
    theirs_archive = tmp_path / "theirs.tar"
    podman.run("save", "-o", str(theirs_archive), "localhost/interop-buildah")
    env.cli("load", "-i", str(theirs_archive), check=True)
    ours = env.cli("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "", "interop", "sh", "-c", listing)
    theirs = env.cli("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "", "interop-buildah", "sh",
                     "-c", listing)
    assert ours.returncode == 0, ours.stderr
    ours_lines = [line for line in ours.stdout.splitlines() if not line.startswith("/ ")]
    theirs_lines = [line for line in theirs.stdout.splitlines() if not line.startswith("/ ")]
    assert ours_lines == theirs_lines
    theirs_config = json.loads(podman.run("image", "inspect", "localhost/interop").stdout)[0]["Config"]
    theirs_config["Labels"].pop("io.buildah.version", None)  # buildah's own label; ketch adds none
    ours_config = config_of(env, "localhost/interop")["config"]
    for key in ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels", "Volumes", "StopSignal"):
        assert ours_config.get(key) == theirs_config.get(key), key
    archive = tmp_path / "interop.tar"  # and ketch's image runs under podman
    env.cli("save", "-o", str(archive), "localhost/interop", check=True)
    podman.run("rmi", "-f", "localhost/interop")
    podman.run("load", "-i", str(archive))
    assert podman.run("run", "--rm", "--network", "none", "--user", "0", "localhost/interop").stdout == "built\n"


def test_onbuild_healthcheck_shell_and_squash(builds, tmp_path):
    env = builds
    ctx = tmp_path / "ctx"
    write(ctx, {"Base": "FROM busybox\nONBUILD RUN echo triggered > /onbuild\nHEALTHCHECK --interval=30s --retries=2 "
                        "CMD [\"true\"]\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo base > /base\n",
                "Child": "FROM localhost/onbase\nRUN echo child > /child\nCMD cat /onbuild /base /child\n"})
    build(env, ctx, "-f", "Base", "-t", "onbase")
    base = config_of(env, "localhost/onbase")["config"]
    assert base["OnBuild"] == ["RUN echo triggered > /onbuild"]
    assert base["Healthcheck"] == {"Interval": 30_000_000_000, "Retries": 2, "Test": ["CMD", "true"]}
    assert base["Shell"] == ["/bin/sh", "-ec"]
    build(env, ctx, "-f", "Child", "--squash", "-t", "child")
    child = config_of(env, "localhost/child")
    assert child["config"]["Cmd"] == ["/bin/sh", "-ec", "cat /onbuild /base /child"]  # the inherited SHELL
    assert "OnBuild" not in child["config"]  # triggers run once, in the child
    assert len(child["rootfs"]["diff_ids"]) == len(config_of(env, "localhost/onbase")["rootfs"]["diff_ids"]) + 1
    assert env.cli("run", "--rm", "--network", "none", "child").stdout == "triggered\nbase\nchild\n"


@pytest.mark.peer
@pytest.mark.root_only("compared with buildah as root; rootless peers are compared in tests/rootless")
def test_a_debian_base_built_by_ketch_and_by_buildah(builds, tmp_path, podman):
    """A Dockerfile on Debian bookworm (debootstrap minbase, made from the Debian archive): users,
    owners and modes, a deleted and re-made directory; the same tree and config as buildah's."""
    from ketch import CopyOptions, SystemContext, copy_image
    from ketch.image.policy import Policy
    from tests.support import images

    env = builds
    layout = images.ensure("debian")
    ctx_k = SystemContext(storage_root=str(env.root), storage_runroot=str(env.runroot))
    copy_image(f"oci:{layout}:latest", "ketch-storage:docker.io/library/debian:bookworm",
               CopyOptions(src_ctx=ctx_k, dest_ctx=ctx_k, policy=Policy.insecure_accept_anything()))
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": """
FROM debian:bookworm
RUN useradd -u 1500 -M -d /opt/app -s /bin/bash app && mkdir -p /opt/app && chown app:app /opt/app && chmod 750 /opt/app
COPY --chown=app:app hello.sh /opt/app/
RUN rm -rf /var/log/apt && mkdir -p /var/log/apt && echo recreated > /var/log/apt/marker
USER app
WORKDIR /opt/app
ENV LANG=C.UTF-8
CMD ["bash", "/opt/app/hello.sh"]
""", "hello.sh": 'echo "hello from $(id -un) on $(. /etc/os-release; echo $ID)"\n'})
    build(env, ctx, "-t", "debian-app")
    root, runroot = podman.base[podman.base.index("--root") + 1], podman.base[podman.base.index("--runroot") + 1]
    buildah_env = {**os.environ, "CONTAINERS_CONF": str(podman.conf)}
    buildah = ["buildah", "--root", root, "--runroot", runroot, "--storage-driver", "vfs"]
    subprocess.run([*buildah, "pull", "-q", f"oci:{layout}:latest"], check=True, capture_output=True, env=buildah_env)
    base_id = json.loads(subprocess.run([*buildah, "images", "--json"], capture_output=True, text=True, check=True,
                                        env=buildah_env).stdout)[0]["id"]
    subprocess.run([*buildah, "tag", base_id, "docker.io/library/debian:bookworm"], check=True, env=buildah_env)
    made = subprocess.run([*buildah, "bud", "--layers", "--runtime", "runc", "--isolation", "oci", "-t",
                           "localhost/debian-app-buildah", str(ctx)], capture_output=True, text=True, env=buildah_env,
                          timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    archive = tmp_path / "theirs.tar"
    podman.run("save", "-o", str(archive), "localhost/debian-app-buildah")
    env.cli("load", "-i", str(archive), check=True)
    listing = ("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /etc/hosts -o "
               "-path /etc/hostname -o -path /etc/resolv.conf -o -path /etc/mtab \\) -prune -o "
               "-printf '%p %y %m %U %G\\n' | sort; md5sum /etc/passwd /etc/group /opt/app/hello.sh "
               "/var/log/apt/marker")
    ours = env.cli("run", "--rm", "--network", "none", "--user", "0", "debian-app", "bash", "-c", listing)
    theirs = env.cli("run", "--rm", "--network", "none", "--user", "0", "debian-app-buildah", "bash", "-c", listing)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()
    ours_config = config_of(env, "localhost/debian-app")["config"]
    theirs_config = config_of(env, "localhost/debian-app-buildah")["config"]
    (theirs_config.get("Labels") or {}).pop("io.buildah.version", None)
    for key in ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal"):
        assert ours_config.get(key) == theirs_config.get(key), key
    assert (ours_config.get("Labels") or {}) == (theirs_config.get("Labels") or {})
    assert env.cli("run", "--rm", "--network", "none", "debian-app").stdout == "hello from app on debian\n"
    save = tmp_path / "ours.tar"
    env.cli("save", "-o", str(save), "localhost/debian-app", check=True)
    podman.run("load", "-i", str(save))
    assert podman.run("run", "--rm", "--network", "none", "localhost/debian-app").stdout == "hello from app on debian\n"


def test_platform_args_are_the_hosts_or_platforms(builds, tmp_path):
    """TARGET* and BUILD* come from this machine (and --platform), not a fixed amd64."""
    from ketch.image.platform import host_platform

    host_os, host_arch, _ = host_platform()
    ctx = tmp_path / "ctx"
    write(ctx, {"Dockerfile": "FROM busybox\nARG TARGETARCH\nARG TARGETOS\nARG BUILDARCH\n"
                              "RUN echo $TARGETOS/$TARGETARCH/$BUILDARCH > /platform\n"})
    build(builds, ctx, "-t", "ktest-platform")
    out = builds.cli("run", "--rm", "ktest-platform", "cat", "/platform", check=True).stdout
    assert out.strip() == f"{host_os}/{host_arch}/{host_arch}"
    # a stage built on this machine's platform sees --platform's as TARGET*
    write(ctx, {"Dockerfile": "FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nARG TARGETOS\n"
                              "ARG BUILDARCH\nRUN echo $TARGETOS/$TARGETARCH/$BUILDARCH > /platform\n"})
    build(builds, ctx, "--no-cache", "--platform", "linux/riscv64", "-t", "ktest-platform")
    out = builds.cli("run", "--rm", "ktest-platform", "cat", "/platform", check=True).stdout
    assert out.strip() == f"linux/riscv64/{host_arch}"
    # a base for riscv64: the local busybox is not one, and there is no registry to pull one from
    write(ctx, {"Dockerfile": "FROM busybox\nRUN true\n"})
    other = build(builds, ctx, "--platform", "linux/riscv64", "--pull=never", check=False)
    assert other.returncode == 125 and other.stderr.count("\n") == 1
    assert f"the local image is linux/{host_arch}, not linux/riscv64" in other.stderr
    bad = build(builds, ctx, "--platform", "riscv64", check=False)
    assert bad.returncode == 125 and "invalid --platform" in bad.stderr


@pytest.mark.parametrize("rules, path, ignored", [
    (["*.log"], "debug.log", True),
    (["*.log"], "sub/debug.log", False),  # * does not cross a /
    (["**/*.log"], "sub/deep/debug.log", True),
    (["build"], "build/out/x", True),  # a pattern matching a parent excludes what is below it
    (["build", "!build/keep"], "build/keep", False),
    (["build", "!build/keep"], "build/drop", True),
    (["*", "!README.md"], "README.md", False),
    (["!README.md", "*"], "README.md", True),  # the last matching pattern decides
    (["/abs/path"], "abs/path", True),  # a leading / is the context's root
    (["doc?.txt"], "doc1.txt", True),
    (["doc?.txt"], "doc10.txt", False),
    (["[a-c].txt"], "b.txt", True),
    (["[!a-c].txt"], "b.txt", False),
    (["# a comment", "", "  x  "], "x", True),
    ([], "anything", False),
])
def test_dockerignore_rules(tmp_path, rules, path, ignored):
    from ketch.builder.dockerignore import IgnoreRules

    (tmp_path / ".dockerignore").write_text("\n".join(rules) + "\n")
    assert IgnoreRules.load(str(tmp_path)).ignored(path) is ignored


def test_containerignore_wins_over_dockerignore_and_exceptions_reach_below(tmp_path):
    from ketch.builder.dockerignore import IgnoreRules

    (tmp_path / ".dockerignore").write_text("*.md\n")
    (tmp_path / ".containerignore").write_text("vendor\n!vendor/keep/**\n")
    rules = IgnoreRules.load(str(tmp_path))
    assert not rules.ignored("README.md") and rules.ignored("vendor/x")
    assert rules.may_include_below("vendor") and not IgnoreRules([]).may_include_below("vendor")
