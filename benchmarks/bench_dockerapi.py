"""Benchmark: ``ketch system service`` against ``podman system service`` (podman 4.3), driven
by the same docker CLI in the same run, on private stores with the same busybox image.

1. ``docker run --rm busybox true`` through ketch's service, through podman's, and ``ketch run
   --rm busybox true`` without a service;
2. ``docker-compose up -d`` then ``down`` of a two-service file (a network, a named volume, a
   port published on 127.0.0.1) through each service.

Run:  .venv/bin/python -m benchmarks.bench_dockerapi [--rounds N]
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
from tests.support.networks import remove_networks
from tests.support.podman import Podman
from tests.support.registry import free_port
from tests.support.waiting import wait_listening

KETCH = str(Path(sys.executable).parent / "ketch")
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"  # (Debian's docker.io client)
COMPOSE = """version: "3.8"
services:
  web:
    image: docker.io/library/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: [data:/data]
    networks: [back]
  worker:
    image: docker.io/library/busybox:latest
    command: ["sleep", "60"]
    volumes: [data:/data]
    networks: [back]
volumes:
  data:
networks:
  back:
"""


def wait_socket(path: Path, process: subprocess.Popen) -> None:
    if not wait_listening(path, process, 60):
        raise SystemExit(f"the service on {path} did not start")


def timed(command: list[str], env: dict, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:5])}... failed: {result.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kbd"))  # (short: podman's run directory)
    ketch = [KETCH, "--root", str(base / "kroot"), "--runroot", str(base / "krun")]
    podman = Podman(base / "p", runtime="runc")
    layout = images.ensure("busybox")
    services: list[subprocess.Popen] = []
    try:
        subprocess.run([*ketch, "--insecure-policy", "image", "copy", "-q", f"oci:{layout}:latest",
                        "ketch-storage:docker.io/library/busybox:latest"], check=True)
        podman.run("pull", "-q", f"oci:{layout}:latest")
        podman.run("tag", podman.images()[0]["Id"], "docker.io/library/busybox:latest")
        sockets = {"ketch": base / "k.sock", "podman": base / "p.sock"}
        services.append(subprocess.Popen([*ketch, "system", "service", "--time", "0", f"unix://{sockets['ketch']}"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        penv = dict(os.environ, CONTAINERS_CONF=str(podman.conf))
        services.append(subprocess.Popen([*podman.base, "system", "service", "--time", "0",
                                          f"unix://{sockets['podman']}"], env=penv, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))
        for path, process in zip(sockets.values(), services):
            wait_socket(path, process)
        envs = {name: dict(os.environ, DOCKER_HOST=f"unix://{path}", DOCKER_CONFIG=str(base / "dc"))
                for name, path in sockets.items()}
        runs = {"docker -> ketch service": ([DOCKER, "run", "--rm", "busybox", "true"], envs["ketch"]),
                "docker -> podman service": ([DOCKER, "run", "--rm", "busybox", "true"], envs["podman"]),
                "ketch run --rm": ([*ketch, "run", "--rm", "busybox", "true"], dict(os.environ))}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for n in range(args.rounds + 1):
            for name, (command, env) in runs.items():
                elapsed = timed(command, env)
                if n:
                    times[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in times.items()}
        print(f"-- docker run --rm busybox true (median of {args.rounds} rounds)")
        for name, value in medians.items():
            print(f"{name:26} {value * 1000:7.1f} ms")
        print(f"ratio ketch service/podman service "
              f"{medians['docker -> ketch service'] / medians['docker -> podman service']:.2f}; "
              f"ketch service/ketch run {medians['docker -> ketch service'] / medians['ketch run --rm']:.2f}")
        project = base / "proj"
        project.mkdir()
        compose_rounds = max(2, args.rounds // 3)
        ups: dict[str, list[float]] = {"ketch": [], "podman": []}
        downs: dict[str, list[float]] = {"ketch": [], "podman": []}
        for _ in range(compose_rounds):
            for name in ("ketch", "podman"):
                (project / "docker-compose.yml").write_text(COMPOSE.format(port=free_port()))
                env = {**envs[name], "COMPOSE_PROJECT_NAME": f"b{name}"}
                ups[name].append(timed(["docker-compose", "up", "-d"], env, project))
                downs[name].append(timed(["docker-compose", "down", "-v", "-t", "0"], env, project))
        print(f"-- docker-compose up -d / down -v of two services (median of {compose_rounds} rounds)")
        for name in ("ketch", "podman"):
            print(f"{name:8} up {statistics.median(ups[name]) * 1000:7.1f} ms   "
                  f"down {statistics.median(downs[name]) * 1000:7.1f} ms")
        print(f"ratio ketch/podman up {statistics.median(ups['ketch']) / statistics.median(ups['podman']):.2f}, "
              f"down {statistics.median(downs['ketch']) / statistics.median(downs['podman']):.2f}")
    finally:
        for process in services:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run([*ketch, "rm", "-f", "-a", "-t", "0"], capture_output=True)
        remove_networks(str(base / "kroot"), str(base / "krun"))
        podman.reset()
        subprocess.run(["umount", "-R", "-l", str(base / "kroot" / "mounts")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
