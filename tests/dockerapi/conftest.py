"""The Docker API service on the container tests' store (busybox loaded as
docker.io/library/busybox:latest), started by the tests on a socket of their own and ended by
its PID; the clients are the real ones (the docker CLI from Debian's docker.io, the docker SDK)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.containers.conftest import KETCH, ketch_env, ketch_session  # noqa: F401  (fixtures)
from tests.support.waiting import wait_listening

# Debian's docker.io client (20.10), which scripts/install.sh installs; not another on PATH
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"


class Service:
    def __init__(self, env, socket_path: Path, process: subprocess.Popen) -> None:
        self.env, self.socket_path, self.process = env, socket_path, process
        self.url = f"unix://{socket_path}"

    def docker(self, *args: str, check: bool = True, timeout: float = 120, input: bytes | None = None,
               env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([DOCKER, "-H", self.url, *args], capture_output=True, timeout=timeout, input=input,
                                env={**os.environ, "DOCKER_CONFIG": str(self.socket_path.parent / "docker-config"),
                                     **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.returncode}: {result.stderr.decode()}")
        return result


def start_service(env, directory: Path, *extra: str) -> Service:
    socket_path = directory / "ketch.sock"
    log = open(directory / "service.log", "wb")
    process = subprocess.Popen([KETCH, "--root", str(env.root), "--runroot", str(env.runroot), "system", "service",
                                *extra, f"unix://{socket_path}"], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    log.close()
    assert wait_listening(socket_path, process, 30), (directory / "service.log").read_text() or \
        "the service never listened"
    return Service(env, socket_path, process)


def stop_service(service: Service) -> None:
    if service.process.poll() is None:
        service.process.terminate()
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


@pytest.fixture(scope="module")
def service_dir():
    directory = Path(tempfile.mkdtemp(prefix="ketch-dapi-"))
    yield directory
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def service(ketch_session, service_dir):  # noqa: F811
    started = start_service(ketch_session, service_dir, "--time", "0")
    try:
        yield started
    finally:
        stop_service(started)


@pytest.fixture
def api(service, ketch_env):  # noqa: F811
    """The service, with the container tests' checks that nothing is left after each test."""
    yield service
