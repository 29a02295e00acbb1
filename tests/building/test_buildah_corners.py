"""The corners of Dockerfile builds where ketch once differed from buildah 1.28: directories made
on the way to a COPY/ADD destination (with and without --chown/--chmod), WORKDIR and VOLUME
directories (who makes them, when, and whose they are), RUN --mount targets, archives unpacked by
ADD, COPY --from of owned trees, and `COPY x .`. Both tools build each Dockerfile of the corpus;
their images are compared file by file (path, type, mode, owner, content) without running them,
and config by config.

buildah 1.28's RUN leaves its own mount points in the image (an empty /run directory and empty
/etc/hosts, /etc/hostname and /etc/resolv.conf files, mode 0755); ketch removes its mount
points, so those four paths are left out of the comparison (docs/build.md says so)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess

import pytest

from tests.support.builds import build, config_of, write

BUILDAH_MOUNT_POINTS = {"/run", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}

PARENTS = """
FROM busybox AS src
RUN mkdir -p /out/deep && echo o > /out/deep/f && chown -R 5:5 /out && chmod 750 /out \\
 && echo f > /file && chown 6:6 /file && chmod 640 /file
FROM busybox
COPY --chown=1000:1000 files/conf.ini /etc/app/conf.ini
COPY --chown=1000:1000 files/conf.ini /etc/app2/sub/
COPY --chown=1000:1000 --chmod=600 files/conf.ini /chm/a/b/conf.ini
COPY files/conf.ini /plain/a/b/
COPY --chown=1001:1001 files/dir /dirdst/x/y/
COPY --chmod=600 files/dir /chmoddir/
COPY files/dir /tmp/
COPY --chown=3:3 files/dir /etc/
ADD --chown=1002:1002 files/owned.tar /added/p/q/
ADD --chmod=600 files/owned.tar /added2/
ADD --chown=1003:1003 files/conf.ini /addfile/p/conf.ini
COPY --from=src --chown=1004:1004 /out /fromdst/m/n
COPY --from=src /out /fromdst2/m/n
COPY --from=src /file /fromfile/a/
COPY --chown=1000 files/conf.ini /own1/
COPY --chown=nobody files/conf.ini /own2/
"""

WORKDIRS = """
FROM busybox
USER 1000
WORKDIR /r1/r2
RUN true
WORKDIR /c1/c2
COPY conf.ini /x/
WORKDIR /d1/d2
COPY --chown=9:9 conf.ini d3/
WORKDIR /e1
ENV A=b
WORKDIR /w4
COPY conf.ini .
USER root
WORKDIR /w5
COPY --chown=7:7 conf.ini /elsewhere/
WORKDIR /w6
USER nobody
WORKDIR /w7
RUN true
USER root
WORKDIR /last/never/made
"""

VOLUMES_AND_MOUNTS = """
FROM busybox
USER 1000
VOLUME /v1/a
COPY conf.ini /c/
VOLUME /v2/b
ENV Z=1
RUN true
COPY conf.ini /after/
RUN --mount=type=tmpfs,target=/mnt/x/y true
RUN --mount=type=bind,source=conf.ini,target=/bm/x/conf.ini true
RUN --mount=type=cache,target=/cm/x/y true
VOLUME ["/v3/c"]
COPY conf.ini /after2/
"""


def _tree(root: str) -> list[str]:
    """Every path under ``root``: type, mode, owner, and a regular file's content digest."""
    out = []
    for top, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + names):
            path = os.path.join(top, name)
            inside = "/" + os.path.relpath(path, root)
            if inside in BUILDAH_MOUNT_POINTS:
                continue
            st = os.lstat(path)
            line = f"{inside} {stat.S_IFMT(st.st_mode):o} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    line += " " + hashlib.sha256(f.read()).hexdigest()[:16]
            elif stat.S_ISLNK(st.st_mode):
                line += " -> " + os.readlink(path)
            out.append(line)
    return sorted(out)


class Buildah:
    """buildah 1.28 on the podman fixture's store, with busybox tagged as ketch's is."""

    def __init__(self, podman) -> None:
        from tests.support import images

        base = podman.base
        self.env = {**os.environ, "CONTAINERS_CONF": str(podman.conf)}
        self.argv = ["buildah", "--root", base[base.index("--root") + 1], "--runroot",
                     base[base.index("--runroot") + 1], "--storage-driver", "vfs"]
        self.run("pull", "-q", f"oci:{images.ensure('busybox')}:latest")
        image_id = json.loads(self.run("images", "--json").stdout)[0]["id"]
        self.run("tag", image_id, "docker.io/library/busybox:latest")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.argv, *args], capture_output=True, text=True, env=self.env, timeout=600)
        assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr[-2000:]}"
        return result

    def build(self, context, tag: str) -> None:
        self.run("bud", "--layers", "--runtime", "runc", "--isolation", "oci", "-t", tag, str(context))

    def tree(self, image: str) -> list[str]:
        container = self.run("from", "--pull-never", image).stdout.strip()
        try:
            return _tree(self.run("mount", container).stdout.strip())
        finally:
            self.run("rm", container)

    def config(self, image: str) -> dict:
        return json.loads(self.run("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]


def _ketch_tree(env, image: str) -> list[str]:
    root = env.cli("image", "mount", image, check=True).stdout.strip()
    try:
        return _tree(root)
    finally:
        env.cli("image", "umount", image, check=True)


def _context(tmp_path, name: str, dockerfile: str):
    import io
    import tarfile

    ctx = tmp_path / name
    write(ctx, {"Dockerfile": dockerfile, "conf.ini": "c\n", "files/conf.ini": "conf\n", "files/dir/f": "d\n",
                "files/dir/sub/g": "g\n"})
    os.chmod(ctx / "files/dir", 0o700)
    os.chmod(ctx / "files/dir/sub", 0o750)
    with tarfile.open(ctx / "files/owned.tar", "w") as tar:  # members owned by 1234, one 0700 directory
        entry = tarfile.TarInfo("pkg")
        entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, 0o700, 1234, 1234
        tar.addfile(entry)
        entry = tarfile.TarInfo("pkg/file")
        entry.size, entry.mode, entry.uid, entry.gid = 5, 0o640, 1234, 1234
        tar.addfile(entry, io.BytesIO(b"owned"))
    return ctx


@pytest.mark.peer
@pytest.mark.root_only("compared with buildah as root; rootless peers are compared in tests/rootless")
@pytest.mark.parametrize("name, dockerfile", [("parents", PARENTS), ("workdirs", WORKDIRS),
                                              ("volumes", VOLUMES_AND_MOUNTS)])
def test_the_corners_as_buildah_builds_them(builds, tmp_path, podman, name, dockerfile):
    ctx = _context(tmp_path, name, dockerfile)
    tag = f"localhost/corner-{name}"
    build(builds, ctx, "-t", tag)
    buildah = Buildah(podman)
    buildah.build(ctx, tag)
    ours, theirs = _ketch_tree(builds, tag), buildah.tree(tag)
    assert [line for line in ours if line not in theirs] == [line for line in theirs if line not in ours] == []
    ours_config = config_of(builds, tag)["config"]
    theirs_config = buildah.config(tag)
    (theirs_config.get("Labels") or {}).pop("io.buildah.version", None)
    for key in ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Volumes", "Labels"):
        assert ours_config.get(key) == theirs_config.get(key), key


def test_the_corners_owners_as_buildah_makes_them(builds, tmp_path):
    """The same corners without buildah (this runs as a user too): the owners and modes buildah
    1.28 gives, spelled out."""
    ctx = _context(tmp_path, "parents", PARENTS)
    build(builds, ctx, "-t", "corner-parents")
    tree = {line.split()[0]: line.split()[1:] for line in _ketch_tree(builds, "corner-parents")}
    directory = "40000"

    def owned(path: str) -> tuple[str, str, str]:
        kind, mode, owner = tree[path][:3]
        return kind, mode, owner

    for path in ("/etc/app", "/etc/app2", "/etc/app2/sub", "/chm", "/chm/a", "/chm/a/b"):
        assert owned(path) == (directory, "755", "1000:1000"), path  # --chown's user, 0755
    assert tree["/chm/a/b/conf.ini"][1:3] == ["600", "1000:1000"]  # --chmod: what is copied only
    assert owned("/plain/a") == (directory, "755", "0:0")
    assert owned("/dirdst/x") == owned("/dirdst/x/y") == (directory, "755", "1001:1001")
    assert owned("/chmoddir") == (directory, "755", "0:0") and owned("/chmoddir/sub") == (directory, "600", "0:0")
    assert owned("/tmp")[1:] == ("1777", "0:0") and owned("/etc")[1:] == ("755", "0:0")  # kept as they were
    assert owned("/etc/sub") == (directory, "750", "3:3")
    # ADD: the archive's members keep their owners and modes; --chown makes the parents
    assert owned("/added/p/q") == (directory, "755", "1002:1002")
    assert owned("/added/p/q/pkg") == (directory, "700", "1234:1234")
    assert tree["/added2/pkg/file"][1:3] == ["640", "1234:1234"]
    assert owned("/addfile/p") == (directory, "755", "1003:1003")
    # COPY --from: a new destination directory is not the source's; what is in it keeps its owners
    assert owned("/fromdst/m/n") == (directory, "755", "1004:1004")
    assert owned("/fromdst2/m/n") == (directory, "755", "0:0") and owned("/fromdst2/m/n/deep")[2] == "5:5"
    assert tree["/fromfile/a/file"][1:3] == ["640", "6:6"]
    assert owned("/own1")[2] == "1000:1000" and owned("/own2")[2] == "65534:65534"

    ctx = _context(tmp_path, "workdirs", WORKDIRS)
    build(builds, ctx, "-t", "corner-workdirs")
    tree = {line.split()[0]: line.split()[1:] for line in _ketch_tree(builds, "corner-workdirs")}
    assert owned("/r1") == owned("/r1/r2") == (directory, "755", "1000:1000")  # made by RUN, the USER's
    assert owned("/c1/c2")[2] == "1000:1000"  # made by a COPY elsewhere, the USER's
    assert owned("/d1")[2] == "9:9"  # the COPY into it made it first, with --chown
    assert tree["/w4/conf.ini"][0] == "100000"  # `COPY x .` copies into the directory
    assert owned("/w5")[2] == "0:0" and owned("/w7")[2] == "65534:65534"
    for never in ("/e1", "/w6", "/last"):  # replaced before a step made it, or the last instruction
        assert never not in tree
    # and a container of the image gets its working directory, as podman makes it
    made = builds.cli("run", "--rm", "--user", "7:8", "corner-workdirs", "stat", "-c", "%a %u:%g", "/last",
                      "/last/never/made", check=True)
    assert made.stdout == "755 0:0\n755 7:8\n"

    ctx = _context(tmp_path, "volumes", VOLUMES_AND_MOUNTS)
    build(builds, ctx, "-t", "corner-volumes")
    tree = {line.split()[0]: line.split()[1:] for line in _ketch_tree(builds, "corner-volumes")}
    assert owned("/v1/a") == owned("/v2/b") == (directory, "755", "0:0")  # made by the RUN after them, root's
    assert "/v3" not in tree  # no RUN after it (a COPY makes no VOLUME)
    for parent, target in (("/mnt/x", "/mnt/x/y"), ("/bm/x", "/bm/x/conf.ini"), ("/cm/x", "/cm/x/y")):
        assert owned(parent) == (directory, "755", "0:0") and target not in tree


@pytest.mark.peer
@pytest.mark.root_only("compared with buildah as root; rootless peers are compared in tests/rootless")
def test_builder_copy_and_add_make_parents_as_buildah_copy_does(builds, tmp_path, podman):
    ctx = _context(tmp_path, "copy", "FROM busybox\n")
    steps = [("copy", ["--chown", "5:5"], "files/conf.ini", "/pa/pb/"),
             ("copy", ["--chown", "5:5"], "files/conf.ini", "/qa/qb/c.ini"),
             ("add", ["--chown", "6:6"], "files/owned.tar", "/ra/"), ("copy", [], "files/dir", "/sa/sb"),
             ("copy", ["--chmod", "600"], "files/dir", "/ta/")]
    buildah = Buildah(podman)
    theirs_container = buildah.run("from", "--pull-never", "docker.io/library/busybox:latest").stdout.strip()
    ours_container = builds.cli("builder", "from", "busybox", check=True).stdout.strip()
    try:
        for verb, flags, source, destination in steps:
            buildah.run(verb, *flags, theirs_container, str(ctx / source), destination)
            builds.cli("builder", verb, *flags, ours_container, str(ctx / source), destination, check=True)
        theirs = _tree(buildah.run("mount", theirs_container).stdout.strip())
        root = builds.cli("builder", "mount", ours_container, check=True).stdout.strip()
        ours = _tree(root)
        builds.cli("builder", "umount", ours_container, check=True)
    finally:
        buildah.run("rm", theirs_container)
        builds.cli("builder", "rm", ours_container)
    picked = ("/pa", "/qa", "/ra", "/sa", "/ta")
    assert [line for line in ours if line.startswith(picked)] == [line for line in theirs if line.startswith(picked)]
    assert len([line for line in ours if line.startswith(picked)]) > 12


REBUILT = """
FROM busybox AS tools
RUN echo tool > /tool
FROM busybox
RUN echo hi > /hi
COPY conf.ini /conf.ini
COPY --from=tools /tool /tool
ENV MODE=rebuilt
CMD ["cat", "/conf.ini"]
"""


def _image_ids(env, *flags: str) -> set[str]:
    return set(env.cli("images", *flags, "-q", "--no-trunc", check=True).stdout.split())


def test_a_rebuild_from_the_cache_is_the_same_image_and_hides_its_steps(builds, tmp_path):
    """Every step a cache hit: the very same image id (a plain build, one with --label, one of a
    tar context); the steps' images are listed by `images -a` only."""
    ctx = _context(tmp_path, "rebuilt", REBUILT)
    before_all, before = _image_ids(builds, "-a"), _image_ids(builds)
    first = build(builds, ctx, "-q", "-t", "rebuilt").stdout.strip()
    again = build(builds, ctx, "-t", "rebuilt")
    assert again.stdout.strip().splitlines()[-1] == first
    assert again.stdout.count("Using cache") == 6  # each step after a FROM: RUN; RUN, COPY x2, ENV, CMD
    labelled = build(builds, ctx, "-q", "--label", "k=v", "-t", "labelled").stdout.strip()
    assert build(builds, ctx, "-q", "--label", "k=v", "-t", "labelled").stdout.strip() == labelled != first
    archive = tmp_path / "ctx.tar"
    subprocess.run(["tar", "-C", str(ctx), "-cf", str(archive), "."], check=True)
    assert build(builds, archive, "-q", "-t", "from-tar").stdout.strip() == first
    visible, everything = _image_ids(builds) - before, _image_ids(builds, "-a") - before_all
    # listed: the two named images and the tools stage's (no other image's parent: <none>, as podman
    # lists it); hidden: the last stage's steps before CMD (RUN, COPY, COPY, ENV), parents of others
    assert {f"sha256:{first}", f"sha256:{labelled}"} < visible and len(visible) == 3
    assert len(everything - visible) == 4


@pytest.mark.peer
@pytest.mark.root_only("compared with buildah as root; rootless peers are compared in tests/rootless")
def test_urls_named_contexts_ignorefile_and_output_as_buildah(builds, tmp_path, podman):
    """ADD of a URL (mode, owner, name), COPY --from a named build context, --ignorefile, and
    the file system written by --output type=local: buildah's and ketch's, file by file."""
    from tests.support.webserver import serve

    served = tmp_path / "www"
    write(served, {"file.txt": "downloaded\n"})
    extra = tmp_path / "extra"
    write(extra, {"note.txt": "named\n", "dir/inner.txt": "inner\n"})
    (tmp_path / "my.ignore").write_text("files/dir\nconf.ini\n")
    flags = ["--build-context", f"extra={extra}", "--ignorefile", str(tmp_path / "my.ignore")]
    with serve(served) as base:
        ctx = _context(tmp_path, "sources", f"""FROM busybox
ADD {base}/file.txt /dl/
ADD --chown=7:7 {base}/file.txt /dl2/x/renamed.txt
COPY --from=extra . /named/
COPY . /all/
""")
        build(builds, ctx, *flags, "-o", f"type=local,dest={tmp_path / 'ours'}")
        Buildah(podman).run("bud", "--layers", "--runtime", "runc", "--isolation", "oci", *flags, "-o",
                            f"type=local,dest={tmp_path / 'theirs'}", str(ctx))
    ours, theirs = _tree(str(tmp_path / "ours")), _tree(str(tmp_path / "theirs"))
    assert [line for line in ours if line not in theirs] == [line for line in theirs if line not in ours] == []
    assert any(line.startswith("/dl2/x/renamed.txt 100000 600 7:7") for line in ours)
    assert not any(line.startswith(("/all/conf.ini", "/all/files/dir")) for line in ours)


def test_heredoc_copies_make_their_parents_as_a_copy_does(builds, tmp_path):
    """COPY <<EOF with --chown (buildah 1.28 has no heredoc COPY: the rule of its other copies)."""
    ctx = tmp_path / "heredoc"
    write(ctx, {"Dockerfile": "FROM busybox\nCOPY --chown=1005:1005 <<EOT /here/doc/file\nhello\nEOT\n"
                              "COPY --chmod=600 <<EOT /there/\nbody\nEOT\nCOPY <<EOT /plain/new/file\nx\nEOT\n"})
    build(builds, ctx, "-t", "corner-heredoc")
    tree = {line.split()[0]: line.split()[1:4] for line in _ketch_tree(builds, "corner-heredoc")}
    assert tree["/here"] == tree["/here/doc"] == ["40000", "755", "1005:1005"]
    assert tree["/here/doc/file"] == ["100000", "644", "1005:1005"]
    assert tree["/there"] == ["40000", "755", "0:0"] and tree["/there/EOT"] == ["100000", "600", "0:0"]
    assert tree["/plain/new"] == ["40000", "755", "0:0"]
