"""A Debian root with systemd, booted with ``systemd-nspawn -b`` (these machines have no systemd
as PID 1), with this checkout's ketch inside it at the same paths as on the host.

The root is made once with debootstrap from the Debian archive apt uses (the only network the
tests have) and cached; each test boots a copy. The copy shares the host's network namespace,
so a registry on the host's 127.0.0.1 is reachable, and the store inside it is the root's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import images

# python3 for the virtual environment bound in; libpython3.11 for ketch-runtime where it is built
# as a C program embedding Python (setup.py does so wherever a shared libpython is installed)
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "libpython3.11"]
DRIVER_UNIT = """[Unit]
Description=the test's driver
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=append:/ketch-test/driver.log
StandardError=append:/ketch-test/driver.log
ExecStart=/bin/sh /ketch-test/driver.sh
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
"""


def pristine(name: str = "systemd-root", packages: list[str] | None = None) -> Path:
    """The cached root (made once, safe across processes)."""
    return images.cached(name, lambda path: images.debootstrap(path, packages or PACKAGES), "etc/os-release")


class BootedRoot:
    """A copy of the pristine root that boots; ``driver.sh`` runs once per boot, then powers off."""

    def __init__(self, path: Path, source: Path) -> None:
        self.path = path
        subprocess.run(["cp", "-a", "--reflink=auto", f"{source}/.", str(path)], check=True)
        (path / "ketch-test").mkdir()
        units = path / "etc/systemd/system"
        (units / "ketch-test.service").write_text(DRIVER_UNIT)
        (units / "multi-user.target.wants").mkdir(exist_ok=True)
        os.symlink("../ketch-test.service", units / "multi-user.target.wants/ketch-test.service")
        # no getty, no waiting for a network that will never be configured
        for unit in ("getty.target", "systemd-networkd-wait-online.service"):
            os.symlink("/dev/null", units / unit)
        # what Debian's containers-common installs: a policy that accepts any image
        (path / "etc/containers").mkdir(exist_ok=True)
        (path / "etc/containers/policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')

    def binds(self) -> list[str]:
        """ketch's virtual environment and the interpreter it was made from, at their paths."""
        venv = Path(sys.prefix)
        out = [f"--bind-ro={venv}"]
        base = Path(sys.base_prefix)
        if base != Path("/usr"):
            out.append(f"--bind-ro={base}")
        source = Path(__file__).resolve().parents[2]
        if not str(venv).startswith(str(source)):
            out.append(f"--bind-ro={source}")
        return out

    def boot(self, driver: str, timeout: float = 300, unified: bool = False, syscalls: str = "") -> str:
        """Boot with ``driver`` as this boot's test script; return what it printed. ``unified``:
        the container gets the cgroup v2 tree alone (on a hybrid host, nspawn otherwise gives it
        the v1 controllers read-only, which runc and crun cannot start a container under);
        ``syscalls``: system calls nspawn's filter should let through (``bpf`` for runc's cgroup
        v2 device filter)."""
        (self.path / "ketch-test/driver.sh").write_text(driver)
        log = self.path / "ketch-test/driver.log"
        log.unlink(missing_ok=True)
        result = subprocess.run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-b", "-D", str(self.path),
                                 "--capability=all", *self.binds(),
                                 *([f"--system-call-filter={syscalls}"] if syscalls else [])],
                                capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL,
                                env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1" if unified else "0"})
        output = log.read_text() if log.exists() else ""
        if result.returncode != 0:
            raise AssertionError(f"the booted root failed ({result.returncode}): {result.stderr[-2000:]}\n{output}")
        return output

    def remove(self) -> None:
        with open("/proc/self/mountinfo") as f:
            mounted = [line.split()[4] for line in f if line.split()[4].startswith(str(self.path) + "/")]
        for point in sorted(mounted, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)
