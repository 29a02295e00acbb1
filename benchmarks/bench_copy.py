"""Benchmark: copy the ~300 MB test image from a local registry into an OCI
layout, ``ketch image copy`` against ``skopeo copy``, interleaved in one run.

Run with the project's virtual environment:  .venv/bin/python -m benchmarks.bench_copy
Prints the median of each tool and the ratio ketch/skopeo (lower is better).
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


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image", default="big", choices=sorted(images.MAKERS))
    args = parser.parse_args()
    layout = images.ensure(args.image)
    results: dict[str, list[float]] = {"ketch": [], "skopeo": []}
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp, run_registry(workdir=Path(tmp)) as registry:
        source = registry.url("bench/image")
        skopeo_copy(f"oci:{layout}:latest", source)
        commands = {
            "ketch": lambda dest: [KETCH, "image", "copy", "-q", "--src-tls-verify=false", source, f"oci:{dest}:x"],
            "skopeo": lambda dest: ["skopeo", "copy", "-q", "--src-tls-verify=false", source, f"oci:{dest}:x"],
        }
        for round_number in range(args.rounds + 1):
            for tool, command in commands.items():
                dest = Path(tmp) / f"{tool}-{round_number}"
                elapsed = timed(command(dest))
                shutil.rmtree(dest)
                if round_number:  # the first round warms the page cache
                    results[tool].append(elapsed)
    ketch, skopeo = statistics.median(results["ketch"]), statistics.median(results["skopeo"])
    size = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir()) / 1e6
    print(f"image: {args.image} ({size:.0f} MB), rounds: {args.rounds}")
    print(f"ketch image copy  median {ketch:.3f}s  {[round(t, 3) for t in results['ketch']]}")
    print(f"skopeo copy       median {skopeo:.3f}s  {[round(t, 3) for t in results['skopeo']]}")
    print(f"ratio ketch/skopeo: {ketch / skopeo:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
