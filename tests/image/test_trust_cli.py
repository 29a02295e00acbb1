"""``ketch image trust show|set`` against ``podman image trust`` on the same files."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import run_ketch

pytestmark = pytest.mark.peer

POLICY = {"default": [{"type": "insecureAcceptAnything"}], "transports": {
    "docker": {"docker.io": [{"type": "reject"}],
               "quay.io/team": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/team.gpg"}]},
    "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}


@pytest.fixture
def files(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "team.yaml").write_text("docker:\n  quay.io/team:\n    lookaside: https://sig.example/store\n")
    return policy, registries_d


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "image", "trust", *args], capture_output=True, text=True, check=check)


def test_show_as_podman(files):
    policy, registries_d = files
    where = ["--policypath", str(policy), "--registrypath", str(registries_d)]
    for extra in ([], ["--json"], ["--raw"], ["-n"]):
        theirs = podman("show", *where, *extra).stdout
        ours = run_ketch("image", "trust", "show", *where, *extra).stdout
        if extra == ["--json"]:
            assert json.loads(ours) == json.loads(theirs)
        else:
            assert ours == theirs, extra


def test_set_as_podman(files, tmp_path):
    policy, _ = files
    key = tmp_path / "key.gpg"
    key.write_bytes(b"(a key file)")
    mine, theirs = tmp_path / "mine.json", tmp_path / "theirs.json"
    for path in (mine, theirs):
        shutil.copy(policy, path)
    for args in (["-t", "signedBy", "-f", str(key), "registry.example/x"], ["-t", "reject", "default"],
                 ["-t", "accept", "docker.io"]):
        podman("set", "--policypath", str(theirs), *args)
        run_ketch("image", "trust", "set", "--policypath", str(mine), *args)
        assert json.loads(mine.read_text()) == json.loads(theirs.read_text()), args
    assert mine.read_text() == theirs.read_text()
    refused = run_ketch("image", "trust", "set", "--policypath", str(mine), "-t", "signedBy", "example.com",
                        check=False)
    assert refused.returncode == 125 and "at least one public key" in refused.stderr
    assert json.loads(mine.read_text()) == json.loads(theirs.read_text())  # unchanged
    (tmp_path / "broken.json").write_text("{")
    broken = run_ketch("image", "trust", "set", "--policypath", str(tmp_path / "broken.json"), "-t", "accept",
                       "default", check=False)
    assert broken.returncode == 125 and "not valid JSON" in broken.stderr
    assert (tmp_path / "broken.json").read_text() == "{"
