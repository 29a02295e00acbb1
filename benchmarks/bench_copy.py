"""Benchmarks: ``ketch image copy`` against ``skopeo copy`` on the ~300 MB test
image, interleaved in one run, reported as ratios (lower is better for ketch).

Scenarios:
  pull       registry -> OCI layout
  push       OCI layout -> empty registry
  push-zstd  OCI layout -> empty registry, recompressed with --dest-compress-format zstd

Run with the project's virtual environment:
    .venv/bin/python -m benchmarks.bench_copy [--rounds N] [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import images
from tests.support.registry import run_registry, skopeo_copy

KETCH = str(Path(sys.executable).parent / "ketch")
SCENARIOS = ("pull", "push", "push-zstd")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {result.stderr}")
    return elapsed


def tools(src: str, dst: str, *extra: str) -> dict[str, list[str]]:
    flags = ["-q", "--src-tls-verify=false", "--dest-tls-verify=false", *extra]
    return {"ketch": [KETCH, "--insecure-policy", "image", "copy", *flags, src, dst],
            "skopeo": ["skopeo", "--insecure-policy", "copy", *flags, src, dst]}


def run_scenario(name: str, layout: Path, rounds: int, tmp: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"ketch": [], "skopeo": []}
    source_layout = f"oci:{layout}:latest"
    if name == "pull":
        with run_registry(workdir=tmp) as registry:
            source = registry.url("bench/image")
            skopeo_copy(source_layout, source)
            for round_number in range(rounds + 1):
                for tool in results:
                    dest = tmp / f"{tool}-{round_number}"
                    elapsed = timed(tools(source, f"oci:{dest}:x")[tool])
                    shutil.rmtree(dest)
                    if round_number:  # round 0 warms the page cache
                        results[tool].append(elapsed)
        return results
    extra = ("--dest-compress-format", "zstd") if name == "push-zstd" else ()
    for round_number in range(rounds + 1):
        for tool in results:
            with run_registry(workdir=tmp) as registry:  # an empty registry for every push
                elapsed = timed(tools(source_layout, registry.url("bench/image"), *extra)[tool])
            if round_number:
                results[tool].append(elapsed)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image", default="big", choices=sorted(images.MAKERS))
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    layout = images.ensure(args.image)
    size = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir()) / 1e6
    print(f"image: {args.image} ({size:.0f} MB), rounds: {args.rounds}")
    for name in args.scenario or SCENARIOS:
        with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp:
            results = run_scenario(name, layout, args.rounds, Path(tmp))
        ketch, skopeo = statistics.median(results["ketch"]), statistics.median(results["skopeo"])
        print(f"{name:10} ketch {ketch:.3f}s  skopeo {skopeo:.3f}s  ratio {ketch / skopeo:.2f}   "
              f"(ketch {[round(t, 2) for t in results['ketch']]}, skopeo {[round(t, 2) for t in results['skopeo']]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
