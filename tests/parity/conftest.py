"""Differential tests: the same command under ketch and under Debian's podman 4.3 (skopeo 1.9,
buildah 1.28), on the same image, each with a private store; exit status, output and effect
compared. A ``Pair`` runs both; tests normalise only what must differ (ids, times, paths)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import KETCH
from tests.support import images
from tests.support.podman import Podman

IMAGE = "docker.io/library/busybox:latest"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Pair:
    """ketch and podman side by side, each on its own store holding busybox."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.podman = Podman(base / "p")
        self.ketch_base = [KETCH, "--root", str(base / "k" / "root"), "--runroot", str(base / "k" / "run")]

    def _run(self, argv: list[str], env: dict, input: bytes | None, timeout: float) -> Result:
        # Output through files: a detached container's monitor must not hold a pipe we read to its end.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(argv, stdout=out, stderr=err, input=input, env=env, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            return Result(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))

    def ketch(self, *args: str, input: bytes | None = None, timeout: float = 120, check: bool = False) -> Result:
        result = self._run([*self.ketch_base, *args], dict(os.environ), input, timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ketch {' '.join(args)}: {result.returncode}: {result.stderr}")
        return result

    def peer(self, *args: str, input: bytes | None = None, timeout: float = 120, check: bool = False) -> Result:
        env = dict(os.environ, CONTAINERS_CONF=str(self.podman.conf))
        result = self._run([*self.podman.base, *args], env, input, timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.returncode}: {result.stderr}")
        return result

    def both(self, *args: str, input: bytes | None = None, check: bool = False) -> tuple[Result, Result]:
        return self.ketch(*args, input=input, check=check), self.peer(*args, input=input, check=check)

    def clean(self) -> None:
        """What a test made goes: containers (their processes), volumes, secrets, networks, tags."""
        for run in (self.ketch, self.peer):
            run("rm", "-a", "-f", "-t", "0")
            run("volume", "prune", "-f")
            for name in run("secret", "ls", "--format", "{{.Name}}").stdout.split():
                run("secret", "rm", name)
            for name in run("network", "ls", "--format", "{{.Name}}").stdout.split():
                if name.startswith("parity"):
                    run("network", "rm", "-f", name)
            for name in run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
                if name != IMAGE:
                    run("rmi", "-f", name)


@pytest.fixture(scope="session")
def pair_session(tmp_path_factory):
    base = Path(tempfile.mkdtemp(prefix="kp-"))  # podman: a runroot under 50 characters
    base.chmod(0o755)
    instance = Pair(base)
    busybox = images.ensure("busybox")
    instance.ketch("pull", "-q", f"oci:{busybox}:latest", check=True)
    instance.peer("pull", "-q", f"oci:{busybox}:latest", check=True)
    for run in (instance.ketch, instance.peer):
        # the same name in both: docker.io/library/busybox:latest, the pulled layout's name dropped
        image_id = run("images", "-q", "--no-trunc", check=True).stdout.split()[0]
        run("tag", image_id, IMAGE, check=True)
        run("untag", image_id, f"localhost{busybox}:latest", check=True)
    try:
        yield instance
    finally:
        instance.clean()
        instance.ketch("system", "reset", "-f")
        instance.podman.reset()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pair(pair_session):
    try:
        yield pair_session
    finally:
        pair_session.clean()


def normalise(text: str, names: dict[str, str] | None = None) -> str:
    """Ids (64 and 12 hex) as ID, and any given name replaced (e.g. each tool's store path)."""
    for old, new in (names or {}).items():
        text = text.replace(old, new)
    text = re.sub(r"\b[0-9a-f]{64}\b", "ID", text)
    return re.sub(r"\b[0-9a-f]{12}\b", "ID", text)
