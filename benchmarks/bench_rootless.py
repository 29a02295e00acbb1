"""Benchmark: rootless ketch against rootless podman (4.3, with runc: crun refuses this machine's
hybrid cgroups), as one ordinary user made for the run, in turns:

  run    ``run --rm busybox true`` on the default network (ketch: pasta; podman: slirp4netns)
  pull   the ~300 MB test image from a registry on 127.0.0.1 into an emptied store
  rate   HTTP requests per second through a published port on 127.0.0.1 (busybox httpd in the
         container, a client on the host making one request per connection for a few seconds)

Reported: medians and the ratio ketch / podman (below 1: ketch is faster; for the rate, above 1).
Targets: no slower than rootless podman; goal: run in half its time.

Run:  .venv/bin/python -m benchmarks.bench_rootless [--rounds N] [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support import images
from tests.support.registry import free_port, run_registry, skopeo_copy
from tests.support.rootless import User

SCENARIOS = ("run", "pull", "rate")


def _tools(user: User):
    return {"ketch": user.ketch, "podman": user.podman}


def _timed(call, *args: str) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def _rate(port: int, seconds: float) -> float:
    """Requests per second, one request per connection (busybox httpd closes each)."""
    request = b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n"
    done = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            while conn.recv(65536):
                pass
        done += 1
    return done / seconds


def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                if conn.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args()
    wanted = args.scenario or list(SCENARIOS)
    for device in ("/dev/net/tun", "/dev/fuse"):  # (a normal Debian machine has them 0666: MACHINE.md)
        os.chmod(device, 0o666)
    busybox = images.ensure("busybox")
    user = User()
    results: dict[tuple[str, str], list[float]] = {}
    try:
        image = "localhost/" + str(busybox).lstrip("/").lower()
        user.ketch("pull", "-q", f"oci:{busybox}:latest")
        user.ketch("save", "-o", str(user.home / "busybox.tar"), image)
        user.podman("load", "-q", "-i", str(user.home / "busybox.tar"))
        tools = _tools(user)
        if "run" in wanted:
            for tool in tools.values():  # (warm: the pause processes, the page cache)
                tool("run", "--rm", "--pull", "never", image, "true")
            for _ in range(args.rounds):
                for name, tool in tools.items():
                    results.setdefault(("run", name), []).append(
                        _timed(tool, "run", "--rm", "--pull", "never", image, "true"))
        if "rate" in wanted:
            for name, tool in tools.items():
                port = free_port()
                tool("run", "-d", "--pull", "never", "--name", "web", "-p", f"127.0.0.1:{port}:8000", image, "httpd",
                     "-f", "-p", "8000", "-h", "/etc")
                try:
                    _wait_port(port)
                    for _ in range(max(1, args.rounds // 2)):
                        results.setdefault(("rate", name), []).append(_rate(port, 3.0))
                finally:
                    tool("rm", "-f", "-t", "0", "web")
        if "pull" in wanted:
            big = images.ensure("big")
            with tempfile.TemporaryDirectory(prefix="ketch-bench-rootless-") as tmp, \
                    run_registry(workdir=Path(tmp)) as registry:
                skopeo_copy(f"oci:{big}:latest", registry.url("bench/big"))
                reference = f"{registry.host}/bench/big:latest"
                for _ in range(max(1, args.rounds // 2)):
                    for name, tool in tools.items():
                        results.setdefault(("pull", name), []).append(
                            _timed(tool, "pull", "-q", "--tls-verify=false", reference))
                        tool("rmi", reference)
    finally:
        user.remove()
    print(f"rootless, one user, {args.rounds} rounds (medians)")
    for scenario in wanted:
        ketch, podman = (statistics.median(results[(scenario, t)]) for t in ("ketch", "podman"))
        unit = "requests/s" if scenario == "rate" else "s"
        print(f"{scenario:5}  ketch {ketch:8.3f} {unit}   podman {podman:8.3f} {unit}   ketch/podman {ketch / podman:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
