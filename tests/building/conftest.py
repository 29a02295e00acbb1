"""(Not named tests/build: pytest skips directories of that name.) The builder tests use the
container tests' store (busybox loaded) and their clean-up checks."""

import json
import subprocess

import pytest

from tests.containers.conftest import ketch_env, ketch_session  # noqa: F401  (fixtures)
from tests.support.builds import store


@pytest.fixture
def builds(ketch_env):  # noqa: F811  (the imported fixture, used)
    yield ketch_env
    ketch_env.cli("rm", "-f", "-t", "0", "-a")
    images = subprocess.run(ketch_env.args("images", "-a", "-q", "--no-trunc"), capture_output=True,
                            text=True).stdout.split()
    keep = {store(ketch_env).lookup("busybox").id, store(ketch_env).lookup("localhost/ktest").id}
    for image in images:
        if image.replace("sha256:", "") not in keep:
            ketch_env.cli("rmi", "-f", image)
    assert json.loads(ketch_env.cli("builder", "containers", "--format", "json", check=True).stdout) == []
