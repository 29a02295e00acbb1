"""Images move between ketch's store and podman's through archives, both ways."""

import json

import pytest

from tests.conftest import run_ketch

pytestmark = [pytest.mark.registry, pytest.mark.peer]


def test_pulled_by_ketch_saved_loads_and_runs_in_podman(registry, store_env, podman, tmp_path):
    image_id = run_ketch("pull", "-q", "--tls-verify=false", f"{registry.host}/library/busybox").stdout.strip()
    run_ketch("save", "-o", str(tmp_path / "b.tar"), f"{registry.host}/library/busybox")
    podman.run("load", "-i", str(tmp_path / "b.tar"))
    assert podman.images()[0]["Id"] == image_id
    out = podman.run("run", "--rm", "--network", "none", f"{registry.host}/library/busybox", "echo", "hi from ketch")
    assert out.stdout == "hi from ketch\n"


def test_podman_save_loads_in_ketch_with_the_same_id(registry, store_env, podman, tmp_path):
    podman.run("pull", "--tls-verify=false", f"{registry.host}/library/busybox")
    podman_id = podman.images()[0]["Id"]
    podman.run("tag", podman_id, "localhost/frompodman:1")
    podman.run("save", "-o", str(tmp_path / "p.tar"), "localhost/frompodman:1")
    out = run_ketch("load", "-i", str(tmp_path / "p.tar")).stdout
    assert "localhost/frompodman:1" in out
    inspected = json.loads(run_ketch("image", "inspect", "frompodman:1").stdout)[0]
    assert inspected["Id"] == podman_id
    podman.run("save", "--format", "oci-archive", "-o", str(tmp_path / "o.tar"), "localhost/frompodman:1")
    run_ketch("rmi", "frompodman:1")
    run_ketch("load", "-i", str(tmp_path / "o.tar"))
    assert json.loads(run_ketch("images", "--format", "json").stdout)[0]["Id"] == podman_id


def test_inspect_and_images_json_have_podmans_shape(store_env, podman, tmp_path):
    from tests.support import images

    store_env.add("busybox", "docker.io/library/busybox:latest")
    podman.run("pull", f"oci:{images.ensure('busybox')}:latest")
    podman_id = podman.images()[0]["Id"]
    podman.run("tag", podman_id, "docker.io/library/busybox:latest")
    ours = json.loads(run_ketch("image", "inspect", "busybox").stdout)[0]
    theirs = json.loads(podman.run("image", "inspect", "docker.io/library/busybox:latest").stdout)[0]
    assert set(theirs) <= set(ours) | {"Healthcheck"}
    for key in ("Id", "Architecture", "Os", "Labels", "User", "Comment", "Author"):
        assert ours[key] == theirs[key], key
    assert ours["RootFS"]["Layers"] == theirs["RootFS"]["Layers"]
    assert ours["Config"]["Env"] == theirs["Config"]["Env"] and ours["Config"]["Cmd"] == theirs["Config"]["Cmd"]
    assert ours["History"] == theirs["History"]
    assert "docker.io/library/busybox:latest" in ours["RepoTags"]
    listed_ours = json.loads(run_ketch("images", "--format", "json").stdout)[0]
    listed_theirs = [i for i in podman.images() if i["Id"] == podman_id][0]
    assert set(listed_theirs) <= set(listed_ours)
    assert listed_ours["Id"] == listed_theirs["Id"] and listed_ours["Labels"] == listed_theirs["Labels"]
