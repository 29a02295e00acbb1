"""ketch login / logout write auth.json as podman does, and ketch reads it back."""

import json
import stat
import subprocess

import pytest

from tests.conftest import KETCH, run_ketch

pytestmark = pytest.mark.registry


def login(registry, password, *extra):
    return subprocess.run([KETCH, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", *extra,
                           registry.host], input=password + "\n", capture_output=True, text=True, timeout=60)


@pytest.fixture(params=["token_registry", "basic_registry"])
def private(request):
    return request.getfixturevalue(request.param)


def test_login_then_pull_then_logout(private, isolated_auth, tmp_path):
    authfile = isolated_auth / "run" / "containers" / "auth.json"
    result = login(private, "wonderland")
    assert result.returncode == 0 and "Login Succeeded!" in result.stdout
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    assert private.host in json.loads(authfile.read_text())["auths"]
    run_ketch("image", "copy", "--src-tls-verify=false", private.url("private/busybox"), f"oci:{tmp_path}/l")
    assert run_ketch("login", "--get-login", private.host).stdout == "alice\n"
    run_ketch("logout", private.host)
    assert json.loads(authfile.read_text())["auths"] == {}
    again = run_ketch("logout", private.host, check=False)
    assert again.returncode == 125 and "not logged into" in again.stderr  # podman's status


def test_wrong_password_writes_nothing(private, isolated_auth):
    result = login(private, "wrong")
    assert result.returncode == 125 and "invalid username/password" in result.stderr
    assert not (isolated_auth / "run" / "containers" / "auth.json").exists()


def test_authfile_flag_and_logout_all(private, tmp_path):
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}}))
    assert login(private, "wonderland", "--authfile", str(authfile)).returncode == 0
    assert sorted(json.loads(authfile.read_text())["auths"]) == sorted(["other.example", private.host])
    run_ketch("logout", "--all", "--authfile", str(authfile))
    assert json.loads(authfile.read_text())["auths"] == {}


def test_login_without_password_on_a_pipe():
    result = subprocess.run([KETCH, "login", "-u", "alice", "127.0.0.1:1"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 125 and "--password-stdin" in result.stderr
