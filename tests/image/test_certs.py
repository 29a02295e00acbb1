"""TLS with certs.d directories: extra CAs and client certificates."""

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_ketch

pytestmark = pytest.mark.registry


def test_cert_dir_makes_the_registry_trusted(tls_registry, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tls_registry.extra["certs"].ca_cert, certs / "ca.crt")
    url = tls_registry.url("library/busybox")
    out = run_ketch("image", "inspect", "--cert-dir", str(certs), "--format", "{{.Architecture}}", url)
    assert out.stdout == "amd64\n"
    run_ketch("image", "copy", "--src-cert-dir", str(certs), url, f"oci:{tmp_path}/l")
    run_ketch("image", "copy", "--dest-cert-dir", str(certs), f"oci:{tmp_path}/l", tls_registry.url("copied/back"))


@pytest.mark.root_only("it writes /etc/containers/certs.d, root's")
def test_system_certs_d_directory(tls_registry):
    """/etc/containers/certs.d/HOST:PORT is read without any flag (removed again afterwards)."""
    directory = Path("/etc/containers/certs.d") / tls_registry.host
    directory.mkdir(parents=True)
    try:
        shutil.copy(tls_registry.extra["certs"].ca_cert, directory / "ca.crt")
        out = run_ketch("image", "inspect", "--format", "{{.Os}}", tls_registry.url("library/busybox"))
        assert out.stdout == "linux\n"
    finally:
        shutil.rmtree(directory)


def test_client_certificate(mtls_registry, tmp_path):
    url = mtls_registry.url("library/busybox")
    client_dir = mtls_registry.extra["client_dir"]
    only_ca = tmp_path / "ca-only"
    only_ca.mkdir()
    shutil.copy(client_dir / "ca.crt", only_ca / "ca.crt")
    refused = run_ketch("image", "inspect", "--retry-times", "0", "--cert-dir", str(only_ca), url, check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: ")
    out = run_ketch("image", "inspect", "--cert-dir", str(client_dir), "--format", "{{.Architecture}}", url)
    assert out.stdout == "amd64\n"


def test_key_without_certificate_is_an_error(tls_registry, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "client.key").write_text("not really a key")
    result = run_ketch("image", "inspect", "--cert-dir", str(certs), tls_registry.url("library/busybox"),
                       check=False)
    assert result.returncode == 1 and "has no matching certificate" in result.stderr
