"""Benchmark: ``ketch run`` against ``podman run``, side by side in one run.

Scenarios (each on the same busybox image, in private temporary stores):

1. start to exit of ``run --rm --network none busybox true``: ketch, podman (runc), podman --runtime crun;
2. 50 detached ``run -d ... sleep`` then one ``ps``: ketch against podman (runc);
3. ``run --rm -p 127.0.0.1:P:80 busybox true`` (a bridge network and a published port), and the
   request rate through such a port to busybox httpd, ketch against podman;
4. the memory (PSS, /proc/PID/smaps_rollup) of one detached container's monitor against conmon's.

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

from tests.support import cgroups, images
from tests.support.networks import remove_networks
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_rate(port: int, seconds: float) -> float:
    """Sequential HTTP GETs to 127.0.0.1:PORT (busybox httpd, a new connection each): per second."""
    import urllib.request

    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 10
    while True:  # until it answers
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing answers on {url}") from None
            time.sleep(0.05)
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
        count += 1
    return count / seconds


HTTPD = ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"]


def network_scenarios(ketch, podman, podman_image, penv, rounds: int) -> None:
    print("-- run --rm -p 127.0.0.1:P:80 busybox true (a bridge network and a published port)")
    times: dict[str, list[float]] = {"ketch": [], "podman (runc)": []}
    for n in range(rounds + 1):
        port = free_port()
        for name, base in (("ketch", ketch), ("podman (runc)", podman.base)):
            image = "busybox" if name == "ketch" else podman_image
            elapsed = timed([*base, "run", "--rm", "-p", f"127.0.0.1:{port}:80", image, "true"], env=penv)
            if n:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:14} {value * 1000:7.1f} ms")
    print(f"ratio ketch/podman {medians['ketch'] / medians['podman (runc)']:.2f}")
    print("-- request rate through a port published on 127.0.0.1 (sequential GETs, 3 x 2 s each)")
    rates: dict[str, list[float]] = {"ketch": [], "podman (runc)": []}
    ports = {"ketch": free_port(), "podman (runc)": free_port()}
    timed([*ketch, "run", "-d", "--name", "bench-web", "-p", f"127.0.0.1:{ports['ketch']}:80", "busybox", *HTTPD])
    timed([*podman.base, "run", "-d", "--name", "bench-web", "-p", f"127.0.0.1:{ports['podman (runc)']}:80",
           podman_image, *HTTPD], env=penv)
    try:
        for _ in range(3):
            for name in rates:
                rates[name].append(request_rate(ports[name], 2.0))
    finally:
        subprocess.run([*ketch, "rm", "-f", "-t", "0", "bench-web"], capture_output=True)
        subprocess.run([*podman.base, "rm", "-f", "-t", "0", "bench-web"], capture_output=True, env=penv)
    for name, values in rates.items():
        print(f"{name:14} {statistics.median(values):7.0f} requests/s")
    print(f"ratio ketch/podman {statistics.median(rates['ketch']) / statistics.median(rates['podman (runc)']):.2f}")


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

        network_scenarios(ketch, podman, podman_image, penv, args.rounds)

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
        subprocess.run([*ketch, "rm", "-f", "-t", "0", "-a"], capture_output=True)
        remove_networks(str(base / "ketch-root"), str(base / "ketch-run"))  # the bridge and nftables table it made
        subprocess.run([*podman.base, "rm", "-f", "-a", "-t", "0"], capture_output=True, env=penv)
        podman.reset()
        subprocess.run(["umount", "-R", "-l", str(base / "ketch-root" / "mounts")], capture_output=True)
        for root in cgroups.roots():  # the containers' parent cgroup, once empty (another ketch's stays)
            try:
                os.rmdir(f"{root}/ketch")
            except OSError:
                pass
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
