"""Offline OSV matching: each ecosystem's version order in its hard cases, Debian's source
packages and releases, and databases as directories and as OSV's zip files."""

from __future__ import annotations

import json
import zipfile

import pytest

from ketch.errors import ScanError
from ketch.scanning.engine import ScanOptions, scan
from ketch.scanning.vulns import affected_by
from tests.support import systemd_root


def ranged(*events: dict, kind: str = "ECOSYSTEM") -> dict:
    return {"ranges": [{"type": kind, "events": list(events)}]}


@pytest.mark.parametrize("ecosystem, version, affected, expected", [
    # dpkg: a tilde sorts before everything, an epoch outweighs the version
    ("Debian:12", "1.0~rc1-1", ranged({"introduced": "0"}, {"fixed": "1.0-1"}), (True, "1.0-1")),
    ("Debian:12", "1.0-1", ranged({"introduced": "0"}, {"fixed": "1.0-1"}), (False, "")),
    ("Debian:12", "2.0-1", ranged({"introduced": "0"}, {"fixed": "1:1.0-1"}), (True, "1:1.0-1")),
    ("Debian:12", "1:0.9-1", ranged({"introduced": "0"}, {"fixed": "1.0-1"}), (False, "")),
    ("Debian:12", "2.36-9+deb12u3", ranged({"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}), (True, "2.36-9+deb12u4")),
    # rpm: release numbers compare as numbers, an epoch wins
    ("Rocky Linux:9", "1.0-10.el9", ranged({"introduced": "0"}, {"fixed": "1.0-9.el9"}), (False, "")),
    ("Rocky Linux:9", "1.0-9.el9", ranged({"introduced": "0"}, {"fixed": "1.0-10.el9"}), (True, "1.0-10.el9")),
    # apk: -r revisions numerically
    ("Alpine:v3.18", "1.2.4-r2", ranged({"introduced": "0"}, {"fixed": "1.2.4-r10"}), (True, "1.2.4-r10")),
    ("Alpine:v3.18", "1.2.4-r10", ranged({"introduced": "0"}, {"fixed": "1.2.4-r9"}), (False, "")),
    # PEP 440: a release candidate comes before the release, a post release after it
    ("PyPI", "2.0rc1", ranged({"introduced": "1.0"}, {"fixed": "2.0"}), (True, "2.0")),
    ("PyPI", "2.0.post1", ranged({"introduced": "1.0"}, {"fixed": "2.0"}), (False, "")),
    # semver: a prerelease before its release; introduced and last_affected bounds
    ("npm", "4.0.0-beta.2", ranged({"introduced": "3.0.0"}, {"fixed": "4.0.0"}, kind="SEMVER"), (True, "4.0.0")),
    ("npm", "2.9.9", ranged({"introduced": "3.0.0"}, {"fixed": "4.0.0"}, kind="SEMVER"), (False, "")),
    ("npm", "1.5.0", ranged({"introduced": "0"}, {"last_affected": "1.5.0"}), (True, "")),
    ("npm", "1.5.1", ranged({"introduced": "0"}, {"last_affected": "1.5.0"}), (False, "")),
    # Go: a pseudo-version sorts before the release it precedes
    ("Go", "v0.0.0-20210101000000-abcdefabcdef", ranged({"introduced": "0"}, {"fixed": "0.1.0"}), (True, "0.1.0")),
    ("Go", "v0.1.1-0.20220101000000-abcdefabcdef", ranged({"introduced": "0"}, {"fixed": "0.1.0"}), (False, "")),
    # two ranges in one: only the second interval holds the version
    ("PyPI", "3.5", ranged({"introduced": "1.0"}, {"fixed": "2.0"}, {"introduced": "3.0"}, {"fixed": "3.6"}),
     (True, "3.6")),
    ("PyPI", "2.5", ranged({"introduced": "1.0"}, {"fixed": "2.0"}, {"introduced": "3.0"}, {"fixed": "3.6"}),
     (False, "")),
    # an explicit versions list
    ("Maven", "1.2.3", {"versions": ["1.2.3"]}, (True, "")),
])
def test_version_ranges(ecosystem, version, affected, expected):
    assert affected_by(version, affected, ecosystem) == expected


def advisory(id_: str, ecosystem: str, name: str, fixed: str, **extra) -> dict:
    return {"id": id_, "modified": "2026-01-01T00:00:00Z", "summary": f"{name} is broken",
            "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            **extra}


def debian_advisories() -> list[dict]:
    return [
        # libc6's source package is glibc: Debian's advisories name the source
        advisory("DEBIAN-CVE-2099-0001", "Debian:12", "glibc", "99.0-1", aliases=["CVE-2099-0001"],
                 severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]),
        # the same package in another release must not match
        advisory("DEBIAN-CVE-2099-0002", "Debian:11", "dpkg", "99.0"),
        # fixed long ago: must not match
        advisory("DEBIAN-CVE-2099-0003", "Debian:12", "dpkg", "1.0"),
        # a binary package's name, not a source's: must not match (libc6 is not a source package)
        advisory("DEBIAN-CVE-2099-0004", "Debian:12", "libc6", "99.0-1"),
    ]


def test_debian_matches_by_source_package_and_release(tmp_path):
    database = tmp_path / "osv"
    database.mkdir()
    for record in debian_advisories():
        (database / f"{record['id']}.json").write_text(json.dumps(record))
    report = scan(rootfs=str(systemd_root.pristine()), options=ScanOptions(vuln_db=str(database)))[0]
    found = {(v.id, v.package) for v in report.vulnerabilities}
    libc = {p.name for p in report.packages if p.source_name == "glibc"}
    assert found == {("DEBIAN-CVE-2099-0001", name) for name in libc} and "libc6" in libc
    vulnerability = report.vulnerabilities[0]
    assert (vulnerability.severity, vulnerability.aliases, vulnerability.fixed, vulnerability.ecosystem) == \
        ("critical", ["CVE-2099-0001"], "99.0-1", "Debian:12")
    assert report.vuln_db.startswith("sha256:")


def test_osv_zip_files_and_severity_ratings(tmp_path):
    site = tmp_path / "usr/lib/python3/dist-packages/oldlib-1.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: OldLib\nVersion: 1.0\n")
    archive = tmp_path / "db" / "PyPI" / "all.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("GHSA-aaaa-bbbb-cccc.json", json.dumps(advisory(
            "GHSA-aaaa-bbbb-cccc", "PyPI", "oldlib", "1.1", aliases=["CVE-2099-1000"],
            database_specific={"severity": "MODERATE"})))
        zipped.writestr("PYSEC-2099-1.json", json.dumps(advisory("PYSEC-2099-1", "PyPI", "OldLib", "0.9")))
    tree = tmp_path / "usr"
    report = scan(rootfs=str(tree.parent), options=ScanOptions(vuln_db=str(tmp_path / "db")))[0]
    assert [(v.id, v.severity, v.fixed, v.package) for v in report.vulnerabilities] == \
        [("GHSA-aaaa-bbbb-cccc", "medium", "1.1", "oldlib")]


def test_a_database_in_the_wrong_format_is_refused(tmp_path):
    database = tmp_path / "db"
    database.mkdir()
    (database / "x.json").write_text("{not json")
    with pytest.raises(ScanError, match="is not JSON"):
        scan(rootfs=str(tmp_path), options=ScanOptions(vuln_db=str(database)))
    (database / "x.json").write_text('{"hello": "world"}')
    with pytest.raises(ScanError, match="not an OSV record"):
        scan(rootfs=str(tmp_path), options=ScanOptions(vuln_db=str(database)))
    (database / "x.json").unlink()
    (database / "all.zip").write_bytes(b"not a zip")
    with pytest.raises(ScanError, match="not a readable zip"):
        scan(rootfs=str(tmp_path), options=ScanOptions(vuln_db=str(database)))
    with pytest.raises(ScanError, match="no such file"):
        scan(rootfs=str(tmp_path), options=ScanOptions(vuln_db=str(tmp_path / "missing")))
