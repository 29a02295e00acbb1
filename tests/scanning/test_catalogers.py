"""Package catalogers against the real tools' own readers: dpkg-query on a Debian tree, rpm -qa on
a database rpm made, importlib.metadata on a site-packages, go version -m on a Go binary; and the
formats with no reader on this machine (apk, distroless status.d, npm, Maven) from their
documented layouts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from ketch.scanning.engine import scan
from ketch.scanning.model import ScanReport
from tests.support import systemd_root


def rootfs_scan(path: Path) -> ScanReport:
    return scan(rootfs=str(path))[0]


def packages_of(report: ScanReport, kind: str) -> dict[str, object]:
    return {p.name: p for p in report.packages if p.type == kind}


def test_dpkg_matches_dpkg_query_on_a_debian_tree():
    tree = systemd_root.pristine()
    truth = subprocess.run(["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f",
                            "${db:Status-Status} ${Package} ${Version} ${Architecture} ${source:Package} "
                            "${source:Version}\n"], capture_output=True, text=True, check=True).stdout
    expected = {tuple(line.split()[1:]) for line in truth.splitlines() if line.startswith("installed ")}
    report = rootfs_scan(tree)
    found = {(p.name, p.version, p.arch, p.source_name, p.source_version) for p in report.packages if p.type == "deb"}
    assert found == expected and len(found) > 80
    assert (report.distro.id, report.distro.version_id) == ("debian", "12")
    dpkg = packages_of(report, "deb")["dpkg"]
    listed = subprocess.run(["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-L", "dpkg"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert set(dpkg.files) == set(listed) - {"/."}
    assert "GPL-2+" in dpkg.licenses
    assert dpkg.purl == f"pkg:deb/debian/dpkg@{dpkg.version}?arch={dpkg.arch}&distro=debian-12"


def test_distroless_status_d(tmp_path):
    status = tmp_path / "var/lib/dpkg/status.d"
    status.mkdir(parents=True)
    (status / "base-files").write_text("Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n")
    (status / "libssl3").write_text("Package: libssl3\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2\n"
                                    "Architecture: amd64\n")
    (status / "libssl3.md5sums").write_text("d41d8cd98f00b204e9800998ecf8427e  usr/lib/libssl.so.3\n")
    found = packages_of(rootfs_scan(tmp_path), "deb")
    assert set(found) == {"base-files", "libssl3"}
    assert (found["libssl3"].source_name, found["libssl3"].source_version) == ("openssl", "3.0.11-1~deb12u2")


def test_rpm_sqlite_matches_rpm_qa(rpm_tree):
    truth = subprocess.run(["rpm", "--dbpath", str(rpm_tree / "var/lib/rpm"), "-qa", "--qf",
                            "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH} %{LICENSE}\n"],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    expected = {tuple(line.split(" ", 3)) for line in truth if line}
    found = packages_of(rootfs_scan(rpm_tree), "rpm")
    normalized = {(p.name, p.version if ":" in p.version else f"0:{p.version}", p.arch, p.licenses[0])
                  for p in found.values()}
    assert normalized == expected and len(expected) == 2
    files = subprocess.run(["rpm", "--dbpath", str(rpm_tree / "var/lib/rpm"), "-ql", "ketch-beta"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert found["ketch-beta"].files == files
    assert found["ketch-beta"].version == "2:2.0~rc1-3"


def test_rpm_berkeleydb_is_refused_with_a_warning(tmp_path):
    database = tmp_path / "var/lib/rpm/Packages"
    database.parent.mkdir(parents=True)
    database.write_bytes(b"\0" * 12 + b"\x61\x15\x06\x00" + b"\0" * 4080)  # a BerkeleyDB hash file's magic
    report = rootfs_scan(tmp_path)
    assert not report.packages
    warning, = [f for f in report.findings if f.kind == "warning"]
    assert "BerkeleyDB" in warning.message and warning.path == "/var/lib/rpm/Packages"


APK_INSTALLED = """\
C:Q1SJxeBjKNIdxWXJtqYSiSf1ZxWkY=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1698225813
F:lib
R:ld-musl-x86_64.so.1
R:libc.musl-x86_64.so.1

C:Q1UCi1KKNRmHHCpYT0kW5qL0FwTL4=
P:libcrypto3
V:3.1.4-r1
A:x86_64
L:Apache-2.0
o:openssl
F:usr/lib
R:libcrypto.so.3
"""


def test_apk_installed(tmp_path):
    database = tmp_path / "lib/apk/db/installed"
    database.parent.mkdir(parents=True)
    database.write_text(APK_INSTALLED)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME="Alpine Linux v3.18"\n')
    found = packages_of(rootfs_scan(tmp_path), "apk")
    assert found["musl"].files == ["/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1"]
    assert (found["libcrypto3"].source_name, found["libcrypto3"].licenses) == ("openssl", ["Apache-2.0"])
    assert found["musl"].purl == "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.18.4"


def test_python_distributions_match_importlib_metadata(tmp_path):
    import importlib.metadata

    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    # every directory holding distributions (vendored ones, such as setuptools', too)
    holders = {str(p.parent) for p in site.rglob("*.dist-info")} | {str(p.parent) for p in site.rglob("*.egg-info")}
    expected = {(d.metadata["Name"].lower().replace("_", "-").replace(".", "-"), d.version)
                for d in importlib.metadata.distributions(path=sorted(holders))}
    report = rootfs_scan(site)
    found = {(p.name, p.version) for p in report.packages if p.type == "pypi"}
    assert found == expected and len(found) > 20
    pytest_package = packages_of(report, "pypi")["pytest"]
    assert pytest_package.licenses and any(f.endswith("/_pytest/python.py") for f in pytest_package.files)
    assert pytest_package.purl == f"pkg:pypi/pytest@{pytest_package.version}"


def test_egg_info(tmp_path):
    egg = tmp_path / "usr/lib/python3/dist-packages/Old_Thing-0.3.egg-info"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: Old_Thing\nVersion: 0.3\nLicense: BSD\n")
    (tmp_path / "usr/lib/python3/dist-packages/single-1.0.egg-info").write_text("Name: single\nVersion: 1.0\n")
    found = packages_of(rootfs_scan(tmp_path), "pypi")
    assert (found["old-thing"].version, found["old-thing"].licenses) == ("0.3", ["BSD"])
    assert found["single"].version == "1.0"


def test_npm_node_modules(tmp_path):
    modules = tmp_path / "app/node_modules"
    for path, manifest in (("express", {"name": "express", "version": "4.18.2", "license": "MIT"}),
                           ("@babel/core", {"name": "@babel/core", "version": "7.23.0",
                                            "license": {"type": "MIT"}}),
                           ("express/node_modules/debug", {"name": "debug", "version": "2.6.9"})):
        (modules / path).mkdir(parents=True)
        (modules / path / "package.json").write_text(json.dumps(manifest))
    (tmp_path / "app/package.json").write_text('{"name": "my-app", "version": "1.0.0"}')  # the project's own
    (modules / "express/lib").mkdir()
    (modules / "express/lib/package.json").write_text('{"name": "not-a-package", "version": "0"}')
    found = {(p.namespace, p.name, p.version, tuple(p.licenses), p.purl) for p in rootfs_scan(tmp_path).packages}
    assert found == {("", "express", "4.18.2", ("MIT",), "pkg:npm/express@4.18.2"),
                     ("@babel", "core", "7.23.0", ("MIT",), "pkg:npm/%40babel/core@7.23.0"),
                     ("", "debug", "2.6.9", (), "pkg:npm/debug@2.6.9")}


def _jar(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_java_archives(tmp_path):
    pom = b"#Generated by Maven\ngroupId=org.apache.commons\nartifactId=commons-lang3\nversion=3.12.0\n"
    inner = _jar({"META-INF/maven/com.google.guava/guava/pom.properties":
                  b"groupId=com.google.guava\nartifactId=guava\nversion=32.1.2-jre\n"})
    (tmp_path / "opt/app/lib").mkdir(parents=True)
    (tmp_path / "opt/app/lib/commons-lang3.jar").write_bytes(
        _jar({"META-INF/maven/org.apache.commons/commons-lang3/pom.properties": pom, "Foo.class": b"\xca\xfe"}))
    (tmp_path / "opt/app/app.war").write_bytes(_jar({"WEB-INF/lib/guava.jar": inner}))
    (tmp_path / "opt/app/broken.jar").write_bytes(b"PK\x03\x04 not really a zip")
    report = rootfs_scan(tmp_path)
    found = {(p.namespace, p.name, p.version, p.purl) for p in report.packages}
    assert found == {("org.apache.commons", "commons-lang3", "3.12.0",
                      "pkg:maven/org.apache.commons/commons-lang3@3.12.0"),
                     ("com.google.guava", "guava", "32.1.2-jre", "pkg:maven/com.google.guava/guava@32.1.2-jre")}
    assert [f.path for f in report.findings if f.kind == "warning"] == ["/opt/app/broken.jar"]


def test_go_build_info_matches_go_version_m(go_tree):
    binary = go_tree / "usr/local/bin/ketchapp"
    truth = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True, text=True, check=True).stdout
    modules = {}
    go_version = truth.splitlines()[0].split(": ", 1)[1].strip()
    for line in truth.splitlines()[1:]:
        fields = line.strip().split("\t")
        if fields[0] in ("mod", "dep"):
            modules[fields[1]] = fields[2]
        elif fields[0] == "=>":  # replaced by a local directory: the module keeps its path
            modules[list(modules)[-1]] = fields[2]
    found = {p.name: p.version for p in rootfs_scan(go_tree).packages if p.type == "golang"}
    assert found == {**modules, "stdlib": "v" + go_version[2:]}
    assert "example.com/ketchdep" in found and "example.com/ketchapp" in found
