"""Benchmark: ``ketch build`` against ``buildah bud --layers``, side by side in one run, on a
multi-stage Dockerfile with a 50 MB COPY and several RUN steps: cold (empty cache), warm (nothing
changed), after one source file changed, and on an empty store with ``--cache-from`` a registry on
127.0.0.1 that an earlier ``--cache-to`` build filled (each tool its own repository: their keys
differ).

Run:  .venv/bin/python -m benchmarks.bench_build [--rounds N]
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

from tests.support import images
from tests.support.podman import Podman
from tests.support.registry import run_registry

KETCH = str(Path(sys.executable).parent / "ketch")
DOCKERFILE = """
FROM busybox AS build
COPY big/ /big/
RUN cat /big/* | md5sum > /big.sum
RUN echo step-two > /two
COPY src/ /src/
RUN cat /src/* > /all-src

FROM busybox
COPY --from=build /big.sum /all-src /out/
RUN echo final > /final
CMD ["cat", "/out/big.sum"]
"""


def make_context(path: Path) -> None:
    (path / "big").mkdir(parents=True)
    for n in range(5):
        (path / "big" / f"chunk{n}.bin").write_bytes(os.urandom(10 << 20))
    (path / "src").mkdir()
    for n in range(20):
        (path / "src" / f"file{n}.txt").write_text(f"source {n}\n")
    (path / "Dockerfile").write_text(DOCKERFILE)


def timed(command: list[str], env=None, expect: tuple[str, int] | None = None) -> float:
    """Seconds ``command`` takes; ``expect``: (a line the output must have, how many times)."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    if expect is not None:
        seen = (result.stdout + result.stderr).decode(errors="replace").count(expect[0])
        if seen != expect[1]:
            raise SystemExit(f"{' '.join(command[:4])}: {seen} times {expect[0]!r}, not {expect[1]}")
    return elapsed


def ketch_store(base: Path, layout) -> list[str]:
    """A ketch store with busybox only; the command prefix for it."""
    from ketch import CopyOptions, SystemContext, copy_image
    from ketch.image.policy import Policy

    ctx_k = SystemContext(storage_root=str(base / "root"), storage_runroot=str(base / "run"))
    copy_image(f"oci:{layout}:latest", "ketch-storage:docker.io/library/busybox:latest",
               CopyOptions(src_ctx=ctx_k, dest_ctx=ctx_k, policy=Policy.insecure_accept_anything()))
    return [KETCH, "--root", str(base / "root"), "--runroot", str(base / "run")]


def buildah_store(podman: Podman, layout, env) -> list[str]:
    """buildah on the podman fixture's directories (overlay, as ketch uses: vfs would copy the
    whole tree for every layer), with busybox; the command prefix."""
    root, runroot = podman.base[podman.base.index("--root") + 1], podman.base[podman.base.index("--runroot") + 1]
    buildah = ["buildah", "--root", root, "--runroot", runroot, "--storage-driver", "overlay"]
    subprocess.run([*buildah, "pull", "-q", f"oci:{layout}:latest"], check=True, capture_output=True, env=env)
    image_id = json.loads(subprocess.run([*buildah, "images", "--json"], capture_output=True, check=True,
                                         env=env).stdout)[0]["id"]
    subprocess.run([*buildah, "tag", image_id, "docker.io/library/busybox:latest"], check=True, env=env)
    return buildah


def cleanup(ketch: list[str], root: Path, podman: Podman, buildah: list[str], env) -> None:
    subprocess.run([*ketch, "rm", "-f", "-t", "0", "-a"], capture_output=True)
    subprocess.run(["umount", "-R", "-l", str(root / "mounts")], capture_output=True)
    podman.reset()
    subprocess.run([*buildah, "rm", "-a"], capture_output=True, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ketch-bench-build-"))
    layout = images.ensure("busybox")
    results: dict[str, dict[str, list[float]]] = {"ketch": {}, "buildah": {}}
    stores: list[tuple] = []  # each one's clean-up, done at the end
    try:
        for n in range(args.rounds):
            ctx = base / f"ctx{n}"
            make_context(ctx)
            ketch = ketch_store(base / f"k{n}", layout)
            podman = Podman(base / f"p{n}")
            env = dict(os.environ, CONTAINERS_CONF=str(podman.conf))
            buildah = buildah_store(podman, layout, env)
            stores.append((ketch, base / f"k{n}" / "root", podman, buildah, env))
            commands = {"ketch": [*ketch, "build", "-q", "-t", "bench", str(ctx)],
                        "buildah": [*buildah, "bud", "--layers", "--runtime", "runc", "--isolation", "oci", "-q",
                                    "-t", "bench", str(ctx)]}
            for phase in ("cold", "warm", "changed"):
                if phase == "changed":
                    (ctx / "src" / "file7.txt").write_text("changed\n")
                for tool, command in commands.items():
                    results[tool].setdefault(phase, []).append(timed(command, env=env))
                if phase == "changed":
                    (ctx / "src" / "file7.txt").write_text("source 7\n")
            # the registry cache: filled by one build, read by an empty store's
            with run_registry(workdir=base) as registry:
                steps = 8  # every step after a FROM: five in the first stage, three in the second
                subprocess.run([*ketch, "build", "-q", "--no-cache", "--tls-verify=false", "--cache-to",
                                f"{registry.host}/kcache", str(ctx)], check=True, capture_output=True)
                subprocess.run([*buildah, "bud", "--layers", "--no-cache", "--runtime", "runc", "--isolation", "oci",
                                "--tls-verify=false", "--cache-to", f"{registry.host}/bcache", str(ctx)],
                               check=True, capture_output=True, env=env)
                fresh_ketch = ketch_store(base / f"k{n}-fresh", layout)
                fresh_podman = Podman(base / f"p{n}-fresh")
                fresh_env = dict(os.environ, CONTAINERS_CONF=str(fresh_podman.conf))
                fresh_buildah = buildah_store(fresh_podman, layout, fresh_env)
                stores.append((fresh_ketch, base / f"k{n}-fresh" / "root", fresh_podman, fresh_buildah, fresh_env))
                results["ketch"].setdefault("registry", []).append(timed(
                    [*fresh_ketch, "build", "--tls-verify=false", "--cache-from", f"{registry.host}/kcache", str(ctx)],
                    expect=("Cache pulled from remote", steps)))
                results["buildah"].setdefault("registry", []).append(timed(
                    [*fresh_buildah, "bud", "--layers", "--runtime", "runc", "--isolation", "oci",
                     "--tls-verify=false", "--cache-from", f"{registry.host}/bcache", str(ctx)], env=fresh_env,
                    expect=("Cache pulled from remote", steps)))
        print("-- ketch build vs buildah bud --layers (multi-stage, 50 MB COPY, 4 RUN steps; medians)")
        for phase in ("cold", "warm", "changed", "registry"):
            k, b = statistics.median(results["ketch"][phase]), statistics.median(results["buildah"][phase])
            print(f"{phase:8} ketch {k:6.2f} s  buildah {b:6.2f} s  ratio {k / b:.2f}")
    finally:
        for store in stores:  # (a failed round's too: no mount is left behind)
            cleanup(*store)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
