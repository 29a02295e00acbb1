"""Shared fixtures: the ketch command, offline test images, real registries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from tests.support import images, tls, tokenserver
from tests.support.registry import run_registry, skopeo_copy

KETCH = str(Path(sys.executable).parent / "ketch")
# set by tests/rootless/as_user.py: the suite runs as an ordinary user (rootless ketch)
AS_USER = "KETCH_TEST_USER" in os.environ


def run_ketch(*args: str, check: bool = True, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed ``ketch`` console script; with check, fail showing its stderr."""
    result = subprocess.run([KETCH, *args], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"ketch {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(autouse=True)
def isolated_auth(request, tmp_path_factory, monkeypatch):
    """No test reads or writes the machine's real auth files (nor another test's)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    if not AS_USER:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    elif "ketch_env" not in request.fixturenames:
        # (a user's run directory also holds its pause process: the container and build suites
        # keep the user's own for their whole session, the mounts of their store live in it)
        (home / "run").mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    yield home
    if AS_USER:  # the pause process the test's own run directory made, if any, ends with the test
        pause = home / "run" / "ketch" / "pause.pid"
        try:
            os.kill(int(pause.read_text()), 9)
        except (OSError, ValueError):
            pass


@pytest.fixture(scope="session")
def busybox_layout() -> Path:
    return images.ensure("busybox")


@pytest.fixture(scope="session")
def multiarch_layout() -> Path:
    return images.ensure("multiarch")


@pytest.fixture(scope="session")
def registry(busybox_layout, multiarch_layout, tmp_path_factory):
    """docker-registry on 127.0.0.1 holding library/busybox:{latest,v1} and multi:latest (an index)."""
    with run_registry(workdir=tmp_path_factory.mktemp("registry")) as reg:
        skopeo_copy(f"oci:{busybox_layout}:latest", reg.url("library/busybox"))
        skopeo_copy(f"oci:{busybox_layout}:latest", reg.url("library/busybox", "v1"))
        skopeo_copy(f"oci:{multiarch_layout}:latest", reg.url("multi"), "--all")
        yield reg


USERS = {"alice": "wonderland"}


@pytest.fixture(scope="session")
def token_registry(busybox_layout, tmp_path_factory):
    """docker-registry with Bearer token auth; alice/wonderland may pull and push."""
    work = tmp_path_factory.mktemp("token-registry")
    server = tokenserver.TokenServer(users=USERS)
    with tokenserver.serve(server):
        server.write_cert(work / "signer.pem")
        with run_registry(server.registry_auth_yaml(), workdir=work) as reg:
            skopeo_copy(f"oci:{busybox_layout}:latest", reg.url("private/busybox"),
                        "--dest-creds", "alice:wonderland")
            reg.extra["tokens"] = server
            yield reg


@pytest.fixture(scope="session")
def basic_registry(busybox_layout, tmp_path_factory):
    """docker-registry with htpasswd (Basic) auth for alice/wonderland."""
    work = tmp_path_factory.mktemp("basic-registry")
    htpasswd = work / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                                for u, p in USERS.items()))
    auth = f"auth:\n  htpasswd:\n    realm: ketch-basic\n    path: {htpasswd}\n"
    with run_registry(auth, workdir=work) as reg:
        skopeo_copy(f"oci:{busybox_layout}:latest", reg.url("private/busybox"),
                    "--dest-creds", "alice:wonderland")
        yield reg


@pytest.fixture(scope="session")
def tls_registry(busybox_layout, tmp_path_factory):
    """docker-registry speaking only HTTPS, with a certificate from a test CA nobody trusts by default."""
    work = tmp_path_factory.mktemp("tls-registry")
    certs = tls.make_server_cert(work / "certs")
    config = f"  tls:\n    certificate: {certs.cert}\n    key: {certs.key}\n"
    with run_registry(config, workdir=work, scheme="https") as reg:
        skopeo_copy(f"oci:{busybox_layout}:latest", reg.url("library/busybox"))
        reg.extra["certs"] = certs
        yield reg


@pytest.fixture
def podman(tmp_path_factory):
    """podman with a private vfs store, reset afterwards."""
    from tests.support.podman import Podman

    instance = Podman.temporary(tmp_path_factory, "podman")
    try:
        yield instance
    finally:
        instance.reset()


@pytest.fixture(scope="session")
def mtls_registry(busybox_layout, tmp_path_factory):
    """docker-registry over HTTPS that demands a client certificate signed by the test CA."""
    work = tmp_path_factory.mktemp("mtls-registry")
    certs = tls.make_server_cert(work / "certs")
    client_dir = work / "client"
    client_dir.mkdir()
    tls.make_client_cert(certs, client_dir / "client.cert", client_dir / "client.key")
    (client_dir / "ca.crt").write_bytes(certs.ca_cert.read_bytes())
    config = (f"  tls:\n    certificate: {certs.cert}\n    key: {certs.key}\n"
              f"    clientcas:\n      - {certs.ca_cert}\n")
    with run_registry(config, workdir=work, scheme="https", client_cert=(client_dir / "client.cert",
                                                                          client_dir / "client.key")) as reg:
        subprocess.run(["skopeo", "copy", "-q", "--dest-cert-dir", str(client_dir), f"oci:{busybox_layout}:latest",
                        reg.url("library/busybox")], check=True, capture_output=True, timeout=120)
        reg.extra["certs"] = certs
        reg.extra["client_dir"] = client_dir
        yield reg


def pytest_collection_modifyitems(config, items):
    """A rootless run (tests/rootless/as_user.py) skips what only root may do, saying why."""
    if not AS_USER:
        return
    for item in items:
        marker = item.get_closest_marker("root_only")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"root only: {marker.args[0] if marker.args else ''}"))
