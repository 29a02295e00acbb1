"""Benchmark: start-to-exit of ``ketch-runtime run`` against ``runc run`` and
``crun run`` on the same busybox bundle (``true``), interleaved in one run.

crun refuses this machine's hybrid cgroup layout until the hugetlb
controller is mounted as v1 (see shared/MACHINE.md); this script mounts it
when it is missing and says so.

Run:  .venv/bin/python -m benchmarks.bench_runtime [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ketch.runtime.spec import default_spec
from tests.runtime.conftest import busybox_rootfs

KETCH_RUNTIME = str(Path(sys.executable).parent / "ketch-runtime")


def ensure_hugetlb_v1() -> None:
    path = Path("/sys/fs/cgroup/hugetlb")
    if not (path.exists() and any(path.iterdir())):
        path.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(path)], check=True)
        print("(mounted the hugetlb cgroup controller as v1 so that crun runs here)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    ensure_hugetlb_v1()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-rt-") as tmp:
        bundle = Path(tmp) / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        busybox_rootfs(bundle / "rootfs")
        config = default_spec()
        config["process"].update(terminal=False, args=["true"])
        (bundle / "config.json").write_text(json.dumps(config))
        tools = {"ketch-runtime": [KETCH_RUNTIME, "--root", f"{tmp}/ketch"], "runc": ["runc", "--root", f"{tmp}/runc"],
                 "crun": ["crun", "--root", f"{tmp}/crun"]}
        times: dict[str, list[float]] = {name: [] for name in tools}
        for n in range(args.rounds + 2):
            for name, base in tools.items():
                start = time.perf_counter()
                result = subprocess.run([*base, "run", "--bundle", str(bundle), f"b{n}"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                elapsed = time.perf_counter() - start
                if result.returncode != 0:
                    raise SystemExit(f"{name} failed: {result.stderr}")
                if n >= 2:  # two warm-up rounds
                    times[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            print(f"{name:14} median {value * 1000:.1f} ms")
        print(f"ratio ketch-runtime/runc {medians['ketch-runtime'] / medians['runc']:.2f}, "
              f"ketch-runtime/crun {medians['ketch-runtime'] / medians['crun']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
