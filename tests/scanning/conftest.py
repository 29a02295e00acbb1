"""Fixtures of the scan tests: a store of their own, and trees made by the real package tools
(rpm, go) whose own readers give the ground truth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_ketch
from tests.support import images
from tests.support.helpers import unmount_under


class ScanStore:
    """A store under tmp_path, driven through the ketch command."""

    def __init__(self, root: Path, *options: str) -> None:
        self.root = root / "root"
        self.runroot = root / "run"
        self.options = list(options)  # (--storage-opt ...: what the store is made with)

    def args(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), *self.options]

    def ketch(self, *args: str, check: bool = True, **kwargs):
        return run_ketch(*self.args(), *args, check=check, **kwargs)

    def load(self, layout: Path, name: str, tag: str = "latest") -> str:
        """Pull an OCI layout's image and name it; its id."""
        image_id = self.ketch("pull", "-q", f"oci:{layout}:{tag}").stdout.strip().splitlines()[-1]
        self.ketch("tag", image_id, name)
        return image_id

    def scan(self, *args: str, check: bool = True, **kwargs) -> dict:
        result = self.ketch("scan", "--format", "json", *args, check=check, **kwargs)
        return json.loads(result.stdout)


@pytest.fixture
def scan_store(tmp_path):
    yield from _store_of(tmp_path / "store")


@pytest.fixture
def fuse_scan_store(tmp_path):
    """A store whose overlay goes through fuse-overlayfs (as a user's store where the kernel
    refuses its overlay to user namespaces)."""
    yield from _store_of(tmp_path / "fuse-store", "--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs")


def _store_of(path: Path, *options: str):
    store = ScanStore(path, *options)
    try:
        yield store
    finally:
        for container in json.loads(store.ketch("ps", "-a", "--format", "json", check=False).stdout or "[]"):
            store.ketch("rm", "-f", container["Id"], check=False)
        unmount_under(path)  # (the store's private mounts directory, made by run)


RPM_SPEC = """\
Name: ketch-{name}
Version: {version}
Release: 3
Epoch: {epoch}
Summary: a test package
License: {license}
BuildArch: noarch
%description
a package of the ketch scan tests
%install
mkdir -p %{{buildroot}}/usr/share/ketch-{name}
echo {name} > %{{buildroot}}/usr/share/ketch-{name}/README
%files
/usr/share/ketch-{name}/README
"""


def make_rpmdb(root: Path) -> None:
    """A real rpm database (rpm 4.18's sqlite) holding two packages built with rpmbuild."""
    work = root / "build"
    rpms = []
    for name, version, epoch, license_ in (("alpha", "1.2.0", 0, "MIT"), ("beta", "2.0~rc1", 2, "GPL-2.0-only")):
        top = work / name
        (top / "SPECS").mkdir(parents=True)
        spec = top / "SPECS" / f"{name}.spec"
        spec.write_text(RPM_SPEC.format(name=name, version=version, epoch=epoch, license=license_))
        subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "--define", "_source_payload w0.gzdio",
                        "--define", "_binary_payload w0.gzdio", "-bb", str(spec)], check=True, capture_output=True)
        rpms += list((top / "RPMS").rglob("*.rpm"))
    dbpath = root / "tree" / "var" / "lib" / "rpm"
    dbpath.mkdir(parents=True)
    subprocess.run(["rpm", "--dbpath", str(dbpath), "--initdb"], check=True, capture_output=True)
    subprocess.run(["rpm", "--dbpath", str(dbpath), "-i", "--justdb", "--nodeps", "--ignorearch", *map(str, rpms)],
                   check=True, capture_output=True)
    shutil.rmtree(work)


GO_MAIN = """\
package main

import (
\t"fmt"
\t"example.com/ketchdep"
)

func main() { fmt.Println(ketchdep.Hello()) }
"""


def make_go_binary(root: Path) -> None:
    """A Go program built in module mode with a replaced local dependency (no network needed)."""
    source = root / "src"
    (source / "dep").mkdir(parents=True)
    (source / "dep" / "go.mod").write_text("module example.com/ketchdep\n\ngo 1.19\n")
    (source / "dep" / "dep.go").write_text('package ketchdep\n\nfunc Hello() string { return "hello" }\n')
    (source / "go.mod").write_text("module example.com/ketchapp\n\ngo 1.19\n\n"
                                   "require example.com/ketchdep v1.4.0\n\nreplace example.com/ketchdep v1.4.0 => ./dep\n")
    (source / "main.go").write_text(GO_MAIN)
    environment = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOCACHE": str(root / "cache"),
                   "GOPATH": str(root / "gopath"), "CGO_ENABLED": "0"}
    (root / "tree" / "usr" / "local" / "bin").mkdir(parents=True)
    subprocess.run(["go", "build", "-o", str(root / "tree" / "usr" / "local" / "bin" / "ketchapp"), "."],
                   cwd=source, env=environment, check=True, capture_output=True, timeout=900)
    shutil.rmtree(root / "cache", ignore_errors=True)
    subprocess.run(["chmod", "-R", "u+w", str(root / "gopath")], check=False)
    shutil.rmtree(root / "gopath", ignore_errors=True)
    shutil.rmtree(source)


@pytest.fixture(scope="session")
def rpm_tree() -> Path:
    return images.cached("scan-rpmdb", make_rpmdb, "tree/var/lib/rpm/rpmdb.sqlite") / "tree"


@pytest.fixture(scope="session")
def go_tree() -> Path:
    return images.cached("scan-go", make_go_binary, "tree/usr/local/bin/ketchapp") / "tree"
