"""``ketch search``: the same command lines as podman's search against a registry on 127.0.0.1
(its repository list), a registry that answers only the old /v1/search (stars, official and
automated images, descriptions), and registries that lie or refuse."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import KETCH, run_ketch
from tests.support.fakeregistry import FakeRegistry, serve
from tests.support.registry import skopeo_copy


@pytest.fixture(scope="module")
def searched(registry, busybox_layout):
    """The session's registry, with two more repositories of the test's own."""
    skopeo_copy(f"oci:{busybox_layout}:latest", registry.url("team/busybox-extra", "v1"))
    skopeo_copy(f"oci:{busybox_layout}:latest", registry.url("other/thing", "x"))
    return registry


@pytest.mark.peer
def test_the_same_searches_as_podmans(searched, podman, tmp_path):
    host = searched.host
    conf = tmp_path / "registries.conf"
    conf.write_text(f'unqualified-search-registries = ["{host}"]\n[[registry]]\nlocation = "{host}"\ninsecure = true\n')
    cases = [
        [f"{host}/busybox"], ["--limit", "1", f"{host}/busybox"], [f"{host}/"], [f"{host}/nothing-like-it"],
        ["--list-tags", f"{host}/library/busybox"], ["--list-tags", "--limit", "1", f"{host}/library/busybox"],
        ["--list-tags", f"{host}/library/busybox:v1"], ["--format", "json", f"{host}/busybox"],
        ["--format", "json", "--list-tags", f"{host}/library/busybox"], ["--compatible", f"{host}/busybox"],
        ["--format", "{{.Index}}|{{.Name}}|{{.Stars}}|{{.Official}}|{{.Tag}}", f"{host}/busybox"],
        ["--format", "table {{.Name}} {{.Tag}}", f"{host}/busybox"], ["--filter", "is-official", f"{host}/busybox"],
        ["--filter", "bogus=1", f"{host}/busybox"], ["--no-trunc", "busybox"],
    ]
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    for args in cases:
        mine = run_ketch("search", "--tls-verify=false", *args, check=False, env={**os.environ, **env})
        theirs = subprocess.run([*podman.base, "search", "--tls-verify=false", *args], capture_output=True,
                                text=True, timeout=120, env={**os.environ, **env, "CONTAINERS_CONF": str(podman.conf)})
        assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout), args
        assert mine.returncode != 0 or mine.stderr == "", args  # (podman warns about the test's XDG_RUNTIME_DIR)
    listed = run_ketch("search", "--tls-verify=false", "--format", "{{.Name}}", f"{host}/").stdout.split()
    assert {f"{host}/library/busybox", f"{host}/team/busybox-extra", f"{host}/other/thing", f"{host}/multi"} <= \
        set(listed)
    missing = run_ketch("search", "--tls-verify=false", "--list-tags", f"{host}/library/nope", check=False)
    assert missing.returncode == 125 and "library/nope" in missing.stderr and missing.stderr.count("\n") == 1


@pytest.fixture
def v1_only():
    """A registry without a repository list that answers /v1/search, as Docker Hub does."""
    registry = FakeRegistry()
    results = [{"name": "busybox", "description": "Busybox base image, a very small one with many tools in it",
                "star_count": 3000, "is_official": True, "is_automated": False},
               {"name": "someone/busybox-static", "description": "static", "star_count": 4, "is_official": False,
                "is_automated": True}]

    def behaviour(handler, info):
        if info["path"].startswith("/v2/_catalog"):
            handler.error(404, "UNSUPPORTED", "catalog is off")
            return True
        if info["path"].startswith("/v1/search"):
            handler.send(200, json.dumps({"results": results}).encode(), {"Content-Type": "application/json"})
            return True
        return False

    registry.behaviours.append(behaviour)
    with serve(registry):
        yield registry


def test_a_registry_with_only_v1_search(v1_only):
    host = v1_only.host
    table = run_ketch("search", "--tls-verify=false", "--compatible", f"{host}/busybox").stdout.splitlines()
    assert table[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert table[1].split()[:2] == [f"{host}/busybox", "Busybox"] and "[OK]" in table[1]
    assert "many tools in it" not in table[1] and "..." in table[1]  # cut at 44 characters, as podman's
    full = run_ketch("search", "--tls-verify=false", "--no-trunc", f"{host}/busybox").stdout
    assert "a very small one with many tools in it" in full
    starred = run_ketch("search", "--tls-verify=false", "--filter", "stars=10", "--format", "{{.Name}} {{.Stars}}",
                        f"{host}/busybox").stdout
    assert starred == f"{host}/busybox 3000\n"
    automated = run_ketch("search", "--tls-verify=false", "--filter", "is-automated=true", "--format", "{{.Name}}",
                          f"{host}/busybox").stdout
    assert automated == f"{host}/someone/busybox-static\n"
    assert v1_only.count("GET", r"^/v1/search\?q=busybox") >= 1


def test_lying_and_refusing_registries_get_one_line(tmp_path):
    registry = FakeRegistry()
    registry.behaviours.append(lambda handler, info: info["path"].startswith("/v2/_catalog") and
                               (handler.send(200, b"not json", {"Content-Type": "application/json"}) or True))
    with serve(registry):
        lying = run_ketch("search", "--tls-verify=false", f"{registry.host}/x", check=False)
    assert lying.returncode == 125 and lying.stderr.count("\n") == 1 and "not JSON" in lying.stderr
    with serve(FakeRegistry()) as plain:  # (no catalog, no v1 search)
        refused = run_ketch("search", "--tls-verify=false", f"{plain.host}/x", check=False)
    assert refused.returncode == 125 and refused.stderr.count("\n") == 1 and plain.host in refused.stderr
    empty = tmp_path / "registries.conf"
    empty.write_text("unqualified-search-registries = []\n")
    unqualified = subprocess.run([KETCH, "search", "busybox"], capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(empty)})
    assert unqualified.returncode == 125 and "no registry to search" in unqualified.stderr


def test_search_with_credentials(token_registry):
    found = run_ketch("search", "--tls-verify=false", "--creds", "alice:wonderland", "--format", "{{.Name}}",
                      f"{token_registry.host}/busybox").stdout
    assert f"{token_registry.host}/private/busybox" in found.splitlines()  # (other tests push there too)
