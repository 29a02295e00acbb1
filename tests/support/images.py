"""Test images made offline, cached between runs.

- ``busybox``: one layer from Debian's ``busybox-static`` (the binary plus a
  symlink per applet, /etc/passwd and the usual directories).
- ``big``: about 300 MB in four layers of incompressible files, for benchmarks.
- ``multiarch``: an OCI index with the busybox image for amd64 and a small
  arm64 image, for platform selection.

They are written as OCI layouts by hand (not with ketch), so tests compare
ketch against an independent construction. ``python -m tests.support.images
DIR`` prints the cache directory after making them.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

FIXTURE_VERSION = "3"
EPOCH = 1700000000  # fixed mtimes make the layers reproducible
CREATED = "2023-11-14T22:13:20Z"
BUSYBOX = Path("/bin/busybox")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
BIG_LAYERS = 4
BIG_LAYER_BYTES = 75 * 1024 * 1024


def cache_dir() -> Path:
    return Path(os.environ.get("KETCH_TEST_CACHE", "/var/cache/ketch-test")) / f"v{FIXTURE_VERSION}"


def _dumps(data) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


class LayoutWriter:
    """Writes blobs and an index.json; just enough of the image-layout spec."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.entries: list[dict] = []

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def blob_file(self, path: Path, media_type: str) -> dict:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        size = path.stat().st_size
        os.replace(path, self.root / "blobs" / "sha256" / digest)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": size}

    def image(self, layers: list[tuple[dict, str]], config: dict, arch: str = "amd64") -> dict:
        config = dict(config, architecture=arch, os="linux", created=CREATED,
                      rootfs={"type": "layers", "diff_ids": [diff for _, diff in layers]})
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": self.blob(_dumps(config), OCI_CONFIG),
                    "layers": [desc for desc, _ in layers]}
        return self.blob(_dumps(manifest), OCI_MANIFEST)

    def add(self, descriptor: dict, name: str | None = None) -> None:
        entry = dict(descriptor)
        if name:
            entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.entries.append(entry)

    def finish(self) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
        (self.root / "index.json").write_bytes(_dumps(index))


def _info(name: str, kind=tarfile.REGTYPE, mode=0o644, size=0, linkname="") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, linkname, EPOCH
    info.uname = info.gname = "root"
    return info


def _gzip_layer(writer: LayoutWriter, build, level: int = 6) -> tuple[dict, str]:
    """Run ``build(tar)`` into a gzip layer; returns (descriptor, diff_id)."""
    tmp = writer.root / "layer.tmp"
    diff = hashlib.sha256()

    class _Tee(io.RawIOBase):
        def __init__(self, sink):
            self.sink = sink

        def writable(self):
            return True

        def write(self, b):
            diff.update(b)
            return self.sink.write(b)

    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=level) as gz:
        with tarfile.open(fileobj=_Tee(gz), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            build(tar)
    return writer.blob_file(tmp, OCI_LAYER_GZIP), f"sha256:{diff.hexdigest()}"


def _busybox_tree(tar: tarfile.TarFile) -> None:
    for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555),
                    ("root", 0o700), ("sbin", 0o755), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755),
                    ("usr/bin", 0o755), ("usr/sbin", 0o755), ("var", 0o755), ("var/tmp", 0o1777)]:
        tar.addfile(_info(d, tarfile.DIRTYPE, mode))
    data = BUSYBOX.read_bytes()
    tar.addfile(_info("bin/busybox", mode=0o755, size=len(data)), io.BytesIO(data))
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True)
    for path in sorted(set(applets.stdout.split())):
        if path != "bin/busybox" and path.count("/") >= 1:
            tar.addfile(_info(path, tarfile.SYMTYPE, 0o777, linkname="/bin/busybox"))
    for name, text in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
                       ("etc/group", "root:x:0:\nnogroup:x:65534:\n")]:
        tar.addfile(_info(name, size=len(text)), io.BytesIO(text.encode()))


BUSYBOX_CONFIG = {"config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                             "Cmd": ["sh"], "Labels": {"org.opencontainers.image.title": "busybox"}},
                  "history": [{"created": CREATED, "created_by": "ketch test fixture: busybox-static"}]}


def make_busybox(root: Path) -> None:
    writer = LayoutWriter(root)
    writer.add(writer.image([_gzip_layer(writer, _busybox_tree)], BUSYBOX_CONFIG), "latest")
    writer.finish()


def make_multiarch(root: Path) -> None:
    writer = LayoutWriter(root)
    amd64 = writer.image([_gzip_layer(writer, _busybox_tree)], BUSYBOX_CONFIG)

    def arm_tree(tar):
        text = b"this would be an arm64 userland\n"
        tar.addfile(_info("README", size=len(text)), io.BytesIO(text))

    arm64 = writer.image([_gzip_layer(writer, arm_tree)], {"config": {"Cmd": ["sh"]}}, arch="arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        dict(amd64, platform={"architecture": "amd64", "os": "linux"}),
        dict(arm64, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]}
    writer.add(writer.blob(_dumps(index), OCI_INDEX), "latest")
    writer.finish()


def make_big(root: Path) -> None:
    writer = LayoutWriter(root)
    rng = random.Random(42)
    layers = [_gzip_layer(writer, _busybox_tree)]
    for n in range(BIG_LAYERS):
        def tree(tar, n=n):
            tar.addfile(_info(f"data{n}", tarfile.DIRTYPE, 0o755))
            remaining = BIG_LAYER_BYTES
            i = 0
            while remaining > 0:
                size = min(remaining, rng.choice((64 << 10, 1 << 20, 4 << 20)))
                data = rng.randbytes(size)
                tar.addfile(_info(f"data{n}/file{i:05d}.bin", size=size), io.BytesIO(data))
                remaining -= size
                i += 1
        layers.append(_gzip_layer(writer, tree, level=1))
    writer.add(writer.image(layers, BUSYBOX_CONFIG), "latest")
    writer.finish()


def base_layers(base: str, target: Path) -> tuple[list[tuple[dict, str]], dict]:
    """The layers (descriptor, diff_id) and config of fixture ``base``'s image, with its layer
    blobs linked (or copied) into the layout at ``target``: a new image's lower layers."""
    source = ensure(base)

    def blob(layout: Path, digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    index = json.loads((source / "index.json").read_text())
    manifest = json.loads(blob(source, index["manifests"][0]["digest"]).read_bytes())
    config = json.loads(blob(source, manifest["config"]["digest"]).read_bytes())
    (target / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for layer in manifest["layers"]:
        destination = blob(target, layer["digest"])
        if not destination.exists():
            try:
                os.link(blob(source, layer["digest"]), destination)
            except OSError:  # (another file system)
                shutil.copyfile(blob(source, layer["digest"]), destination)
    return list(zip(manifest["layers"], config["rootfs"]["diff_ids"])), config


def add_parents(tar: tarfile.TarFile, path: str, made: set, listed) -> None:
    """Directory entries (0755) for the parents of ``path`` not yet made nor ``listed``."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if parent not in made and parent not in listed:
            made.add(parent)
            tar.addfile(_info(parent, tarfile.DIRTYPE, 0o755))


def make_whiteouts(root: Path) -> None:
    """Two layers: the second deletes a file and makes a directory opaque."""
    writer = LayoutWriter(root)

    def lower(tar):
        for d in ("a", "b", "c"):
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o755))
        for name in ("a/x", "a/y", "b/z", "b/old", "c/keep"):
            data = f"{name}\n".encode()
            tar.addfile(_info(name, size=len(data)), io.BytesIO(data))

    def upper(tar):
        tar.addfile(_info("a/.wh.x"))
        tar.addfile(_info("b/.wh..wh..opq"))
        data = b"new\n"
        tar.addfile(_info("b/new", size=len(data)), io.BytesIO(data))

    writer.add(writer.image([_gzip_layer(writer, lower), _gzip_layer(writer, upper)], {"config": {}}), "latest")
    writer.finish()


def make_deep(root: Path, count: int = 120) -> None:
    """An image of ``count`` tiny layers (overlay must still mount it)."""
    writer = LayoutWriter(root)
    layers = []
    for n in range(count):
        def tree(tar, n=n):
            data = f"layer {n}\n".encode()
            tar.addfile(_info(f"layer{n:03d}", size=len(data)), io.BytesIO(data))
        layers.append(_gzip_layer(writer, tree))
    writer.add(writer.image(layers, {"config": {}}), "latest")
    writer.finish()


def make_derived(root: Path) -> None:
    """busybox's layer plus one more: shares its first layer with ``busybox``."""
    writer = LayoutWriter(root)

    def extra(tar):
        data = b"hello from the derived image\n"
        tar.addfile(_info("etc/derived", size=len(data)), io.BytesIO(data))

    writer.add(writer.image([_gzip_layer(writer, _busybox_tree), _gzip_layer(writer, extra)], BUSYBOX_CONFIG),
               "latest")
    writer.finish()


def make_busybox_ktest(root: Path) -> None:
    """busybox plus /usr/bin/ktest (tests/support/ktest.c): a server for socket activation and an
    sd_notify client, which busybox lacks."""
    from tests.support.helpers import ktest_binary

    writer = LayoutWriter(root)
    data = ktest_binary().read_bytes()

    def extra(tar):
        tar.addfile(_info("usr/bin/ktest", mode=0o755, size=len(data)), io.BytesIO(data))

    writer.add(writer.image([_gzip_layer(writer, _busybox_tree), _gzip_layer(writer, extra)], BUSYBOX_CONFIG),
               "latest")
    writer.finish()


DEBIAN_CONFIG = {"config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                            "Cmd": ["bash"]},
                 "history": [{"created": CREATED, "created_by": "ketch test fixture: debootstrap --variant=minbase"}]}


def _root_tree(source: Path):
    """A layer builder adding a root file system's tree (its /proc, /sys and /dev left out)."""
    def tree(tar):
        for path in sorted(source.rglob("*")):
            rel = str(path.relative_to(source))
            if rel.startswith(("proc/", "sys/", "dev/")):
                continue
            tar.add(str(path), arcname=rel, recursive=False)

    return tree


def debootstrap(target: Path, packages: list[str] | None = None) -> None:
    """Debian bookworm minbase (and ``packages``) at ``target``, from the Debian archive apt uses
    (the only network the tests have: a package registry); apt's caches emptied."""
    include = [f"--include={','.join(packages)}"] if packages else []
    subprocess.run(["debootstrap", "--variant=minbase", *include, "bookworm", str(target),
                    "http://deb.debian.org/debian"], check=True, capture_output=True, timeout=1200)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (target / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


def make_debian(root: Path) -> None:
    """Debian bookworm minbase, made with debootstrap from the Debian archive apt uses (the only
    network the tests have: a package registry); one layer."""
    import shutil
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="ketch-debootstrap-"))
    try:
        debootstrap(target)
        writer = LayoutWriter(root)
        writer.add(writer.image([_gzip_layer(writer, _root_tree(target), level=1)], DEBIAN_CONFIG), "latest")
        writer.finish()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def make_systemd(root: Path) -> None:
    """Debian with systemd as its init (tests/support/systemd_root.py's root), one layer."""
    from tests.support import systemd_root

    writer = LayoutWriter(root)
    config = {"config": {"Env": DEBIAN_CONFIG["config"]["Env"], "Cmd": ["/sbin/init"]},
              "history": [{"created": CREATED, "created_by": "ketch test fixture: debootstrap with systemd"}]}
    layer = _gzip_layer(writer, _root_tree(systemd_root.pristine()), level=1)
    writer.add(writer.image([layer], config), "latest")
    writer.finish()


MAKERS = {"busybox": make_busybox, "busybox-ktest": make_busybox_ktest, "debian": make_debian,
          "multiarch": make_multiarch, "big": make_big, "whiteouts": make_whiteouts,
          "deep": make_deep, "derived": make_derived, "systemd": make_systemd}


def cached(name: str, make, ready: str) -> Path:
    """``cache_dir()/name``, made once by ``make(path)`` and complete when ``ready`` (a path in
    it) exists; safe across processes. Each name has its own lock, so a maker may use another
    cached thing (the systemd image is made from the systemd root)."""
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    final = base / name
    if (final / ready).exists():
        return final
    with open(base / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ready).exists():
            return final
        tmp = base / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        make(tmp)
        os.replace(tmp, final)
    return final


def ensure(name: str) -> Path:
    """The OCI layout of fixture ``name``, made once and cached (safe across processes)."""
    return cached(name, MAKERS[name], "index.json")


if __name__ == "__main__":
    for fixture in sys.argv[1:] or ["busybox"]:
        print(ensure(fixture))
