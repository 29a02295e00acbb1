"""Ordinary users made for rootless tests and benchmarks: a home, a private run directory, the
commands run as them (ketch, podman), and their removal with every process they ran."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

KETCH = str(Path(sys.executable).parent / "ketch")

PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
default_capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
                        "SETPCAP", "SETUID", "SYS_CHROOT"]
"""


class User:
    """An ordinary user of the test's own, with a home, a private run directory and a store."""

    def __init__(self, subordinate: bool = True) -> None:
        self.name = f"krl{secrets.token_hex(3)}"
        extra = [] if subordinate else ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", *extra, self.name], check=True, capture_output=True)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
        self.run_dir = Path(f"/tmp/{self.name}-run")
        self.run_dir.mkdir(mode=0o700)
        os.chown(self.run_dir, self.uid, self.gid)
        (self.home / "containers.conf").write_text(PODMAN_CONF)
        self.env = {"HOME": str(self.home), "USER": self.name, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    "XDG_RUNTIME_DIR": str(self.run_dir), "LANG": "C.UTF-8"}

    def subordinate_range(self) -> tuple[int, int]:
        """(first, count) of the user's subordinate uids; (0, 0) without any."""
        for line in Path("/etc/subuid").read_text().splitlines():
            name, start, count = line.split(":")
            if name == self.name:
                return int(start), int(count)
        return 0, 0

    def subordinate_start(self) -> int:
        start, count = self.subordinate_range()
        if not count:
            raise AssertionError(f"{self.name} has no subordinate ids")
        return start

    def run(self, *args: str, check: bool = True, env: dict | None = None, timeout: float = 300,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), user=self.uid, group=self.gid, extra_groups=[], cwd=self.home,
                                env={**self.env, **(env or {})}, capture_output=True, timeout=timeout, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace')}")
        return result

    def ketch(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(KETCH, *args, **kwargs)

    def podman(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        env = {"CONTAINERS_CONF": str(self.home / "containers.conf")}
        # (runc: crun refuses this machine's hybrid cgroups, see MACHINE.md)
        return self.run("podman", "--runtime", "runc", *args, env=env, **kwargs)

    def _namespaces(self) -> set[str]:
        """The user namespaces of the user's pause processes (ketch's and podman's)."""
        found = set()
        for pid_file in (self.run_dir / "ketch" / "pause.pid", self.run_dir / "libpod" / "tmp" / "pause.pid"):
            try:
                found.add(os.readlink(f"/proc/{int(pid_file.read_text())}/ns/user"))
            except (OSError, ValueError):
                continue
        return found

    def processes(self, namespaces: set[str] | None = None) -> list[int]:
        """What ran for this user and is still there: every process in the user's namespaces
        (pause processes, monitors, containers, pasta, fuse-overlayfs), any process of one of the
        user's subordinate ids (a keep-id container's own namespace), and the user's own
        processes on the host that run with the user's environment. Never another test's
        process that merely has the same uid (a CRI container run as that uid, say)."""
        namespaces = self._namespaces() if namespaces is None else namespaces
        sub_start, sub_count = self.subordinate_range()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                uid = entry.stat().st_uid
                mine = os.readlink(entry / "ns/user") in namespaces or sub_start <= uid < sub_start + sub_count
                if not mine and uid == self.uid:  # (its HOME is the user's, or one under it: a test's own)
                    home = f"HOME={self.home}".encode()
                    mine = any(v == home or v.startswith(home + b"/")
                               for v in (entry / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if mine:
                found.append(int(entry.name))
        return found

    def remove(self) -> None:
        """End what ran as the user (by PID: all of it was started by these tests), then the user."""
        namespaces = self._namespaces()  # (read while the pause processes still name them)
        for _ in range(50):
            pids = self.processes(namespaces)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)
