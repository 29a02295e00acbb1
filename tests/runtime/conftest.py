"""Bundles of the busybox image for runtime tests, and a private state root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from ketch.runtime.spec import default_spec
from tests.support import cgroups, images

RUNTIME = str(Path(sys.executable).parent / "ketch-runtime")


def busybox_rootfs(target: Path) -> None:
    layout = images.ensure("busybox")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    with tarfile.open(layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]) as tar:
        tar.extractall(target, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(target)


class Bundle:
    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root  # the runtime's state root
        self.config = default_spec()
        self.config["process"]["terminal"] = False
        self.wrapper: list[str] = []  # a command the runtime runs under (e.g. another mount namespace)

    def write(self) -> Bundle:
        (self.path / "config.json").write_text(json.dumps(self.config))
        return self

    def args(self, *argv: str) -> Bundle:
        self.config["process"]["args"] = list(argv)
        return self.write()

    def runtime_command(self, *args: str) -> list[str]:
        """The command line ``runtime`` runs (for a caller that runs it another way)."""
        return [*self.wrapper, RUNTIME, "--root", str(self.root), *args] + (
            ["--bundle", str(self.path)] if args[:1] == ("run",) else [])

    def runtime(self, *args: str, check: bool = False, timeout: float = 60, **kwargs):
        """Run ketch-runtime. Output goes through files, not pipes: a created container inherits
        the runtime's stdio, and a pipe would stay open (and block a reader) while it lives."""
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([*self.wrapper, RUNTIME, "--root", str(self.root), *args], stdout=out, stderr=err,
                                  timeout=timeout, **kwargs)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read().decode(errors="replace"),
                                                 err.read().decode(errors="replace"))
        if check and result.returncode != 0:
            raise AssertionError(f"ketch-runtime {' '.join(args)}: {result.returncode} {result.stderr}")
        return result

    def run(self, *argv: str, name: str = "c1", **kwargs):
        self.args(*argv)
        return self.runtime("run", "--bundle", str(self.path), name, **kwargs)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("busybox-rootfs") / "rootfs"
    path.mkdir()
    busybox_rootfs(path)
    return path


@pytest.fixture
def bundle(tmp_path, rootfs_template):
    import tempfile

    # Not under pytest's 0700 directories: a container root mapped to another host uid
    # (user namespaces) must be able to reach its root file system.
    path = Path(tempfile.mkdtemp(prefix="ketch-bundle-"))
    path.chmod(0o755)
    subprocess.run(["cp", "-a", str(rootfs_template), str(path / "rootfs")], check=True)
    b = Bundle(path, tmp_path / "state").write()
    yield b
    # whatever a test left: every container of this root is removed
    listing = b.runtime("list", "--format", "json")
    for state in json.loads(listing.stdout or "[]") if listing.returncode == 0 else []:
        b.runtime("delete", "--force", state["id"])
    shutil.rmtree(b.root, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cgroup_path(bundle):
    path = f"/ketch-test/{os.getpid()}-{time.monotonic_ns()}"
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.config["root"]["readonly"] = False
    yield path
    for root in cgroups.roots():
        for leftover in (f"{root}{path}", f"{root}/ketch-test"):
            if os.path.isdir(leftover):
                try:
                    os.rmdir(leftover)
                except OSError:
                    pass


@pytest.fixture(scope="session", autouse=True)
def remove_parent_cgroups():
    """Containers' cgroups go with them; the empty parents the tests made (the runtime's default
    /ketch-runtime and the tests' /ketch-test) are removed once every test ran."""
    yield
    for hierarchy in map(Path, cgroups.roots()):
        for parent in ("ketch-test", "ketch-runtime"):
            try:
                (hierarchy / parent).rmdir()
            except OSError:
                pass  # absent, or still in use by something that is not ours to remove
