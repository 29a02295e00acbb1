"""Debian's podman on a private, temporary store (never the machine's own)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# podman 4.3's default ulimits exceed this machine's hard limits; a containers.conf
# replaces the distribution's whole file, so the capabilities are restated
# (see shared/MACHINE.md).
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
default_capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
                        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]
"""


class Podman:
    @classmethod
    def temporary(cls, tmp_path_factory, name: str, **kwargs) -> Podman:
        """On a directory of the test's own; a short one when the suite runs as a user (rootless
        podman refuses a run directory path over 50 characters)."""
        import os
        import tempfile

        if "KETCH_TEST_USER" in os.environ:
            return cls(Path(tempfile.mkdtemp(prefix="kp")), **kwargs)
        return cls(tmp_path_factory.mktemp(name), **kwargs)

    def __init__(self, root: Path, runtime: str = "runc", driver: str = "vfs") -> None:
        self.root, self.driver = root, driver
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        # runc: crun refuses this machine's hybrid cgroup layout unless the host is changed.
        self.base = ["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
                     "--storage-driver", driver, "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--runtime", runtime]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        import os

        env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=300, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr}")
        return result

    @property
    def transport(self) -> str:
        """This store as a ``containers-storage:`` reference prefix (the one skopeo takes too)."""
        return f"containers-storage:[{self.driver}@{self.root / 'root'}+{self.root / 'run'}]"

    def images(self) -> list[dict]:
        return json.loads(self.run("images", "--format", "json").stdout)

    def reset(self) -> None:
        import os

        env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        subprocess.run([*self.base, "system", "reset", "--force"], capture_output=True, timeout=120, env=env)
