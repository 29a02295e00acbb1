"""Benchmark: ``ketch scan`` (packages and findings, through the read-only view) against the
pattern mount-and-scan replaced — ``podman save``, unpack the archive and its layers on disk,
then the same package and findings code on the unpacked tree (``ketch scan --rootfs``) — on a
Debian image of about 300 MB; and the scan of a second image that shares its base (the cache).
It also compares the scan's dpkg packages with ``dpkg-query --admindir`` on the view (the ground
truth) and prints any difference.

Run:  .venv/bin/python -m benchmarks.bench_scan [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import images
from tests.support.images import LayoutWriter, _gzip_layer, _root_tree

KETCH = str(Path(sys.executable).parent / "ketch")
# Debian minbase with these comes to about 300 MB
PACKAGES = ["python3", "perl", "git", "binutils", "libssl3", "openssl", "ca-certificates", "curl"]
CONFIG = {"config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                     "Cmd": ["bash"]}, "history": [{"created_by": "debootstrap"}]}


def make_layout(root: Path) -> None:
    """Tag ``base`` (one layer: the Debian tree) and ``app`` (base plus a layer of an application)."""
    target = Path(tempfile.mkdtemp(prefix="ketch-bench-scan-"))
    try:
        images.debootstrap(target, PACKAGES)
        writer = LayoutWriter(root)
        base = _gzip_layer(writer, _root_tree(target), level=1)
        writer.add(writer.image([base], CONFIG), "base")
        app = Path(tempfile.mkdtemp(prefix="ketch-bench-app-"))
        try:
            site = app / "usr/lib/python3/dist-packages"
            for n in range(40):
                info = site / f"bench_lib{n}-1.{n}.dist-info"
                info.mkdir(parents=True)
                (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: bench-lib{n}\nVersion: 1.{n}\n")
                (site / f"bench_lib{n}.py").write_text("VALUE = 1\n" * 100)
            (app / "srv/app").mkdir(parents=True)
            (app / "srv/app/main.py").write_text("print('hello')\n")
            layer = _gzip_layer(writer, _root_tree(app), level=1)
        finally:
            shutil.rmtree(app)
        writer.add(writer.image([base, layer], CONFIG), "app")
        writer.finish()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def timed(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def unpack(archive: Path, into: Path) -> None:
    """A docker-archive's layers extracted in order (the base has one layer: no whiteouts)."""
    work = into.parent / "archive"
    work.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(work)], check=True)
    manifest = json.loads((work / "manifest.json").read_text())[0]
    into.mkdir()
    for layer in manifest["Layers"]:
        subprocess.run(["tar", "-xf", str(work / layer), "-C", str(into)], check=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    layout = images.cached("scan-bench", make_layout, "index.json")
    work = Path(tempfile.mkdtemp(prefix="ketch-bench-scan-"))
    ketch = [KETCH, "--root", str(work / "k/root"), "--runroot", str(work / "k/run")]
    podman = ["podman", "--root", str(work / "p/root"), "--runroot", str(work / "p/run"), "--storage-driver", "overlay"]
    try:
        for tag in ("base", "app"):
            image_id = subprocess.run([*ketch, "pull", "-q", f"oci:{layout}:{tag}"], check=True, capture_output=True,
                                      text=True).stdout.split()[-1]
            subprocess.run([*ketch, "tag", image_id, f"localhost/bench:{tag}"], check=True)
        subprocess.run([*podman, "pull", "-q", f"oci:{layout}:base"], check=True, stdout=subprocess.DEVNULL)
        podman_id = subprocess.run([*podman, "images", "-q"], check=True, capture_output=True, text=True).stdout.split()[0]
        size = json.loads(subprocess.run([*ketch, "image", "inspect", "localhost/bench:base"], check=True,
                                         capture_output=True, text=True).stdout)[0]["Size"]
        first, second, slow, parts = [], [], [], []
        for _ in range(args.rounds):
            shutil.rmtree(work / "k/root/scan-cache", ignore_errors=True)
            first.append(timed([*ketch, "scan", "--format", "json", "localhost/bench:base"]))
            second.append(timed([*ketch, "scan", "--format", "json", "localhost/bench:app"]))
            scratch = work / "slow"
            scratch.mkdir()
            archive = scratch / "image.tar"
            save = timed([*podman, "save", "--format", "docker-archive", "-o", str(archive), podman_id])
            started = time.perf_counter()
            unpack(archive, scratch / "rootfs")
            extract = time.perf_counter() - started
            scan = timed([*ketch, "scan", "--format", "json", "--no-cache", "--rootfs", str(scratch / "rootfs")])
            slow.append(save + extract + scan)
            parts.append((save, extract, scan))
            shutil.rmtree(scratch)
        # in one process (the Python API): without the interpreter's start, which the command pays each time
        import ketch as ketch_api
        from ketch.storage.store import Store

        store = Store(work / "k/root", work / "k/run")
        api_first, api_second = [], []
        for _ in range(args.rounds):
            shutil.rmtree(work / "k/root/scan-cache", ignore_errors=True)
            started = time.perf_counter()
            ketch_api.scan("localhost/bench:base", store=store)
            api_first.append(time.perf_counter() - started)
            started = time.perf_counter()
            ketch_api.scan("localhost/bench:app", store=store)
            api_second.append(time.perf_counter() - started)
        startup = statistics.median(timed([KETCH, "version"]) for _ in range(args.rounds))
        # the ground truth: dpkg-query on the image's own view
        report = json.loads(subprocess.run([*ketch, "scan", "--format", "json", "localhost/bench:base"], check=True,
                                           capture_output=True, text=True).stdout)["reports"][0]
        with store.view("localhost/bench:base") as view:
            truth = subprocess.run(["dpkg-query", f"--admindir={view.path}/var/lib/dpkg", "-W", "-f",
                                    "${db:Status-Status} ${Package} ${Version} ${Architecture}\n"],
                                   check=True, capture_output=True, text=True).stdout
        expected = {tuple(line.split()[1:]) for line in truth.splitlines() if line.startswith("installed ")}
        found = {(p["name"], p["version"], p["arch"]) for p in report["packages"] if p["type"] == "deb"}
        median = statistics.median
        print(f"image: {size / 1e6:.0f} MB, {len(report['packages'])} packages ({len(found)} dpkg), "
              f"{len(report['findings'])} findings; {args.rounds} rounds, medians")
        print(f"ketch scan, first image (cold cache):   {median(first):6.3f} s")
        save, extract, scan = (median(p[i] for p in parts) for i in range(3))
        print(f"podman save + unpack + same scan code:   {median(slow):6.3f} s  (save {save:.3f}, unpack "
              f"{extract:.3f}, scan {scan:.3f})")
        print(f"  ratio: save-and-unpack / ketch scan = {median(slow) / median(first):.1f}x (target 10x, goal 20x)")
        print(f"ketch scan, second image sharing the base: {median(second):6.3f} s = "
              f"{100 * median(second) / median(first):.0f}% of the first (target at most 10%)")
        print(f"  in one process (ketch.scan): first {median(api_first):.3f} s, second {median(api_second):.3f} s = "
              f"{100 * median(api_second) / median(api_first):.0f}% (the command's start alone, ketch version: "
              f"{startup:.3f} s)")
        print(f"dpkg-query ground truth: {len(expected)} packages; missing from the scan: "
              f"{sorted(expected - found) or 'none'}; extra in the scan: {sorted(found - expected) or 'none'}")
        return 0 if expected == found else 1
    finally:
        subprocess.run([*podman, "rmi", "-a", "-f"], check=False, capture_output=True)
        subprocess.run([*podman, "system", "reset", "-f"], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
