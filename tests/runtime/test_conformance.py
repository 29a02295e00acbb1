"""The runtime-spec's MUSTs as the OCI runtime-tools validation suite checks them.

Each test names the validation program (opencontainers/runtime-tools, validation/NAME) whose cases it
mirrors: the same operations, in the same order, with the same expectations. The suite itself cannot be
built here (Debian ships the library but not validation/ or runtimetest), so these are our own tests of
the same requirements; the in-container checks runtimetest makes are done with busybox's tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.runtime.conftest import RUNTIME


@pytest.fixture(autouse=True)
def writable_root(bundle):
    """runtime-tools' generated configs have a writable root; runc's default spec does not."""
    bundle.config["root"]["readonly"] = False
    bundle.write()


def status(bundle, name):
    result = bundle.runtime("state", name)
    return json.loads(result.stdout)["status"] if result.returncode == 0 else None


def wait_for(bundle, name, *wanted, timeout=10.0):
    deadline = time.monotonic() + timeout
    while status(bundle, name) not in wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status(bundle, name) in wanted


def create(bundle, name, *argv, extra=()):
    bundle.args(*argv)
    bundle.runtime("create", *extra, "--bundle", str(bundle.path), name, check=True)


def test_create_and_state(bundle):  # validation/create, validation/state
    assert bundle.runtime("create", "--bundle", str(bundle.path)).returncode != 0  # no id
    assert bundle.runtime("state").returncode != 0  # no id
    assert bundle.runtime("state", "c1").returncode != 0  # not there
    create(bundle, "c1", "true")
    state = json.loads(bundle.runtime("state", "c1", check=True).stdout)
    assert state["id"] == "c1" and state["status"] == "created" and state["pid"] > 0
    assert state["ociVersion"] and state["bundle"] == str(bundle.path)
    assert bundle.runtime("create", "--bundle", str(bundle.path), "c1").returncode != 0  # not unique
    assert status(bundle, "c1") == "created"  # ...and the first one untouched


def test_start(bundle):  # validation/start
    output = bundle.path / "rootfs" / "output"
    assert bundle.runtime("start").returncode != 0  # no id
    assert bundle.runtime("start", "c1").returncode != 0  # not created
    create(bundle, "c1", "sh", "-c", "echo 'process called' >> /output")
    time.sleep(0.2)
    assert not output.exists()  # process.args not applied until start
    bundle.runtime("start", "c1", check=True)
    wait_for(bundle, "c1", "stopped")
    assert output.read_text() == "process called\n"
    assert bundle.runtime("start", "c1").returncode != 0  # stopped, not created
    time.sleep(0.2)
    assert output.read_text() == "process called\n"  # ...and no effect
    bundle.runtime("delete", "c1", check=True)


def test_kill(bundle):  # validation/kill, validation/kill_no_effect
    assert bundle.runtime("kill").returncode != 0  # no id
    assert bundle.runtime("kill", "c1", "KILL").returncode != 0  # no such container
    create(bundle, "c1", "true")  # a created container takes a signal
    bundle.runtime("kill", "c1", "KILL", check=True)
    wait_for(bundle, "c1", "stopped")
    bundle.runtime("delete", "c1", check=True)

    create(bundle, "c2", "true")
    bundle.runtime("start", "c2", check=True)
    wait_for(bundle, "c2", "stopped")
    before = bundle.runtime("state", "c2", check=True).stdout
    assert bundle.runtime("kill", "c2", "KILL").returncode != 0  # stopped: an error...
    assert bundle.runtime("state", "c2", check=True).stdout == before  # ...and no effect
    bundle.runtime("delete", "c2", check=True)

    create(bundle, "c3", "sleep", "30")
    bundle.runtime("start", "c3", check=True)
    bundle.runtime("kill", "c3", "KILL", check=True)
    wait_for(bundle, "c3", "stopped")
    bundle.runtime("delete", "c3", check=True)


@pytest.mark.parametrize("signal_name", ["TERM", "USR1", "USR2"])
def test_kill_sends_the_named_signal(bundle, signal_name):  # validation/killsig
    create(bundle, "c1", "sh", "-c", f"trap 'touch /{signal_name}' {signal_name}; sleep 10 & wait $!")
    bundle.runtime("start", "c1", check=True)
    wait_for(bundle, "c1", "running")
    time.sleep(0.2)  # the shell has set its trap
    bundle.runtime("kill", "c1", signal_name, check=True)
    wait_for(bundle, "c1", "stopped")
    assert (bundle.path / "rootfs" / signal_name).exists()
    bundle.runtime("delete", "c1", check=True)


def test_delete(bundle):  # validation/delete
    assert bundle.runtime("delete").returncode != 0  # no id
    create(bundle, "c1", "true")
    assert bundle.runtime("delete", "c1").returncode != 0  # created, not stopped: an error...
    assert status(bundle, "c1") == "created"  # ...and no effect
    bundle.runtime("kill", "c1", "KILL", check=True)
    wait_for(bundle, "c1", "stopped")
    bundle.runtime("delete", "c1", check=True)

    create(bundle, "c2", "sleep", "30")
    bundle.runtime("start", "c2", check=True)
    assert bundle.runtime("delete", "c2").returncode != 0  # running
    assert status(bundle, "c2") == "running"
    bundle.runtime("kill", "c2", "KILL", check=True)
    wait_for(bundle, "c2", "stopped")
    bundle.runtime("delete", "c2", check=True)
    assert status(bundle, "c2") is None


def test_delete_removes_what_create_made(bundle):  # validation/delete_resources
    bundle.config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")]
    create(bundle, "c1", "sleep", "30")
    pid = json.loads(bundle.runtime("state", "c1", check=True).stdout)["pid"]
    namespace = os.readlink(f"/proc/{pid}/ns/net")
    bundle.runtime("delete", "--force", "c1", check=True)
    assert status(bundle, "c1") is None
    still = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == namespace:
                    still.add(entry)
            except OSError:
                pass
    assert not still  # nothing lives in the container's namespaces any more


def test_pid_file_is_the_init(bundle, tmp_path):  # validation/pidfile
    pid_file = tmp_path / "pidfile"
    create(bundle, "c1", "true", extra=("--pid-file", str(pid_file)))
    state = json.loads(bundle.runtime("state", "c1", check=True).stdout)
    assert int(pid_file.read_text()) == state["pid"]
    bundle.runtime("start", "c1", check=True)
    wait_for(bundle, "c1", "stopped")
    bundle.runtime("delete", "c1", check=True)


def test_config_changes_after_create_have_no_effect(bundle):  # validation/config_updates_without_affect
    create(bundle, "c1", "sh", "-c", "echo first > /which")
    bundle.args("sh", "-c", "echo second > /which")
    bundle.runtime("start", "c1", check=True)
    wait_for(bundle, "c1", "stopped")
    assert (bundle.path / "rootfs" / "which").read_text() == "first\n"


def test_default_devices_symlinks_and_filesystems(bundle):  # runtimetest's default checks
    script = (
        "for d in null zero full random urandom tty ptmx; do [ -c /dev/$d ] || echo missing $d; done; "
        "for l in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do "
        "  [ \"$(readlink /dev/${l%%:*})\" = ${l#*:} ] || echo badlink ${l%%:*}; done; "
        "cat /proc/self/mountinfo"
    )
    result = bundle.run("sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("missing", "badlink"))]
    # every non-bind mount of the config is there with its type and source, as runtimetest reads mountinfo
    mounted = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 6 and "-" in fields:
            tail = fields[fields.index("-") + 1:]
            mounted.add((fields[4], tail[0], tail[1]))
    for mount in bundle.config["mounts"]:
        # On cgroup v1 (this machine) /sys/fs/cgroup is a tmpfs of per-controller mounts, as runc makes it:
        # runtimetest's type check only holds on v2.
        if mount.get("type") not in ("bind", "rbind", "cgroup"):
            assert (os.path.normpath(mount["destination"]), mount["type"], mount["source"]) in mounted, mount


def test_terminal_adds_dev_console(bundle):  # runtimetest: /dev/console with process.terminal
    """A foreground run with a terminal proxies the caller's terminal (here one script(1) makes)."""
    import shlex

    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "[ -c /dev/console ] && echo console; tty"]
    bundle.write()
    command = " ".join(shlex.quote(a) for a in bundle.runtime_command("run", "c1"))
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "console" in result.stdout and "/dev/pts/" in result.stdout


@pytest.mark.peer
def test_terminal_without_one_of_ours_is_refused_as_runc_refuses(bundle):
    """terminal: true, no --console-socket, and no terminal to proxy (a script, a service): runc
    fails at once; so does ketch-runtime (it used to start a shell nobody could reach)."""
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh"]
    bundle.write()
    for runtime in ("runc", None):
        command = [runtime, "--root", str(bundle.root / "runc-state")] if runtime else \
            [*bundle.wrapper, RUNTIME, "--root", str(bundle.root)]
        command += ["run", "-b", str(bundle.path), "c-tty"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # no controlling terminal
        assert result.returncode == 1 and "/dev/tty" in result.stderr, (runtime, result.stderr)
    detached = bundle.runtime("run", "-d", "-b", str(bundle.path), "c-tty2")
    assert detached.returncode != 0 and "console socket" in detached.stderr


def test_masked_paths_read_empty_and_readonly_paths_refuse_writes(bundle):  # linux_masked/readonly_paths
    bundle.config["linux"]["maskedPaths"] = ["/proc/kcore", "/masked-dir", "/masked-file"]
    bundle.config["linux"]["readonlyPaths"] = ["/ro-dir"]
    for name in ("masked-dir", "ro-dir"):
        (bundle.path / "rootfs" / name).mkdir()
    (bundle.path / "rootfs" / "masked-dir" / "secret").write_text("x")
    (bundle.path / "rootfs" / "masked-file").write_text("secret")
    result = bundle.run("sh", "-c", "wc -c < /masked-file; ls /masked-dir | wc -l; "
                                    "touch /ro-dir/x 2>/dev/null && echo writable || echo refused")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "refused"]


def test_unknown_keys_are_ignored_and_invalid_values_refused(bundle):  # validation/misc_props
    bundle.config["annotations"] = {"org.example.unknown": ""}
    bundle.config["unknown"] = "unknown"
    bundle.args("true")
    assert bundle.runtime("run", "--bundle", str(bundle.path), "c1").returncode == 0
    bundle.config["ociVersion"] = "invalid"
    bundle.write()
    refused = bundle.runtime("create", "--bundle", str(bundle.path), "c2")
    assert refused.returncode == 1 and "ociVersion" in refused.stderr
    assert status(bundle, "c2") is None


def test_duplicate_rlimits_are_an_error(bundle):  # runtime-spec: rlimits with the same type
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 64},
                                           {"type": "RLIMIT_NOFILE", "soft": 32, "hard": 32}]
    bundle.args("true")
    refused = bundle.runtime("create", "--bundle", str(bundle.path), "c1")
    assert refused.returncode == 1 and "RLIMIT_NOFILE is listed twice" in refused.stderr
    assert status(bundle, "c1") is None


@pytest.mark.peer
def test_kill_of_an_exited_container_answers_as_runc(bundle):
    """The container's process has exited (state: stopped): ``kill`` says it is not running
    (status 1), ``kill --all`` succeeds, and ``delete`` removes it, with runc and ketch-runtime."""
    bundle.args("true")
    answers = {}
    for runtime in ("runc", "ketch"):
        base = ["runc", "--root", str(bundle.root / "runc-state")] if runtime == "runc" else \
            [*bundle.wrapper, RUNTIME, "--root", str(bundle.root)]
        name = f"exited-{runtime}"
        created = subprocess.run(base + ["create", "-b", str(bundle.path), name], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        assert created.returncode == 0, runtime
        subprocess.run(base + ["start", name], check=True, timeout=60)
        status = None
        for _ in range(600):
            status = json.loads(subprocess.run(base + ["state", name], capture_output=True, text=True).stdout)["status"]
            if status == "stopped":
                break
            time.sleep(0.05)
        kill = subprocess.run(base + ["kill", name, "KILL"], capture_output=True, text=True)
        kill_all = subprocess.run(base + ["kill", "--all", name, "KILL"], capture_output=True, text=True)
        delete = subprocess.run(base + ["delete", name], capture_output=True, text=True)
        answers[runtime] = (status, kill.returncode, "not running" in kill.stderr, kill_all.returncode,
                            delete.returncode)
    assert answers["ketch"] == answers["runc"] == ("stopped", 1, True, 0, 0)
