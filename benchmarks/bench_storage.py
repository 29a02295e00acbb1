"""Benchmarks for the local store, side by side with podman in the same run.

  pull   ketch pull vs podman pull of the ~300 MB image from a local registry into an empty store
  mount  ketch image mount of the small and the big image (time must not grow with size)
         vs podman's save-and-untar pipeline for the same images
  save   ketch save vs podman save of the big image to a docker archive

Run:  .venv/bin/python -m benchmarks.bench_storage [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import images
from tests.support.podman import Podman
from tests.support.registry import run_registry, skopeo_copy

KETCH = str(Path(sys.executable).parent / "ketch")


def timed(argv: list[str], env=None, shell=False) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, shell=shell)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed: {result.stderr}")
    return elapsed


def ketch_env(root: Path) -> dict:
    return dict(os.environ, KETCH_ROOT=str(root / "root"), KETCH_RUNROOT=str(root / "run"))


def report(name: str, ketch: list[float], other: list[float], other_name: str) -> None:
    k, o = statistics.median(ketch), statistics.median(other)
    print(f"{name:12} ketch {k:.3f}s  {other_name} {o:.3f}s  ratio {k / o:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    big, small = images.ensure("big"), images.ensure("busybox")
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with run_registry(workdir=tmp) as registry:
            skopeo_copy(f"oci:{big}:latest", registry.url("bench/big"))
            skopeo_copy(f"oci:{small}:latest", registry.url("bench/small"))
            pulls = {"ketch": [], "podman": []}
            for n in range(args.rounds):
                store = tmp / f"ketch-{n}"
                pulls["ketch"].append(timed([KETCH, "--insecure-policy", "pull", "-q", "--tls-verify=false",
                                             f"{registry.host}/bench/big"], env=ketch_env(store)))
                podman = Podman(tmp / f"podman-{n}")
                podman.base[podman.base.index("vfs")] = "overlay"
                pulls["podman"].append(timed([*podman.base, "pull", "-q", "--tls-verify=false",
                                              f"{registry.host}/bench/big"],
                                             env=dict(os.environ, CONTAINERS_CONF=str(podman.conf))))
                if n < args.rounds - 1:
                    subprocess.run([KETCH, "system", "reset", "-f"], env=ketch_env(store), capture_output=True)
                    podman.reset()
            report("pull", pulls["ketch"], pulls["podman"], "podman")
            env = ketch_env(tmp / f"ketch-{args.rounds - 1}")
            subprocess.run([KETCH, "--insecure-policy", "pull", "-q", "--tls-verify=false",
                            f"{registry.host}/bench/small"], env=env, check=True, capture_output=True)
            podman.run("pull", "-q", "--tls-verify=false", f"{registry.host}/bench/small")
            for label in ("small", "big"):
                name = f"{registry.host}/bench/{label}"
                mounts_k, mounts_p = [], []
                for _ in range(args.rounds):
                    mounts_k.append(timed([KETCH, "image", "mount", name], env=env))
                    subprocess.run([KETCH, "image", "unmount", name], env=env, check=True, capture_output=True)
                    out = tmp / "untar"
                    out.mkdir()
                    pipeline = (f"{' '.join(podman.base)} save {name} | tar -x -C {out}")
                    mounts_p.append(timed(pipeline, env=dict(os.environ, CONTAINERS_CONF=str(podman.conf)),
                                          shell=True))
                    shutil.rmtree(out)
                report(f"mount-{label}", mounts_k, mounts_p, "podman save|tar")
                # The mount itself, without starting a Python process: what a library user pays.
                from ketch.storage.store import Store

                store = Store(env["KETCH_ROOT"], env["KETCH_RUNROOT"])
                inproc = []
                for _ in range(max(args.rounds, 5)):
                    start = time.perf_counter()
                    store.mount_image(name)
                    inproc.append(time.perf_counter() - start)
                    store.unmount_image(name)
                print(f"{'':12} library mount_image({label}) median {statistics.median(inproc) * 1000:.1f} ms")
            saves_k, saves_p = [], []
            for _ in range(args.rounds):
                saves_k.append(timed([KETCH, "save", "-o", str(tmp / "k.tar"), f"{registry.host}/bench/big"], env=env))
                saves_p.append(timed([*podman.base, "save", "-o", str(tmp / "p.tar"), f"{registry.host}/bench/big"],
                                     env=dict(os.environ, CONTAINERS_CONF=str(podman.conf))))
                (tmp / "k.tar").unlink()
                (tmp / "p.tar").unlink()
            report("save", saves_k, saves_p, "podman")
            subprocess.run([KETCH, "system", "reset", "-f"], env=env, capture_output=True)
            podman.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
