"""Debian's podman on a private, temporary store (never the machine's own)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


class Podman:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = ["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
                     "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr}")
        return result

    def images(self) -> list[dict]:
        return json.loads(self.run("images", "--format", "json").stdout)

    def reset(self) -> None:
        subprocess.run([*self.base, "system", "reset", "--force"], capture_output=True, timeout=120)
