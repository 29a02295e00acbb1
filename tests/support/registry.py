"""A real registry for tests: Debian's ``docker-registry`` (distribution v2)
on 127.0.0.1 with a temporary storage directory, optionally behind htpasswd
(Basic) or token (Bearer) authentication."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_BINARY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT"
    root: Path
    process: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def url(self, repo: str, tag: str = "latest") -> str:
        return f"docker://{self.host}/{repo}:{tag}"


def _wait_ready(host: str, process: subprocess.Popen, log_path: Path, scheme: str, client_cert=None,
                timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    if client_cert:
        insecure.load_cert_chain(*map(str, client_cert))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log_path.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{scheme}://{host}/v2/", timeout=1, context=insecure)
            return
        except urllib.error.HTTPError:
            return  # 401 also means it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not start: {log_path.read_text()[-2000:]}")


@contextlib.contextmanager
def run_registry(extra_yaml: str = "", workdir: Path | None = None, scheme: str = "http",
                 client_cert: tuple[Path, Path] | None = None) -> Iterator[Registry]:
    """Start a registry; stop it and remove its storage on exit, whatever happens.

    ``extra_yaml`` is appended to the config: an ``auth:`` section, or lines
    indented under ``http:`` (such as ``  tls:``)."""
    with tempfile.TemporaryDirectory(prefix="ketch-registry-", dir=workdir) as tmp:
        root = Path(tmp)
        port = free_port()
        host = f"127.0.0.1:{port}"
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {host}\n"
            "  secret: ketch-test-secret\n"
            + extra_yaml
        )
        log_path = root / "registry.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "")})
        try:
            _wait_ready(host, process, log_path, scheme, client_cert)
            yield Registry(host=host, root=root, process=process, log_path=log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def skopeo_copy(src: str, dst: str, *extra: str) -> None:
    """Put an image somewhere with skopeo (the peer), failing loudly."""
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--src-tls-verify=false", *extra, src, dst],
                   check=True, capture_output=True, timeout=300)
