"""kill -9 at random moments, and many processes on one store at once."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import KETCH, run_ketch
from tests.support import images
from tests.support.registry import skopeo_copy

pytestmark = pytest.mark.registry
ROUNDS = int(os.environ.get("KETCH_KILL_ROUNDS", "6"))


@pytest.fixture(scope="module")
def derived_in_registry(registry):
    skopeo_copy(f"oci:{images.ensure('derived')}:latest", registry.url("library/derived"))
    return registry


def assert_store_healthy():
    """After a kill: check (repairing if needed) ends clean, and every listed image is whole."""
    check = run_ketch("storage", "check", check=False)
    if check.returncode != 0:
        run_ketch("storage", "check", "--repair")
    assert run_ketch("storage", "check").stdout == ""
    for image_id in run_ketch("images", "-a", "-q", "--no-trunc").stdout.split():
        path = run_ketch("image", "mount", image_id).stdout.strip()
        try:
            assert os.path.isdir(path) and os.listdir(path)
        finally:
            run_ketch("image", "unmount", image_id)


def kill_at_random(args, duration, rng):
    proc = subprocess.Popen([KETCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0, duration))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def timed(args):
    start = time.monotonic()
    run_ketch(*args)
    return time.monotonic() - start


@pytest.mark.parametrize("command", ["pull", "rmi", "save", "load"])
def test_kill_9_at_random_moments(command, derived_in_registry, store_env, tmp_path):
    rng = random.Random(f"{command}-{os.getpid()}")
    pull = ["pull", "-q", "--tls-verify=false", f"{derived_in_registry.host}/library/derived"]
    archive = tmp_path / "derived.tar"
    duration = timed(pull)
    run_ketch("save", "-o", str(archive), "derived")
    commands = {
        "pull": pull,
        "rmi": ["rmi", "derived"],
        "save": ["save", "-o", str(tmp_path / "out.tar"), "derived"],
        "load": ["load", "-i", str(archive)],
    }
    for _ in range(ROUNDS):
        if command == "pull":
            run_ketch("rmi", "-a", "-f")
        elif command == "rmi":
            run_ketch(*pull)
        elif command == "load":
            run_ketch("rmi", "-a", "-f")
        kill_at_random(commands[command], duration * 1.5, rng)
        assert_store_healthy()
        if command == "save":
            # a killed save leaves the old archive or nothing: never a half archive under the name
            out = tmp_path / "out.tar"
            assert not out.exists() or run_ketch("--insecure-policy", "image", "inspect",
                                                 f"docker-archive:{out}").returncode == 0
        # the same command run again succeeds
        if command == "rmi":
            names = run_ketch("images", "--format", "{{.Id}}").stdout
            if names.strip():
                run_ketch("rmi", "derived")
        else:
            run_ketch(*commands[command])
    assert [n for n in os.listdir(tmp_path) if n.startswith(".ketch-tmp")] == []


def test_two_pulls_at_once_extract_each_layer_once(derived_in_registry, store_env):
    args = [KETCH, "pull", "-q", "--tls-verify=false", f"{derived_in_registry.host}/library/derived"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert outputs[0][0] == outputs[1][0]
    store = store_env.store()
    assert len(store.db.query("SELECT * FROM contents")) == 2
    assert len(os.listdir(store_env.root / "overlay")) == 3  # two contents and l/
    assert run_ketch("storage", "check").stdout == ""


def test_eight_processes_for_a_while(derived_in_registry, store_env, tmp_path):
    seconds = float(os.environ.get("KETCH_STRESS_SECONDS", "30"))
    run_ketch("pull", "-q", "--tls-verify=false", f"{derived_in_registry.host}/library/derived")
    run_ketch("pull", "-q", "--tls-verify=false", f"{derived_in_registry.host}/library/busybox")
    run_ketch("tag", f"{derived_in_registry.host}/library/derived", "derived")
    run_ketch("tag", f"{derived_in_registry.host}/library/busybox", "busybox")
    archive = tmp_path / "derived.tar"
    run_ketch("save", "-o", str(archive), "derived")
    workers = [subprocess.Popen([sys.executable, "-m", "tests.support.stress", KETCH, derived_in_registry.host,
                                 str(archive), str(seconds), str(n)], stdout=subprocess.PIPE, text=True,
                                env=os.environ, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
               for n in range(8)]
    outputs = [w.communicate(timeout=seconds + 240)[0] for w in workers]
    unexpected = [line for out in outputs for line in out.splitlines() if line.startswith("UNEXPECTED")]
    assert unexpected == []
    assert sum(int(out.split("ops ")[-1]) for out in outputs) > 8
    for _path in run_ketch("image", "mount").stdout.splitlines():
        run_ketch("image", "unmount", "-a")
        break
    assert run_ketch("storage", "check").stdout == ""
