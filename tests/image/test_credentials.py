import base64
import json

import pytest

from ketch.errors import InvalidInputError, UnsupportedError
from ketch.image.credentials import auth_file_paths, lookup_credentials


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_lookup_order_and_legacy_keys(isolated_auth, tmp_path):
    docker = isolated_auth / ".docker" / "config.json"
    docker.parent.mkdir(parents=True)
    docker.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")},
                                            "http://reg.example:5000": {"auth": b64("u:p:with:colons")}}}))
    assert lookup_credentials("docker.io").username == "hub"
    creds = lookup_credentials("reg.example:5000")
    assert (creds.username, creds.password) == ("u", "p:with:colons")
    first = isolated_auth / "run" / "containers" / "auth.json"
    first.parent.mkdir(parents=True)
    first.write_text(json.dumps({"auths": {"docker.io": {"auth": b64("podman:pw")}}}))
    assert lookup_credentials("docker.io").username == "podman"
    assert not lookup_credentials("other.example")


@pytest.mark.root_only("it is about root's auth file places")
def test_root_without_runtime_dir(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    path, _ = auth_file_paths()[0]
    assert str(path) == "/run/containers/0/auth.json"


def test_bad_files_are_clear_errors(isolated_auth):
    path = isolated_auth / "auth.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        lookup_credentials("x.example", authfile=str(path))
    path.write_text(json.dumps({"auths": {"x.example": {"auth": "%%%"}}}))
    with pytest.raises(InvalidInputError, match="not valid base64"):
        lookup_credentials("x.example", authfile=str(path))
    path.write_text(json.dumps({"credsStore": "desktop"}))
    with pytest.raises(UnsupportedError, match="credential store 'desktop'"):
        lookup_credentials("x.example", authfile=str(path))
