"""Benchmark: ``ketch run`` against ``podman run``, side by side in one run.

Scenarios (each on the same busybox image, in private temporary stores):

1. start to exit of ``run --rm --network none busybox true``: ketch, podman (runc), podman --runtime crun;
2. 50 detached ``run -d ... sleep`` then one ``ps``: ketch against podman (runc);
3. the memory (PSS, /proc/PID/smaps_rollup) of one detached container's monitor against conmon's.

crun refuses this machine's hybrid cgroups until hugetlb is mounted as v1; this script mounts it
for the crun rounds and unmounts it again (see shared/MACHINE.md).

Run:  .venv/bin/python -m benchmarks.bench_containers [--rounds N] [--detached N]
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

KETCH = str(Path(sys.executable).parent / "ketch")
IMAGE = "docker.io/library/busybox:latest"


def timed(command: list[str], env=None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])}... failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise SystemExit(f"no Pss for {pid}")


def hugetlb_mounted() -> bool:
    path = Path("/sys/fs/cgroup/hugetlb")
    return path.is_dir() and any(path.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--detached", type=int, default=50)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ketch-bench-ctr-"))
    ketch = [KETCH, "--root", str(base / "ketch-root"), "--runroot", str(base / "ketch-run")]
    layout = images.ensure("busybox")
    podman = Podman(base / "podman", runtime="runc")
    penv = dict(os.environ, CONTAINERS_CONF=str(podman.conf))
    mounted_hugetlb = False
    try:
        from ketch import CopyOptions, SystemContext, copy_image
        from ketch.image.policy import Policy

        ctx = SystemContext(storage_root=str(base / "ketch-root"), storage_runroot=str(base / "ketch-run"))
        copy_image(f"oci:{layout}:latest", f"ketch-storage:{IMAGE}",
                   CopyOptions(src_ctx=ctx, dest_ctx=ctx, policy=Policy.insecure_accept_anything()))
        podman.run("pull", f"oci:{layout}:latest")
        podman_image = podman.images()[0]["Id"]

        if not hugetlb_mounted():
            Path("/sys/fs/cgroup/hugetlb").mkdir(exist_ok=True)
            subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", "/sys/fs/cgroup/hugetlb"], check=True)
            mounted_hugetlb = True
        crun_base = [a if a != "runc" else "crun" for a in podman.base]
        tools = {
            "ketch": [*ketch, "run", "--rm", "--network", "none", "busybox", "true"],
            "podman (runc)": [*podman.base, "run", "--rm", "--network", "none", podman_image, "true"],
            "podman (crun)": [*crun_base, "run", "--rm", "--network", "none", podman_image, "true"],
        }
        times: dict[str, list[float]] = {name: [] for name in tools}
        for n in range(args.rounds + 1):
            for name, command in tools.items():
                elapsed = timed(command, env=penv)
                if n:  # one warm-up round
                    times[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in times.items()}
        print("-- run --rm --network none busybox true (median of", args.rounds, "rounds)")
        for name, value in medians.items():
            print(f"{name:14} {value * 1000:7.1f} ms")
        print(f"ratio ketch/podman(runc) {medians['ketch'] / medians['podman (runc)']:.2f}, "
              f"ketch/podman(crun) {medians['ketch'] / medians['podman (crun)']:.2f}")

        print(f"-- {args.detached} x run -d, then ps")
        results = {}
        for name, run, ps in (
            ("ketch", [*ketch, "run", "-d", "--network", "none", "busybox", "sleep", "600"], [*ketch, "ps"]),
            ("podman (runc)", [*podman.base, "run", "-d", "--network", "none", podman_image, "sleep", "600"],
             [*podman.base, "ps"]),
        ):
            start = time.perf_counter()
            for _ in range(args.detached):
                timed(run, env=penv)
            started = time.perf_counter() - start
            ps_time = timed(ps, env=penv)
            results[name] = (started, ps_time)
            print(f"{name:14} {args.detached} starts {started:6.2f} s ({started / args.detached * 1000:.0f} ms each), "
                  f"ps {ps_time * 1000:.0f} ms")
        print(f"ratio ketch/podman: starts {results['ketch'][0] / results['podman (runc)'][0]:.2f}, "
              f"ps {results['ketch'][1] / results['podman (runc)'][1]:.2f}")

        ketch_ps = json.loads(subprocess.run([*ketch, "ps", "--format", "json"], capture_output=True,
                                             check=True).stdout)
        podman_ps = json.loads(subprocess.run([*podman.base, "ps", "--format", "json"], capture_output=True,
                                              check=True, env=penv).stdout)
        conmon_pid = json.loads(subprocess.run([*podman.base, "inspect", podman_ps[0]["Id"]], capture_output=True,
                                               check=True, env=penv).stdout)[0]["State"]["ConmonPid"]
        monitor_pids = [json.loads(subprocess.run([*ketch, "inspect", e["Id"]], capture_output=True,
                                                  check=True).stdout)[0]["State"]["ConmonPid"] for e in ketch_ps[:5]]
        monitor_pss = statistics.median(pss_kib(pid) for pid in monitor_pids)
        conmon_pss = pss_kib(conmon_pid)
        print("-- memory of one detached container's monitor (PSS, with", args.detached, "running)")
        print(f"ketch monitor  {monitor_pss} KiB (median of 5 monitors)")
        print(f"conmon         {conmon_pss} KiB (pid {conmon_pid})")
        print(f"ratio ketch/conmon {monitor_pss / conmon_pss:.2f}")
    finally:
        subprocess.run([*ketch, "rm", "-f", "-a"], capture_output=True)
        subprocess.run([*podman.base, "rm", "-f", "-a", "-t", "0"], capture_output=True, env=penv)
        podman.reset()
        subprocess.run(["umount", "-R", "-l", str(base / "ketch-root" / "mounts")], capture_output=True)
        if mounted_hugetlb:
            subprocess.run(["umount", "/sys/fs/cgroup/hugetlb"], capture_output=True)
            try:
                os.rmdir("/sys/fs/cgroup/hugetlb")
            except OSError:
                pass
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
