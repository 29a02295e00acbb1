"""policy.json: insecureAcceptAnything and reject, per transport and scope."""

import json

import pytest

from ketch.errors import InvalidInputError, PolicyDeniedError
from ketch.image.policy import Policy, scopes_for
from ketch.image.transports import parse_image_name
from tests.conftest import run_ketch


def test_docker_scopes_most_specific_first():
    scopes = scopes_for(parse_image_name("docker://registry.example.com:5000/team/app:1"))
    assert scopes == ["registry.example.com:5000/team/app:1", "registry.example.com:5000/team/app",
                      "registry.example.com:5000/team", "registry.example.com:5000", "*.example.com", "*.com"]


def test_path_scopes(tmp_path):
    scopes = scopes_for(parse_image_name(f"oci:{tmp_path}/layout:tag"))
    assert scopes[:3] == [f"{tmp_path}/layout:tag", f"{tmp_path}/layout", str(tmp_path)]


def policy(data):
    return Policy.from_json(data, "test")


def test_rules():
    p = policy({"default": [{"type": "reject"}],
                "transports": {"docker": {"example.com/ok": [{"type": "insecureAcceptAnything"}],
                                          "*.trusted.org": [{"type": "insecureAcceptAnything"}],
                                          "example.com/signed": [{"type": "signedBy", "keyType": "GPGKeys"}]},
                               "dir": {"": [{"type": "insecureAcceptAnything"}]}}})
    p.check(parse_image_name("docker://example.com/ok/sub:1"))
    p.check(parse_image_name("docker://reg.trusted.org/x"))
    p.check(parse_image_name("dir:/anything"))
    with pytest.raises(PolicyDeniedError, match="rejects docker://example.com/other"):
        p.check(parse_image_name("docker://example.com/other"))
    # signedBy and sigstoreSigned are left to verify once the manifest and its signatures are read
    assert p.check(parse_image_name("docker://example.com/signed:1")) == [{"type": "signedBy", "keyType": "GPGKeys"}]
    sigstore = policy({"default": [{"type": "sigstoreSigned", "keyPath": "/k.pub"}]})
    assert sigstore.check(parse_image_name("docker://example.com/x:1")) == [{"type": "sigstoreSigned",
                                                                             "keyPath": "/k.pub"}]
    with pytest.raises(PolicyDeniedError):
        p.check(parse_image_name("oci:/tmp/x"))


@pytest.mark.parametrize("data", [{}, {"default": []}, {"default": [{"type": "bogus"}]},
                                  {"default": [{"type": "reject"}], "transports": {"docker": []}}])
def test_malformed_policies(data):
    with pytest.raises(InvalidInputError):
        policy(data)


def test_cli_policy_flags(registry, busybox_layout, tmp_path):
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {registry.host: [{"type": "reject"}]}}}))
    url = registry.url("library/busybox")
    refused = run_ketch("--policy", str(policy_file), "image", "copy", "--src-tls-verify=false", url,
                        f"oci:{tmp_path}/l", check=False)
    assert refused.returncode == 1 and "rejects" in refused.stderr
    assert not (tmp_path / "l").exists()
    run_ketch("--policy", str(policy_file), "image", "copy", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/ok")
    run_ketch("--insecure-policy", "--policy", str(policy_file), "image", "copy", "--src-tls-verify=false", url,
              f"oci:{tmp_path}/l")
    missing = run_ketch("--policy", str(tmp_path / "absent.json"), "image", "copy", url, f"oci:{tmp_path}/m",
                        check=False)
    assert missing.returncode == 1 and "no trust policy" in missing.stderr


def test_user_policy_overrides_system(isolated_auth, busybox_layout, tmp_path):
    user = isolated_auth / ".config" / "containers" / "policy.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"default": [{"type": "reject"}]}))
    refused = run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/d", check=False)
    assert refused.returncode == 1 and "rejects" in refused.stderr
