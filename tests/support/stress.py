"""One worker of the store stress test: random pull/tag/rmi/mount/unmount/load
for a while through the ketch CLI; prints every unexpected error, one per line,
prefixed UNEXPECTED."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

EXPECTED = ("in use", "not known", "not mounted", "no such", "not a name of")


def main() -> int:
    ketch, registry, archive, seconds, seed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    names = [f"localhost/stress{n}:latest" for n in range(4)]
    ops = 0
    while time.monotonic() < deadline:
        op = rng.choice(["pull", "pull", "tag", "rmi", "mount", "load", "images"])
        if op == "pull":
            args = ["pull", "-q", "--tls-verify=false", f"{registry}/library/{rng.choice(['busybox', 'derived'])}"]
        elif op == "tag":
            args = ["tag", rng.choice(["busybox", "derived"]), rng.choice(names)]
        elif op == "rmi":
            args = ["rmi", rng.choice(names + ["derived", "busybox"])]
        elif op == "mount":
            target = rng.choice(["busybox", "derived"])
            args = ["image", "mount", target]
        elif op == "load":
            args = ["load", "-q", "-i", archive]
        else:
            args = ["images", "-q"]
        result = subprocess.run([ketch, *args], capture_output=True, text=True, timeout=120)
        ops += 1
        if result.returncode != 0 and not any(e in result.stderr for e in EXPECTED):
            print(f"UNEXPECTED {' '.join(args)}: {result.stderr.strip()}", flush=True)
        if op == "mount" and result.returncode == 0:
            Path(result.stdout.strip(), "bin").exists()
            subprocess.run([ketch, "image", "unmount", target], capture_output=True, text=True, timeout=60)
    print(f"ops {ops}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
