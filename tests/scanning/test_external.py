"""External scanners run on the image's read-only view, as atomic scan ran them: the shipped
ClamAV and OpenSCAP definitions against real clamscan and oscap, with no network and a time limit."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.scanning import layouts
from tests.scanning.layouts import F

pytestmark = pytest.mark.peer

# The EICAR test file: every anti-virus detects it, and it is harmless by design.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture
def eicar_image(scan_store, tmp_path, busybox_layout) -> str:
    layout = layouts.write(tmp_path / "layout", [{"opt/eicar.com": F(EICAR), "opt/clean.txt": F("clean")}],
                           base="busybox")
    return scan_store.load(layout, "localhost/eicar:1")


def test_clamav_finds_eicar_with_a_local_signature(scan_store, eicar_image, tmp_path):
    database = tmp_path / "eicar.hdb"  # ClamAV's hash signatures: MD5:size:name
    database.write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Ketch-Test-EICAR\n")
    listed = scan_store.ketch("scan", "--list-scanners").stdout
    assert "clamav" in listed and "openscap" in listed
    report = scan_store.scan("--scanner", "clamav", "--scanner-opt", f"database={database}",
                             "localhost/eicar:1")["reports"][0]
    malware = [f for f in report["findings"] if f["scanner"] == "clamav"]
    assert [(f["kind"], f["path"], f["severity"]) for f in malware] == [("malware", "/opt/eicar.com", "critical")]
    assert "Ketch-Test-EICAR" in malware[0]["message"]
    assert any(s.startswith("clamav ClamAV") for s in report["scanners"])
    assert scan_store.ketch("scan", "--scanner", "clamav", "--scanner-opt", f"database={database}",
                            "--fail-on", "critical", "localhost/eicar:1", check=False).returncode == 1


OVAL = """<?xml version="1.0" encoding="UTF-8"?>
<oval_definitions xmlns="http://oval.mitre.org/XMLSchema/oval-definitions-5"
    xmlns:oval="http://oval.mitre.org/XMLSchema/oval-common-5"
    xmlns:unix="http://oval.mitre.org/XMLSchema/oval-definitions-5#unix">
  <generator><oval:schema_version>5.11.2</oval:schema_version>
    <oval:timestamp>2026-01-01T00:00:00</oval:timestamp></generator>
  <definitions>
    <definition class="compliance" id="oval:ketch.test:def:1" version="1">
      <metadata><title>no marker file</title><description>/etc/ketch-marker must not exist</description></metadata>
      <criteria><criterion test_ref="oval:ketch.test:tst:1"/></criteria>
    </definition>
  </definitions>
  <tests>
    <unix:file_test check="all" check_existence="none_exist" id="oval:ketch.test:tst:1" version="1"
        comment="marker absent"><unix:object object_ref="oval:ketch.test:obj:1"/></unix:file_test>
  </tests>
  <objects>
    <unix:file_object id="oval:ketch.test:obj:1" version="1">
      <unix:path>/etc</unix:path><unix:filename>ketch-marker</unix:filename>
    </unix:file_object>
  </objects>
</oval_definitions>
"""

XCCDF = """<?xml version="1.0" encoding="UTF-8"?>
<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2" id="xccdf_org.ketch_benchmark_test" resolved="1"
    xml:lang="en">
  <status>accepted</status>
  <version>1</version>
  <Profile id="xccdf_org.ketch_profile_test"><title>test</title>
    <select idref="xccdf_org.ketch_rule_no_marker" selected="true"/></Profile>
  <Rule id="xccdf_org.ketch_rule_no_marker" selected="true" severity="high">
    <title>No marker file</title>
    <check system="http://oval.mitre.org/XMLSchema/oval-definitions-5">
      <check-content-ref href="oval.xml" name="oval:ketch.test:def:1"/>
    </check>
  </Rule>
</Benchmark>
"""


def test_openscap_evaluates_a_rule_on_the_image(scan_store, tmp_path, busybox_layout):
    content = tmp_path / "content"
    content.mkdir()
    (content / "oval.xml").write_text(OVAL)
    (content / "xccdf.xml").write_text(XCCDF)
    with_marker = layouts.write(tmp_path / "marked", [{"etc/ketch-marker": F("x")}], base="busybox")
    without = layouts.write(tmp_path / "clean", [{"etc/other": F("x")}], base="busybox")
    scan_store.load(with_marker, "localhost/marked:1")
    scan_store.load(without, "localhost/clean:1")
    options = ["--scanner", "openscap", "--scanner-opt", f"content={content / 'xccdf.xml'}",
               "--scanner-opt", "profile=xccdf_org.ketch_profile_test"]
    marked = scan_store.scan(*options, "localhost/marked:1")["reports"][0]
    clean = scan_store.scan(*options, "localhost/clean:1")["reports"][0]
    assert [(f["kind"], f["severity"], f["message"]) for f in marked["findings"] if f["scanner"] == "openscap"] == \
        [("compliance", "high", "rule xccdf_org.ketch_rule_no_marker failed")]
    assert not [f for f in clean["findings"] if f["scanner"] == "openscap"]


def _definition(directory: Path, name: str, command: list[str], **extra) -> None:
    directory.mkdir(exist_ok=True)
    lines = [f'name = "{name}"', 'format = "lines"', f"command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    (directory / f"{name}.toml").write_text("\n".join(lines) + "\n")


def test_scanners_have_no_network_and_a_time_limit(scan_store, eicar_image, tmp_path):
    scanners = tmp_path / "scanners"
    _definition(scanners, "netdevs", ["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"])
    _definition(scanners, "reads", ["sh", "-c", "cat {rootfs}/opt/clean.txt; echo; touch {rootfs}/x 2>&1 || true"])
    pid_file = tmp_path / "slow.pid"
    _definition(scanners, "slow", ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 300"], timeout=1)
    common = ["--scanners-dir", str(scanners)]
    report = scan_store.scan(*common, "--scanner", "netdevs", "--scanner", "reads", "localhost/eicar:1")["reports"][0]
    lines = sorted((f["scanner"], f["message"]) for f in report["findings"] if f["scanner"] != "ketch")
    assert ("netdevs", "lo") in lines and len([line for line in lines if line[0] == "netdevs"]) == 1
    assert ("reads", "clean") in lines
    assert any(scanner == "reads" and "Read-only file system" in message for scanner, message in lines)
    started = time.monotonic()
    slow = scan_store.ketch("scan", *common, "--scanner", "slow", "localhost/eicar:1", check=False)
    assert slow.returncode == 125 and "time limit of 1 s" in slow.stderr and slow.stderr.count("\n") == 1
    assert time.monotonic() - started < 250  # (killed at its limit, not left to sleep 300 s)
    pid = pid_file.read_text().strip()
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_bad_scanner_definitions_and_options(scan_store, eicar_image, tmp_path):
    scanners = tmp_path / "scanners"
    scanners.mkdir()
    (scanners / "broken.toml").write_text("name = \n")
    result = scan_store.ketch("scan", "--scanners-dir", str(scanners), "--list-scanners", check=False)
    assert result.returncode == 125 and "broken.toml" in result.stderr
    (scanners / "broken.toml").unlink()
    result = scan_store.ketch("scan", "--scanner", "clamav", "--scanner-opt", "nosuch=1", "localhost/eicar:1",
                              check=False)
    assert result.returncode == 125 and "has no option nosuch" in result.stderr
