"""Authentication against real registries: Bearer tokens and Basic (htpasswd)."""

import base64
import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_ketch

pytestmark = pytest.mark.registry


def inspect(registry, *flags):
    return run_ketch("image", "inspect", "--tls-verify=false", "--retry-times", "0", "--format", "{{.Digest}}",
                     *flags, registry.url("private/busybox"), check=False)


def write_auth(path, host, user, password):
    path.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))


@pytest.fixture(params=["token_registry", "basic_registry"])
def private(request):
    return request.getfixturevalue(request.param)


def test_creds_flag(private):
    ok = inspect(private, "--creds", "alice:wonderland")
    assert ok.returncode == 0 and ok.stdout.startswith("sha256:")


def test_wrong_and_missing_credentials_are_one_clear_line(private):
    wrong = inspect(private, "--creds", "alice:nope")
    assert wrong.returncode == 1
    # skopeo's words: the token server's "invalid username/password"; a Basic-auth registry's own
    # "unauthorized: authentication required" (it says no more than that)
    assert ("invalid username/password" in wrong.stderr or "unauthorized: authentication required" in wrong.stderr) \
        and wrong.stderr.count("\n") == 1
    missing = inspect(private)
    assert missing.returncode == 1 and "authentication required" in missing.stderr


def test_authfile_flag_and_env(private, tmp_path, monkeypatch):
    authfile = tmp_path / "auth.json"
    write_auth(authfile, private.host, "alice", "wonderland")
    assert inspect(private, "--authfile", str(authfile)).returncode == 0
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
    assert inspect(private).returncode == 0


@pytest.mark.parametrize("where", ["runtime", "config", "docker"])
def test_default_auth_file_locations(private, isolated_auth, where):
    home = isolated_auth
    path = {"runtime": Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json",  # (the test's, or a user's)
            "config": home / ".config" / "containers" / "auth.json",
            "docker": home / ".docker" / "config.json"}[where]
    write_auth(path, private.host, "alice", "wonderland")
    try:
        assert inspect(private).returncode == 0
    finally:
        path.unlink()


def test_repository_scoped_key_wins(private, isolated_auth):
    path = isolated_auth / "run" / "containers" / "auth.json"
    path.parent.mkdir(parents=True)
    good = base64.b64encode(b"alice:wonderland").decode()
    bad = base64.b64encode(b"alice:wrong").decode()
    path.write_text(json.dumps({"auths": {private.host: {"auth": bad},
                                          f"{private.host}/private/busybox": {"auth": good}}}))
    assert inspect(private).returncode == 0


def test_creds_helper_is_a_clear_error(private, isolated_auth):
    path = isolated_auth / ".docker" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"credHelpers": {private.host: "secretservice"}}))
    result = inspect(private)
    assert result.returncode == 1 and "credential helper 'secretservice'" in result.stderr
    assert "not supported" in result.stderr


def test_token_flow_sends_scope_service_and_account(token_registry, tmp_path):
    tokens = token_registry.extra["tokens"]
    tokens.requests.clear()
    run_ketch("image", "copy", "--src-tls-verify=false", "--src-creds", "alice:wonderland",
              token_registry.url("private/busybox"), f"oci:{tmp_path}/l")
    assert tokens.requests, "no token was fetched"
    query = tokens.requests[0]["query"]
    assert query["scope"] == ["repository:private/busybox:pull"]
    assert query["service"] == ["ketch-test-registry"]
    assert query["account"] == ["alice"]
    # The token is cached: one token request for the whole copy (manifest, config, layer).
    assert len(tokens.requests) == 1
    assert (tmp_path / "l" / "index.json").exists()
