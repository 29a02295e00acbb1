"""``ketch scan`` on images and containers of a real store: layers merged by overlay's rules, the
layer each package and finding came from, the read-only view and its end on every path (kill -9
included), the cache, remote images, the output formats, and hostile trees."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import KETCH
from tests.scanning import layouts
from tests.scanning.layouts import OPAQUE, WHITEOUT, D, F, L
from tests.support import images
from tests.support.images import EPOCH


def debian_status() -> str:
    """The dpkg status file of the debian fixture's one layer."""
    layout = images.ensure("debian")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    with gzip.open(layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]) as stream, \
            tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.name.lstrip("./") == "var/lib/dpkg/status":
                return tar.extractfile(member).read().decode()
    raise AssertionError("the debian fixture has no dpkg status")


DEMO_STANZA = ("Package: ketch-demo\nStatus: install ok installed\nArchitecture: amd64\nSource: ketch-demo-src\n"
               "Version: 1.0-1\nDescription: a demo\n")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def scenario(target: Path) -> Path:
    """debian, then a layer that installs a package (and changes one of its own files after), then a
    layer that deletes, replaces and hides what the second brought."""
    status = debian_status()
    install = {
        "var/lib/dpkg/status": F(status.rstrip("\n") + "\n\n" + DEMO_STANZA),
        "var/lib/dpkg/info/ketch-demo.list": F("/.\n/usr\n/usr/bin\n/usr/bin/ketch-demo\n/usr/bin/ketch-demo2\n"),
        "var/lib/dpkg/info/ketch-demo.md5sums": F(f"{md5(b'demo')}  usr/bin/ketch-demo\n"
                                                  f"{md5(b'demo2')}  usr/bin/ketch-demo2\n"),
        "usr/bin/ketch-demo": F("demo", 0o755),
        "usr/bin/ketch-demo2": F("changed after install", 0o755, mtime=EPOCH + 100),  # in the same layer
        "usr/bin/ketch-suid": F("x", 0o4755),
        "root/.ssh/id_rsa": F("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n",
                              0o600),
        "app/node_modules/left-pad/package.json": F('{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}'),
        "srv/shared": F("anyone", 0o666),
        "srv/drop": D(0o777),
    }
    change = {
        "usr/bin/ketch-suid": WHITEOUT,
        "usr/bin/ketch-demo": F("replaced", 0o755, mtime=EPOCH - 1000),  # older: only the layer tells
        "usr/bin/dpkg": F("not dpkg", 0o755),  # a base package's file
        "app/node_modules": OPAQUE,
        "app/node_modules/right-pad/package.json": F('{"name": "right-pad", "version": "0.1.0"}'),
        "home/user/.docker/config.json": F('{"auths": {"registry.example": {"auth": "dTpw"}}}'),
    }
    config = {"config": {"Env": ["PATH=/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY=abc123"]},
              "history": [{"created_by": "debootstrap"},
                          {"created_by": "/bin/sh -c export DB_PASSWORD=hunter2 && install-demo"},
                          {"created_by": "/bin/sh -c change"}]}
    return layouts.write(target, [install, change], config, base="debian")


@pytest.fixture
def scenario_image(scan_store, tmp_path) -> str:
    return scan_store.load(scenario(tmp_path / "layout"), "localhost/scenario:1")


def diff_ids(scan_store, name: str) -> list[str]:
    inspected = json.loads(scan_store.ketch("image", "inspect", name).stdout)[0]
    return inspected["RootFS"]["Layers"]


def test_layers_merge_as_overlay_and_keep_their_origin(scan_store, scenario_image):
    report = scan_store.scan("localhost/scenario:1")["reports"][0]
    base, install, change = diff_ids(scan_store, "localhost/scenario:1")
    assert report["layers"] == [base, install, change]
    packages = {(p["type"], p["name"]): p for p in report["packages"]}
    # debian's packages stay the base layer's though the second layer rewrote the status file
    assert packages[("deb", "dpkg")]["layer"] == base
    assert packages[("deb", "ketch-demo")]["layer"] == install
    assert packages[("deb", "ketch-demo")]["source_name"] == "ketch-demo-src"
    assert packages[("deb", "ketch-demo")]["files"] == ["/usr", "/usr/bin", "/usr/bin/ketch-demo",
                                                        "/usr/bin/ketch-demo2"]
    assert packages[("npm", "right-pad")]["layer"] == change
    assert ("npm", "left-pad") not in packages  # hidden by the opaque directory
    findings = {(f["kind"], f["path"]): f for f in report["findings"]}
    assert ("setuid", "/usr/bin/ketch-suid") not in findings  # whited out
    assert findings[("private-key", "/root/.ssh/id_rsa")]["layer"] == install
    assert findings[("credentials", "/home/user/.docker/config.json")]["layer"] == change
    assert findings[("world-writable", "/srv/shared")]["severity"] == "medium"
    assert ("world-writable", "/srv/drop") in findings
    modified = {path: f["layer"] for (kind, path), f in findings.items() if kind == "modified-package-file"}
    assert modified == {"/usr/bin/ketch-demo2": install, "/usr/bin/ketch-demo": change, "/usr/bin/dpkg": change}
    kinds = {f["kind"] for f in report["findings"] if not f["path"]}
    assert {"secret-env", "secret-history", "no-user", "no-healthcheck"} <= kinds
    assert not any("hunter2" in f["message"] or "abc123" in f["message"] for f in report["findings"])
    assert ("setuid", "/usr/bin/su") in findings and findings[("setuid", "/usr/bin/su")]["layer"] == base


def test_the_view_is_read_only_private_and_ends_with_its_holder(scan_store, scenario_image):
    from ketch.storage.store import Store

    store = Store(scan_store.root, scan_store.runroot)
    with store.view("localhost/scenario:1") as view:
        holder = view.holder
        target = str(scan_store.root / "views")
        options = [line.split() for line in Path(f"/proc/{holder}/mountinfo").read_text().splitlines()
                   if line.split()[4] == target]
        assert options, "the view is not mounted in its holder's namespace"
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options[-1][5].split(","))
        assert not any(line.split()[4] == target for line in Path("/proc/self/mountinfo").read_text().splitlines())
        assert (view.path / "usr/bin/ketch-demo").read_bytes() == b"replaced"
        assert not (view.path / "usr/bin/ketch-suid").exists()
        with pytest.raises(OSError):
            (view.path / "new-file").write_text("no")
        rmi = scan_store.ketch("rmi", scenario_image, check=False)
        assert rmi.returncode != 0 and "ketch scan" in rmi.stderr
    assert not Path(f"/proc/{holder}").exists()
    scan_store.ketch("rmi", scenario_image)


def test_a_fuse_overlayfs_store_is_viewed_through_fuse_overlayfs(scan_store, fuse_scan_store, scenario_image,
                                                                  tmp_path):
    """A store whose overlay goes through fuse-overlayfs gets its views through fuse-overlayfs
    too (the kernel's overlay may be what is refused to it), with the same options and the same
    report; the program ends with the view, and with a holder killed by SIGKILL."""
    from ketch.storage.store import Store

    fuse_scan_store.load(tmp_path / "layout", "localhost/scenario:1")  # (the layout scenario_image wrote)
    store = Store(fuse_scan_store.root, fuse_scan_store.runroot)
    target = str(fuse_scan_store.root / "views")
    for end in ("closed", "holder killed"):
        with store.view("localhost/scenario:1") as view:
            mounted = [line.split() for line in Path(f"/proc/{view.holder}/mountinfo").read_text().splitlines()
                       if line.split()[4] == target]
            assert mounted and mounted[-1][mounted[-1].index("-") + 1] == "fuse.fuse-overlayfs"
            assert {"ro", "nosuid", "nodev", "noexec"} <= set(mounted[-1][5].split(","))
            assert (view.path / "usr/bin/ketch-demo").read_bytes() == b"replaced"
            assert not (view.path / "usr/bin/ketch-suid").exists()  # (a whiteout)
            assert not (view.path / "app/node_modules/left-pad").exists()  # (under an opaque directory)
            with pytest.raises(OSError):
                (view.path / "new-file").write_text("no")
            programs = [c for c in _descendants(view.holder) if _cmdline(c).startswith(b"/usr/bin/fuse-overlayfs")]
            assert len(programs) == 1
            if end == "holder killed":
                os.kill(view.holder, signal.SIGKILL)
        _wait_for(lambda program=programs[0]: _ended(program), f"fuse-overlayfs to end ({end})")
    fused, native = (s.scan("localhost/scenario:1", "--no-cache")["reports"][0] for s in (fuse_scan_store, scan_store))
    assert fused["packages"] and fused["findings"]
    assert (fused["packages"], fused["findings"]) == (native["packages"], native["findings"])
    fuse_scan_store.ketch("storage", "check")


def _process_report(pid: int) -> str:
    lines = []
    for each in [pid, *_descendants(pid)]:
        try:
            status = {k: v.strip() for k, v in (line.split(":", 1) for line in
                                                 Path(f"/proc/{each}/status").read_text().splitlines())}
            wchan = Path(f"/proc/{each}/wchan").read_text()
            lines.append(f"{each} {_cmdline(each)[:80]!r} state={status.get('State')} threads={status.get('Threads')} "
                         f"ignored={status.get('SigIgn')} blocked={status.get('SigBlk')} wchan={wchan}")
        except OSError:
            continue
    return "; ".join(lines)


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        pass  # (it ended meanwhile)
    return found


def _descendants(pid: int) -> list[int]:
    found = _children(pid)
    for child in list(found):
        found += _descendants(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ended(pid: int) -> bool:
    """Whether the process is gone or a zombie (its end not yet collected)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_for(condition, what: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_scan_leaves_no_mount_and_no_count(scan_store, scenario_image, tmp_path, how):
    scanners = tmp_path / "scanners"
    scanners.mkdir()
    marker = tmp_path / "scanner-started"
    (scanners / "slow.toml").write_text(f'name = "slow"\nformat = "lines"\n'
                                        f'command = ["sh", "-c", "touch {marker}; exec sleep 600"]\n')
    # (env --default-signal: the scan gets SIGINT's default disposition whatever this test process
    # was left with by earlier tests, as a shell gives a command it starts)
    process = subprocess.Popen(["env", "--default-signal=INT", KETCH, *scan_store.args(), "scan", "--scanners-dir",
                                str(scanners), "--scanner", "slow", "localhost/scenario:1"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        _wait_for(marker.exists, "the scanner to start")
        helpers: list[int] = []

        def holders_found() -> bool:  # (any depth below the scan, read again until seen: /proc's children
            # lists are not a snapshot, and a busy machine shows them late)
            helpers[:] = [c for c in _descendants(process.pid) if b"ketch-view" in _cmdline(c)]
            return bool(helpers)

        _wait_for(holders_found, "the view holder")
        process.send_signal(how)
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # (say what the scan was doing, for the one who reads this)
            raise AssertionError(f"the scan did not end after signal {how}: {_process_report(process.pid)}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if how == signal.SIGINT:
        assert process.returncode == 130 and b"interrupted" in stderr
    for helper in helpers:
        _wait_for(lambda helper=helper: _ended(helper), "the view holder to end")
    scan_store.ketch("storage", "check")
    # the scanner's output directory was in the store's staging: the next command removed it
    assert not [p for p in (scan_store.root / "staging").iterdir() if p.name.startswith("scanner-")]
    scan_store.ketch("rmi", scenario_image)
    subprocess.run(["pkill", "-KILL", "-f", f"touch {marker}"], check=False)  # (the scanner's own sleep)


def test_a_container_is_scanned_with_its_writable_layer(scan_store, tmp_path, busybox_layout):
    scan_store.load(busybox_layout, "localhost/busybox:1")
    scan_store.ketch("run", "--name", "scanme", "localhost/busybox:1", "sh", "-c",
                     "echo https://me:secret@git.example > /root/.git-credentials; chmod 4755 /bin/busybox")
    report = scan_store.scan("scanme")["reports"][0]
    assert report["kind"] == "container"
    findings = {(f["kind"], f["path"]): f["layer"] for f in report["findings"]}
    assert findings[("credentials", "/root/.git-credentials")] == "container"
    assert findings[("setuid", "/bin/busybox")] == "container"
    image_report = scan_store.scan("localhost/busybox:1")["reports"][0]
    assert not any(f["path"] == "/root/.git-credentials" for f in image_report["findings"])


def test_the_cache_scans_a_shared_base_once_and_a_new_database_rematches(scan_store, scenario_image, tmp_path):
    first = scan_store.scan("localhost/scenario:1")["reports"][0]
    assert first["cached_layers"] == 0
    second = layouts.write(tmp_path / "second", [{"etc/second": F("2")}], base="debian")
    scan_store.load(second, "localhost/second:1")
    report = scan_store.scan("localhost/second:1")["reports"][0]
    assert report["cached_layers"] == 1  # debian's layer
    assert {p["name"] for p in report["packages"]} == {p["name"] for p in first["packages"]} - {"ketch-demo",
                                                                                                "right-pad"}
    database = tmp_path / "osv"
    database.mkdir()
    (database / "DEBIAN-CVE-2099-7.json").write_text(json.dumps({
        "id": "DEBIAN-CVE-2099-7", "aliases": ["CVE-2099-7"], "affected": [{
            "package": {"ecosystem": "Debian:12", "name": "ketch-demo-src"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-2"}]}]}]}))
    again = scan_store.scan("--vuln-db", str(database), "localhost/scenario:1")["reports"][0]
    assert again["cached_layers"] == 3
    _, install, _ = diff_ids(scan_store, "localhost/scenario:1")
    assert [(v["id"], v["package"], v["fixed"], v["layer"]) for v in again["vulnerabilities"]] == \
        [("DEBIAN-CVE-2099-7", "ketch-demo", "1.0-2", install)]
    assert again["packages"] == first["packages"]


def test_all_images_and_containers_in_parallel(scan_store, scenario_image, busybox_layout):
    scan_store.load(busybox_layout, "localhost/busybox:1")
    reports = scan_store.scan("--all", "--jobs", "2")["reports"]
    assert sorted(r["kind"] for r in reports) == ["image", "image"]
    ids = scan_store.ketch("images", "-q", "--no-trunc").stdout.split()
    assert sorted(r["image_id"] for r in reports) == sorted(i.removeprefix("sha256:") for i in ids)


@pytest.mark.registry
def test_remote_images_through_a_temporary_store(scan_store, registry, busybox_layout):
    remote = scan_store.scan("--tls-verify=false", f"docker://{registry.host}/library/busybox:latest")["reports"][0]
    local = scan_store.scan(f"oci:{busybox_layout}:latest")["reports"][0]
    assert remote["kind"] == local["kind"] == "remote"
    assert remote["findings"] == local["findings"] and remote["layers"] == local["layers"]
    assert json.loads(scan_store.ketch("images", "--format", "json").stdout) == []  # nothing left in the store
    assert not list((scan_store.root / "staging").glob("*scan*"))


def test_output_formats_and_exit_status(scan_store, scenario_image, tmp_path):
    sarif = json.loads(scan_store.ketch("scan", "--format", "sarif", "localhost/scenario:1").stdout)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    rules = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in results} <= rules
    key, = [r for r in results if r["ruleId"] == "ketch/private-key"]
    assert key["level"] == "error" and key["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "root/.ssh/id_rsa"

    spdx_path = tmp_path / "sbom.spdx.json"
    scan_store.ketch("scan", "--sbom", "spdx", "-o", str(spdx_path), "localhost/scenario:1")
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    document = parse_file(str(spdx_path))
    assert validate_full_spdx_document(document) == []
    names = {p.name for p in document.packages}
    assert {"dpkg", "ketch-demo", "right-pad"} <= names

    cyclonedx = scan_store.ketch("scan", "--sbom", "cyclonedx", "localhost/scenario:1").stdout
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cyclonedx) is None
    components = {c["name"]: c for c in json.loads(cyclonedx)["components"]}
    demo = components["ketch-demo"]
    assert demo["purl"].startswith("pkg:deb/debian/ketch-demo@1.0-1?")
    assert {o["location"] for o in demo["evidence"]["occurrences"]} == {"/usr", "/usr/bin", "/usr/bin/ketch-demo",
                                                                       "/usr/bin/ketch-demo2"}

    assert scan_store.ketch("scan", "--fail-on", "high", "localhost/scenario:1", check=False).returncode == 1
    assert scan_store.ketch("scan", "--fail-on", "critical", "localhost/scenario:1", check=False).returncode == 0
    table = scan_store.ketch("scan", "localhost/scenario:1").stdout
    assert "private-key" in table and "/root/.ssh/id_rsa" in table


def test_diff_of_two_images(scan_store, scenario_image, tmp_path):
    second = layouts.write(tmp_path / "second", [{"etc/second": F("2")}], base="debian")
    scan_store.load(second, "localhost/second:1")
    difference = json.loads(scan_store.ketch("scan", "--diff", "--format", "json", "localhost/second:1",
                                             "localhost/scenario:1").stdout)
    added = {(p["type"], p["name"]) for p in difference["packages"]["added"]}
    assert added == {("deb", "ketch-demo"), ("npm", "right-pad")} and difference["packages"]["removed"] == []
    assert any(f["kind"] == "private-key" for f in difference["findings"]["added"])
    text = scan_store.ketch("scan", "--diff", "localhost/second:1", "localhost/scenario:1").stdout
    assert "+package deb ketch-demo 1.0-1" in text


def test_bad_input_gets_one_line(scan_store, tmp_path):
    for args, message in ((["nosuchimage"], "no such image or container"),
                          (["--rootfs", str(tmp_path / "missing")], "no such directory"),
                          (["--rootfs", str(tmp_path), "--vuln-db", str(tmp_path / "nodb")], "no such file"),
                          (["--scanner", "nosuchscanner", "--rootfs", str(tmp_path)], "no scanner named"),
                          (["--diff", "a"], "two images")):
        result = scan_store.ketch("scan", *args, check=False)
        assert result.returncode == 125, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)


def test_the_python_api(scan_store, scenario_image):
    import ketch
    from ketch.storage.store import Store

    report, = ketch.scan("localhost/scenario:1", store=Store(scan_store.root, scan_store.runroot))
    assert isinstance(report, ketch.ScanReport)
    assert any(p.name == "ketch-demo" for p in report.packages)
    assert report.to_json() == ketch.ScanReport.from_json(report.to_json()).to_json()


# -- hostile trees -------------------------------------------------------------

def hostile_tree(root: Path, host_file: Path) -> None:
    (root / "var/lib/dpkg/status.d").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_bytes(b"\x00\xff garbage\n: : :\nPackage\n")
    os.mkfifo(root / "var/lib/dpkg/status.d/fifo-package")
    os.symlink(str(host_file), root / "var/lib/dpkg/status.d/escape")  # a link out of the tree
    (root / "node_modules/bad").mkdir(parents=True)
    (root / "node_modules/bad/package.json").write_text("{ this is not json")
    (root / "lib/apk/db").mkdir(parents=True)
    with open(root / "lib/apk/db/installed", "wb") as huge:
        huge.truncate(2 << 30)  # sparse: 2 GiB that takes no space
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("/", root / "host-root")
    deep = root / "deep"
    for _ in range(200):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "package.json").write_text("[]")


def test_hostile_trees_give_warnings_not_hangs(tmp_path, scan_store):
    host_file = tmp_path / "host-status"
    host_file.write_text("Package: host-secret\nStatus: install ok installed\nVersion: 1\n")
    root = tmp_path / "root"
    hostile_tree(root, host_file)
    result = scan_store.ketch("scan", "--format", "json", "--rootfs", str(root), timeout=120)
    report = json.loads(result.stdout)["reports"][0]
    assert report["packages"] == []
    warnings = {f["path"]: f["message"] for f in report["findings"] if f["kind"] == "warning"}
    assert "/var/lib/dpkg/status" in warnings  # garbage
    assert "fifo" in warnings["/var/lib/dpkg/status.d/fifo-package"]
    assert "symbolic link" in warnings["/var/lib/dpkg/status.d/escape"]
    assert "not JSON" in warnings["/node_modules/bad/package.json"]
    assert "2048 MiB" in warnings["/lib/apk/db/installed"]


def test_a_layer_linking_to_the_hosts_databases_gives_nothing_of_the_host(scan_store, tmp_path):
    layout = layouts.write(tmp_path / "links", [{"var/lib": D(), "var/lib/dpkg": L("/var/lib/dpkg"),
                                                "usr/lib/os-release": L("/usr/lib/os-release"),
                                                "lib/apk/db": L("../../../../../../var/lib/dpkg")}])
    scan_store.load(layout, "localhost/links:1")
    report = scan_store.scan("localhost/links:1")["reports"][0]
    assert report["packages"] == [] and report["distro"]["id"] == ""
