"""A static helper program for containers (socket activation and sd_notify tests), built with
the host's gcc once and cached."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

from tests.support.images import cache_dir

SOURCE = Path(__file__).with_name("ktest.c")


def ktest_binary() -> Path:
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    target = base / "ktest"
    with open(base / ".ktest.lock", "w") as lock:  # not images' lock: a fixture maker calls this under it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists() or target.stat().st_mtime < SOURCE.stat().st_mtime:
            subprocess.run(["gcc", "-static", "-O2", "-o", str(target) + ".tmp", str(SOURCE)], check=True)
            Path(str(target) + ".tmp").rename(target)
    return target


def unmount_under(path) -> None:
    """Lazily unmount every mount at or under ``path`` (deepest first): what a test's store left."""
    import subprocess

    prefix = str(path).rstrip("/")
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
